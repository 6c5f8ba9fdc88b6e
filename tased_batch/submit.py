"""Submitting `tased-batch run` to a Ray cluster through Ray's job submission API.

The job's driver runs ``tased-batch <args>`` on the cluster, where the package must be
installed (the image in infra/) or named with ``--pip``. Credentials are never sent: the
cluster uses its own AWS chain (instance roles, its environment). Only non-secret AWS
settings (endpoint, region) are forwarded so that the job reads the same store.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

from tased_batch.errors import ConfigError

FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION")


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as e:
        raise ConfigError(f"cannot reach the Ray job API at {address}: {e}", "check --address (http://HEAD:8265)") from e


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
    if env_vars:
        env["env_vars"] = {**env_vars, **env.get("env_vars", {})}
    if pip:
        env["pip"] = list(pip)
    return env


def submit(address: str, args: list[str], *, pip: list[str] | None = None, extra_env: str | None = None,
           submission_id: str | None = None) -> str:
    """Submit ``tased-batch <args>``; returns the job id."""
    if not args or args[0] not in ("run", "resume"):
        raise ConfigError("submit runs `run ...` or `resume ...`", "e.g. tased-batch submit --address http://HEAD:8265 -- run IN OUT")
    entrypoint = "tased-batch " + " ".join(shlex.quote(a) for a in args)
    if args[0] == "run" and "--log-json" not in args and "--quiet" not in args and "-q" not in args:
        entrypoint += " --log-json"  # job logs are files, not terminals
    return _client(address).submit_job(entrypoint=entrypoint, runtime_env=runtime_env(pip, extra_env) or None,
                                       submission_id=submission_id)


def _ask(address: str, job_id: str, call):
    client = _client(address)
    try:
        return call(client)
    except Exception as e:
        raise ConfigError(f"job {job_id} at {address}: {e}", "check the job id with `ray job list`") from e


def job_status(address: str, job_id: str) -> dict[str, Any]:
    info = _ask(address, job_id, lambda c: c.get_job_info(job_id))
    return {"job_id": job_id, "status": str(getattr(info.status, "value", info.status)),
            "message": info.message, "entrypoint": info.entrypoint}


def job_logs(address: str, job_id: str) -> str:
    return _ask(address, job_id, lambda c: c.get_job_logs(job_id))


def job_stop(address: str, job_id: str) -> bool:
    return bool(_ask(address, job_id, lambda c: c.stop_job(job_id)))
