"""Submitting `tased-batch run` to a Ray cluster through Ray's job submission API.

The job's driver runs ``tased-batch <args>`` on the cluster, where the package must be
installed (the image in infra/) or named with ``--pip``. Credentials are never sent: the
cluster uses its own AWS chain (instance roles, its environment). Only non-secret AWS
settings (endpoint, region) are forwarded so that the job reads the same store.

The entrypoint is visible to everyone who can list the cluster's jobs, so it never carries
a secret: ``-s`` storage options with credentials (at any depth) are dropped, with a note,
signed URLs and URLs with userinfo are refused, and secret-looking environment variables in
``--runtime-env`` are removed.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

from tased_batch.core.errors import ConfigError
from tased_batch.core.secrets import is_secret_key, scrub_text

FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION")


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as e:
        raise ConfigError(
            f"cannot reach the Ray job API at {address}: {e}", "check --address (http://HEAD:8265)"
        ) from e


def runtime_env(pip: list[str] | None = None, extra: str | None = None) -> dict[str, Any]:
    """Forwarded non-secret AWS settings, optional pip packages, and an optional JSON runtime env."""
    env: dict[str, Any] = {}
    if extra:
        try:
            env = json.loads(open(extra).read() if os.path.exists(extra) else extra)
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"--runtime-env: not a JSON object or file: {e}") from e
        if not isinstance(env, dict):
            raise ConfigError("--runtime-env must be a JSON object")
    env_vars = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    given = {k: v for k, v in (env.get("env_vars") or {}).items() if not _secret_env(k)}
    env.pop("env_vars", None)
    if env_vars or given:
        env["env_vars"] = {**env_vars, **given}
    if pip:
        env["pip"] = list(pip)
    return env


def _secret_env(name: str) -> bool:
    upper = name.upper()
    return is_secret_key(name) or any(
        word in upper for word in ("SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY", "CREDENTIAL")
    )


def public_args(args: list[str], note=lambda message: None) -> list[str]:
    """``args`` without credentials: secret ``-s`` options dropped, signed URLs refused."""
    clean: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        value = None
        if arg in ("-s", "--storage-option") and i + 1 < len(args):
            value, i = args[i + 1], i + 2
        elif arg.startswith("--storage-option="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            i += 1
        if value is not None:
            key = value.split("=", 1)[0]
            if any(is_secret_key(part) for part in key.split(".")):
                note(
                    f"not forwarding --storage-option {key}=...: credentials never go into a job's entrypoint; "
                    "the cluster uses its own (instance role, its environment)"
                )
                continue
            clean.extend(["--storage-option", value])
            continue
        if scrub_text(arg) != arg:
            raise ConfigError(
                "a signed URL or a URL with a password would be visible in the job's entrypoint and logs",
                "list the videos in a manifest the cluster can read with its own credentials, or use s3:// URIs",
            )
        clean.append(arg)
    return clean


def submit(
    address: str,
    args: list[str],
    *,
    pip: list[str] | None = None,
    extra_env: str | None = None,
    submission_id: str | None = None,
    note=lambda message: None,
) -> str:
    """Submit ``tased-batch <args>``; returns the job id."""
    return _client(address).submit_job(
        entrypoint=entrypoint(args, note), runtime_env=runtime_env(pip, extra_env) or None, submission_id=submission_id
    )


def entrypoint(args: list[str], note=lambda message: None) -> str:
    """The job's command line for ``tased-batch <args>``, without credentials (the orchestrator plugins share it)."""
    if not args or args[0] not in ("run", "resume"):
        raise ConfigError(
            "submit runs `run ...` or `resume ...`", "e.g. tased-batch submit --address http://HEAD:8265 -- run IN OUT"
        )
    args = public_args(args, note)
    command = "tased-batch " + " ".join(shlex.quote(a) for a in args)
    if args[0] == "run" and "--log-json" not in args and "--quiet" not in args and "-q" not in args:
        command += " --log-json"  # job logs are files, not terminals
    return command


def _ask(address: str, job_id: str, call):
    client = _client(address)
    try:
        return call(client)
    except Exception as e:
        raise ConfigError(f"job {job_id} at {address}: {e}", "check the job id with `ray job list`") from e


def job_status(address: str, job_id: str) -> dict[str, Any]:
    info = _ask(address, job_id, lambda c: c.get_job_info(job_id))
    return {
        "job_id": job_id,
        "status": str(getattr(info.status, "value", info.status)),
        "message": info.message,
        "entrypoint": info.entrypoint,
    }


def job_logs(address: str, job_id: str) -> str:
    return _ask(address, job_id, lambda c: c.get_job_logs(job_id))


def job_stop(address: str, job_id: str) -> bool:
    return bool(_ask(address, job_id, lambda c: c.stop_job(job_id)))
