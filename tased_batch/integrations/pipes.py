"""The Dagster Pipes side of a run: ``python -m tased_batch.integrations.pipes``, started by the asset.

It runs on the Ray cluster (submitted by dagster-ray) or in a subprocess of the Dagster process,
reads the run from the Pipes extras (input, output, options already checked, config file), runs it
and reports the materialization back: videos done and failed, frames, failures by reason, frames/s,
the output URI, and the config fingerprint as the data version. Needs only ``dagster-pipes``.
"""

from __future__ import annotations

import sys
from typing import Any

from tased_batch.core.errors import TasedError
from tased_batch.core.secrets import scrub, scrub_text
from tased_batch.integrations.common import RunStatus


def metadata(status: RunStatus, report: dict[str, Any], exit_code: int) -> dict[str, Any]:
    """The asset's materialization metadata (no secrets: the output URI is scrubbed)."""
    return scrub(
        {
            "output": status.output,
            "videos_done": status.videos_done,
            "videos_failed": status.videos_failed,
            "videos_total": status.videos_total,
            "frames": status.frames_done,
            "frames_per_second": float(report.get("frames_per_second") or 0.0),
            "failures_by_reason": {"raw_value": dict(status.failures_by_reason), "type": "json"},
            "shards_run": int(report.get("shards_run") or 0),
            "exit_code": exit_code,
        }
    )


def main() -> int:
    from dagster_pipes import open_dagster_pipes

    from tased_batch.config import build_config
    from tased_batch.run.job import EXIT_INCOMPLETE, run_job

    with open_dagster_pipes() as pipes:
        flags = dict(pipes.get_extra("options") or {})
        flags.update(input=pipes.get_extra("input"), output=pipes.get_extra("output"))
        try:
            config = build_config(pipes.get_extra("config"), flags)
            result = run_job(config)
            status = RunStatus.of(config.output, config.storage_options)
        except TasedError as e:
            pipes.log.error(scrub_text(str(e)))
            return 2
        if result.exit_code == EXIT_INCOMPLETE:
            pipes.log.error(
                f"the run could not finish: {status.shards_pending} shards pending; materialize again to resume"
            )
            return result.exit_code
        pipes.report_asset_materialization(
            metadata=metadata(status, result.report, result.exit_code),
            data_version=result.report["config_fingerprint"],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
