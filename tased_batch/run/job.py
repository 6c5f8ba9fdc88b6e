"""A whole run: plan (or pick up the stored plan), execute the pending shards, report.

Exit codes: 0 every video done; 3 finished but some videos failed (listed in the report
and `tased-batch status`); 4 the run could not finish (shards left pending: rerun or
`resume`); 2 bad options or config (nothing was run).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from tased_batch.config import RunConfig, fingerprint
from tased_batch.core.errors import ConfigError
from tased_batch.core.secrets import scrub, scrub_text
from tased_batch.options import RESUME_KEYS, parse_options
from tased_batch.run.plan import Output, Plan, RunState, check_apart, prepare
from tased_batch.run.progress import Reporter, make_reporter
from tased_batch.run.runrecords import RunReport
from tased_batch.stores.lease import acquire

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
    """Run (or continue) the job that ``config`` describes, holding the output's lease throughout."""
    from tased_batch.model.weights import weights_payload
    from tased_batch.run.shards import run_info

    started = time.time()
    payload, weights = weights_payload(config.weights, config.storage_options)
    if config.dry_run:
        output, plan, fields = prepare(config, weights.sha256, persist=False)
        config_fp = fingerprint(fields)
        output.check_writable()
        state = output.state(plan, config_fp)
        todo = _todo(state, config)
        report = {
            "dry_run": True,
            "output": config.output,
            "weights": weights.to_dict(),
            "config_fingerprint": config_fp,
            "plan": {
                "videos": plan.n_videos,
                "shards": len(plan.shard_ids),
                "shard_size": config.shard_size,
                "shards_to_run": len(todo),
                "shards_done": len(state.done),
            },
            "config": {k: v for k, v in config.to_dict().items() if k != "storage_options"},
        }
        return JobResult(EXIT_OK, scrub(report))
    reporter: Reporter | None = None
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        if reporter is not None:
            reporter.note(message)
        else:  # also with --quiet: waits and takeovers must be explained
            sys.stderr.write(f"tased-batch: {scrub_text(message)}\n")
            sys.stderr.flush()

    check_apart(config.input, config.output, config.storage_options)  # before the lease file is written
    target = Output(config.output, config.storage_options)
    lease = acquire(target.fs, target.root, ttl=config.lease_ttl, log=note)  # before anything is planned or deleted
    try:
        lease.start_heartbeat()
        output, plan, fields = prepare(config, weights.sha256)
        config_fp = fingerprint(fields)
        state = output.state(plan, config_fp)
        if state.unplanned:
            from tased_batch.stores.layout import remove_commit

            for shard in state.unplanned:  # under the lease; their files go with the orphan cleanup
                remove_commit(output.fs, output.root, shard)
            note(
                f"removed {len(state.unplanned)} commit record(s) of shards the plan no longer has "
                f"({', '.join(state.unplanned[:5])}{' …' if len(state.unplanned) > 5 else ''}): "
                "the input changed since the plan was made"
            )
            state = output.state(plan, config_fp)
        for shard, why in sorted(state.stale.items()):
            note(f"commit record of shard {shard} does not count ({why}); the shard will be redone")
        todo = _todo(state, config)
        earlier = len(output.fs.glob(f"{output.root}/reports/run-*.json"))
        attempt = {
            "number": earlier + 1,
            "kind": "resume" if earlier or state.done else "first",
            "shards_done_before": len(state.done),
            "shards_to_run": len(todo),
        }
        reporter = make_reporter(config.log, len(todo), sum(plan.shard_sizes()[s] for s in todo))
        outcome = None
        interrupted = False
        folder = _IndexFolder(output)
        try:
            if todo:
                from tased_batch.run.executor import execute

                def tick() -> None:
                    lease.check()
                    folder.maybe_fold()

                info = scrub(run_info(config, weights, config_fp))
                outcome = execute(
                    config, plan, todo, payload, weights, info, reporter, tick=tick, fence=lease.info.token
                )
        except KeyboardInterrupt:  # Ctrl-C: the report still says how far it got and where the time went
            interrupted = True
        finally:
            reporter.close()
        lease.check()
        folder.fold()
        final = output.state(plan, config_fp)
        if config.format == "lance":  # the one committer: committed shards' fragments join the tables once
            from tased_batch.stores.lance_store import append_committed

            appended = append_committed(
                config.output, {s: e.record for s, e in final.records.items()}, config.storage_options
            )
            if appended:
                note(f"appended {appended} committed shard(s) to maps.lance and videos.lance")
        summary = final.summary()
        removed: list[str] = []
        if not summary["shards"]["pending"]:
            from tased_batch.stores import remove_orphans

            live = {e.attempt_prefix for e in final.records.values()}
            # Only attempts older than this lease: none of them can belong to a live writer.
            removed = remove_orphans(config.output, config.storage_options, live=live, before=lease.info.started_stamp)
        verdict = reporter.book.verdict()
        run_report = RunReport(
            output=config.output,
            started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            seconds=round(time.time() - started, 3),
            weights=weights.to_dict(),
            config_fingerprint=config_fp,
            shards_run=len(todo),
            frames_this_run=reporter.frames_committed,
            frames_per_second=round(reporter.fps, 3),
            actor_restarts=outcome.actor_restarts if outcome else 0,
            unfinished_shards=outcome.unfinished if outcome else {},
            orphan_attempts_removed=len(removed),
            summary=summary,
            exit_code=_exit_code(summary),
            stalled=outcome.stalled if outcome else None,
            lease={"owner": lease.info.owner, "host": lease.info.host, "job_id": lease.info.job_id, "notes": notes},
            internal_errors=outcome.internal_errors if outcome else [],
            time=verdict.to_dict() if verdict is not None else {},
            actors={i: v.to_dict() for i, v in reporter.book.verdicts().items()},
            timeline=reporter.book.timeline(),
            attempt={**attempt, "interrupted": interrupted},
        )
        report = run_report.to_dict()
        _write_report(output, report)
    finally:
        lease.release()
    if interrupted:
        raise KeyboardInterrupt
    return JobResult(run_report.exit_code, report)


