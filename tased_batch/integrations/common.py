"""What the orchestrator plugins share: run arguments from checked options, the run's status, outcomes.

No orchestrator is imported here, so that these rules are tested once and hold for every plugin.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tased_batch.core.errors import ConfigError
from tased_batch.core.secrets import is_secret_key, scrub, scrub_text
from tased_batch.options import OPTIONS, parse_options
from tased_batch.run.job import EXIT_INCOMPLETE, EXIT_OK, EXIT_SOME_FAILED

EXIT_USAGE = 2
ENDED = ("SUCCEEDED", "FAILED", "STOPPED")  # Ray job states after which nothing changes
_EXIT_IN_MESSAGE = re.compile(r"exit code (-?\d+)")


def local_command() -> list[str]:
    """The `tased-batch` command installed with this Python (what a Ray job runs too), else the one on PATH."""
    script = Path(sys.executable).with_name("tased-batch")
    return [str(script) if script.exists() else "tased-batch"]


def check_options(options: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """``options`` checked against the schema (same names and checks as `run`); credentials refused.

    Task arguments are stored and shown by the orchestrator, so a secret there would leak.
    """
    values = parse_options(dict(options or {}), where=where)
    secrets = sorted(_secret_paths(values.get("storage_options") or {}))
    if secrets:
        raise ConfigError(
            f"{where}: credentials in storage_options ({', '.join(secrets)})",
            "task arguments are stored and shown by the orchestrator; give the cluster its own credentials "
            "(instance role, its environment) or use the plugin's secret settings (Airflow connection, Dagster EnvVar)",
        )
    return values


def _secret_paths(options: Mapping[str, Any], prefix: str = "") -> list[str]:
    found: list[str] = []
    for key, value in options.items():
        path = f"{prefix}{key}"
        if is_secret_key(key):
            found.append(path)
        elif isinstance(value, Mapping):
            found.extend(_secret_paths(value, path + "."))
    return found


def run_args(
    input: str | None, output: str, options: Mapping[str, Any] | None = None, config: str | None = None
) -> list[str]:
    """`tased-batch run` arguments for these checked options (or a config file, which the flags override)."""
    values = check_options(options, where="options")
    args = ["run"]
    if input:
        args.append(input)
    args.append(output)
    if config:
        args += ["--config", config]
    for name, value in values.items():
        if name in ("input", "output"):
            raise ConfigError(f"options: give {name} as its own argument, not in options")
        option = OPTIONS[name]
        if option.kind is bool:
            args.append(option.flag if value else f"--no-{option.flag[2:]}")
        elif option.kind is dict:
            for key, item in _flatten(value).items():
                args += [option.flag, f"{key}={item}"]
        elif value is not None:
            args += [option.flag, str(option.dump(value))]
    return args


def _flatten(options: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def exit_code_of(job_status: str, message: str | None) -> int:
    """The run's exit code from a finished Ray job's state and message (Ray names the exit code)."""
    if job_status == "SUCCEEDED":
        return EXIT_OK
    found = _EXIT_IN_MESSAGE.search(message or "")
    return int(found.group(1)) if found else EXIT_INCOMPLETE


def last_reason(log: str) -> str:
    """The one-line reason a failed run gave: its last non-empty log line, scrubbed."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return scrub_text(lines[-1])[:500] if lines else "no log output"


@dataclass
class RunStatus:
    """A run's status as an orchestrator keeps it (Airflow's XCom, Dagster's metadata): no secrets."""

    output: str
    shards_done: int
    shards_pending: int
    shards_total: int
    videos_done: int
    videos_failed: int
    videos_pending: int
    videos_total: int
    frames_done: int
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    config_fingerprint: str | None = None

    @classmethod
    def of(cls, output: str, storage_options: Mapping[str, Any] | None = None) -> RunStatus:
        """The status of the run at ``output`` (ConfigError when there is none)."""
        from tased_batch.run.job import run_status

        s = run_status(output, dict(storage_options or {}))
        return cls(
            output=scrub_text(output),
            shards_done=s["shards"]["done"],
            shards_pending=s["shards"]["pending"],
            shards_total=s["shards"]["total"],
            videos_done=s["videos"]["done"],
            videos_failed=s["videos"]["failed"],
            videos_pending=s["videos"]["pending"],
            videos_total=s["videos"]["total"],
            frames_done=s["frames_done"],
            failures_by_reason=dict(s.get("failures_by_reason") or {}),
            config_fingerprint=s.get("config_fingerprint"),
        )

    @property
    def complete(self) -> bool:
        return self.shards_total > 0 and self.shards_pending == 0

    @property
    def failed_fraction(self) -> float:
        return self.videos_failed / self.videos_total if self.videos_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return scrub(asdict(self))


@dataclass(frozen=True)
class Outcome:
    """What a finished run means for the task: success or not, and the one-line reason."""

    ok: bool
    exit_code: int
    reason: str


def outcome(exit_code: int, status: RunStatus | None, max_failed_fraction: float, reason: str = "") -> Outcome:
    """0 succeeds; 3 succeeds unless more than ``max_failed_fraction`` of the videos failed; 2 and 4 fail."""
    if exit_code == EXIT_OK:
        return Outcome(True, exit_code, "every video done")
    if exit_code == EXIT_SOME_FAILED and status is not None:
        share = status.failed_fraction
        summary = (
            f"{status.videos_failed} of {status.videos_total} videos failed ({share:.1%}): {status.failures_by_reason}"
        )
        if share > max_failed_fraction:
            return Outcome(False, exit_code, f"{summary}, above the threshold {max_failed_fraction:.1%}")
        return Outcome(True, exit_code, summary)
    what = {EXIT_USAGE: "bad options, config or damaged run state", EXIT_INCOMPLETE: "the run could not finish"}
    return Outcome(False, exit_code, f"{what.get(exit_code, 'the run failed')} (exit {exit_code}): {reason}")
