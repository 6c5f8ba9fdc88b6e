"""A whole run: plan (or pick up the stored plan), execute the pending shards, report.

Exit codes: 0 every video done; 3 finished but some videos failed (listed in the report
and `tased-batch status`); 4 the run could not finish (shards left pending: rerun or
`resume`); 2 bad options or config (nothing was run).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from tased_batch.config import RunConfig, fingerprint
from tased_batch.errors import ConfigError
from tased_batch.options import RESUME_KEYS, parse_options
from tased_batch.plan import Output, Plan, RunState, prepare
from tased_batch.progress import make_reporter

EXIT_OK = 0
EXIT_SOME_FAILED = 3
EXIT_INCOMPLETE = 4


@dataclass
class JobResult:
    exit_code: int
    report: dict[str, Any]


def _exit_code(summary: dict[str, Any]) -> int:
    if summary["shards"]["pending"]:
        return EXIT_INCOMPLETE
    return EXIT_SOME_FAILED if summary["videos"]["failed"] else EXIT_OK


def run_job(config: RunConfig) -> JobResult:
    """Run (or continue) the job that ``config`` describes."""
    from tased_batch.shards import run_info
    from tased_batch.weights import weights_payload

    started = time.time()
    payload, weights = weights_payload(config.weights, config.storage_options)
    output, plan, fields = prepare(config, weights.sha256, persist=not config.dry_run)
    config_fp = fingerprint(fields)
    if config.dry_run:
        output.check_writable()
        state = output.state(plan)
        todo = _todo(state, config)
        report = {
            "dry_run": True, "output": config.output, "weights": weights.to_dict(), "config_fingerprint": config_fp,
            "plan": {"videos": plan.n_videos, "shards": len(plan.shard_ids), "shard_size": config.shard_size,
                     "shards_to_run": len(todo), "shards_done": len(state.done)},
            "config": {k: v for k, v in config.to_dict().items() if k != "storage_options"},
        }
        return JobResult(EXIT_OK, report)
    state = output.state(plan)
    todo = _todo(state, config)
    reporter = make_reporter(config.log, len(todo), sum(plan.shard_sizes()[s] for s in todo))
    outcome = None
    try:
        if todo:
            from tased_batch.executor import execute

            outcome = execute(config, plan, todo, payload, weights, run_info(config, weights, config_fp), reporter)
    finally:
        reporter.close()
    final = output.state(plan)
    summary = final.summary()
    removed: list[str] = []
    if not summary["shards"]["pending"]:
        from tased_batch.stores import remove_orphans

        removed = remove_orphans(config.output, config.storage_options)  # crashed or superseded attempts
    report = {
        "output": config.output,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 3),
        "weights": weights.to_dict(),
        "config_fingerprint": config_fp,
        "shards_run": len(todo),
        "frames_this_run": reporter.frames,
        "frames_per_second": round(reporter.fps, 3),
        "actor_restarts": outcome.actor_restarts if outcome else 0,
        "unfinished_shards": outcome.unfinished if outcome else {},
        "orphan_attempts_removed": len(removed),
        **summary,
    }
    report["exit_code"] = _exit_code(summary)
    _write_report(output, report)
    return JobResult(report["exit_code"], report)


def _todo(state: RunState, config: RunConfig) -> list[str]:
    todo = state.pending
    if config.retry_failed:
        todo = sorted(set(todo) | set(state.with_failures()))
    return todo


def _write_report(output: Output, report: dict[str, Any]) -> None:
    name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    output.fs.makedirs(f"{output.root}/reports", exist_ok=True)
    output.fs.pipe(f"{output.root}/reports/run-{name}.json", json.dumps(report, indent=2, default=str).encode())


def resume_config(output_uri: str, overrides: dict[str, Any]) -> RunConfig:
    """The stored config of the run at ``output_uri`` with execution-only options overridden."""
    storage = overrides.get("storage_options") or {}
    stored = Output(output_uri, storage).stored_config()
    if stored is None:
        raise ConfigError(f"no run found at {output_uri} (no config.json)", "start it with `tased-batch run INPUT OUTPUT`")
    given = parse_options({k: v for k, v in overrides.items() if v is not None}, where="command line")
    changed = [k for k in given if k not in RESUME_KEYS]
    if changed:
        raise ConfigError(
            f"resume cannot change {', '.join(changed)}",
            "those define the run's maps; start a new run in another OUTPUT or use `run ... --overwrite`",
        )
    values = parse_options(stored["config"], where=f"{output_uri} config.json")
    values["storage_options"] = {**values.get("storage_options", {}), **storage}
    values.update({k: v for k, v in given.items() if k != "storage_options"})
    values["output"] = output_uri
    values["overwrite"] = False
    return RunConfig(**values).validate()


def run_status(output_uri: str, storage_options: dict | None = None) -> dict[str, Any]:
    """Shards done and pending, videos done and failed, frames, failures grouped by reason."""
    output = Output(output_uri, storage_options)
    stored = output.stored_config()
    plan: Plan | None = output.load_plan()
    if stored is None or plan is None:
        raise ConfigError(f"no run found at {output_uri}", "check the OUTPUT URI")
    summary = output.state(plan).summary()
    summary["output"] = output_uri
    summary["config_fingerprint"] = stored.get("fingerprint")
    summary["weights_sha256"] = stored.get("fingerprint_fields", {}).get("weights_sha256")
    return summary