class _IndexFolder:
    """Folds new commit records into the output's index from time to time (and at the end)."""

    EVERY_SECONDS = 300.0

    def __init__(self, output: Output) -> None:
        self.output = output
        self.last = time.monotonic()

    def maybe_fold(self) -> None:
        if time.monotonic() - self.last >= self.EVERY_SECONDS:
            self.fold()

    def fold(self) -> None:
        from tased_batch.stores.index import fold

        try:
            fold(self.output.fs, self.output.root)
        except Exception as exc:  # the index only speeds reading up; the records stay the truth
            sys.stderr.write(f"tased-batch: could not update the index: {scrub_text(str(exc))}\n")
        self.last = time.monotonic()


def _todo(state: RunState, config: RunConfig) -> list[str]:
    todo = state.pending
    if config.retry_failed:
        todo = sorted(set(todo) | set(state.with_failures()))
    return todo


def _write_report(output: Output, report: dict[str, Any]) -> None:
    from tased_batch.stores.layout import put_whole

    name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    data = json.dumps(scrub(report), indent=2, default=str).encode()
    put_whole(output.fs, f"{output.root}/reports/run-{name}.json", data)


def run_reports(output: Output) -> list[dict[str, Any]]:
    """The run reports in ``OUTPUT/reports/``, oldest first (one per run or resume); unreadable ones skipped."""
    reports = []
    for path in sorted(output.fs.glob(f"{output.root}/reports/run-*.json")):
        try:
            reports.append(json.loads(output.fs.cat_file(path)))
        except (OSError, ValueError):
            continue  # a report being written or damaged: the commit records are the truth
    return reports


def resume_config(output_uri: str, overrides: dict[str, Any]) -> RunConfig:
    """The stored config of the run at ``output_uri`` with execution-only options overridden."""
    storage = overrides.get("storage_options") or {}
    stored = Output(output_uri, storage).stored_config()
    if stored is None:
        raise ConfigError(
            f"no run found at {output_uri} (no config.json)", "start it with `tased-batch run INPUT OUTPUT`"
        )
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
    summary = output.state(plan, stored.get("fingerprint")).summary()
    summary["output"] = output_uri
    from tased_batch.stores.lease import read_lease

    holder = read_lease(output.fs, output.root)
    summary["lease"] = (
        None
        if holder is None
        else {
            "owner": holder.owner,
            "host": holder.host,
            "pid": holder.pid,
            "job_id": holder.job_id,
            "seconds_since_heartbeat": round(time.time() - holder.heartbeat, 1),
            "ttl": holder.ttl,
        }
    )
    reports = run_reports(output)
    timed = [r["time"] for r in reports if r.get("time")]
    summary["time"] = timed[-1] if timed else None  # where the last run that processed shards spent its time
    summary["config_fingerprint"] = stored.get("fingerprint")
    summary["weights_sha256"] = stored.get("fingerprint_fields", {}).get("weights_sha256")
    return summary
