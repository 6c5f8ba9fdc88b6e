"""`tased-batch run | resume | status`: the main job on Ray, its resume and its progress."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from tased_batch.cli.common import (ActorsOpt, AddressOpt, BatchOpt, CpusOpt, GpusOpt, LogJsonOpt, QuietOpt,
                                    StorageOpt, err, log_mode, storage_options, user_errors)

out = Console()

EXIT_HELP = "Exit codes: 0 all videos done; 3 finished, some videos failed; 4 could not finish (resume it); 2 bad options."


def _print_summary(report: dict[str, Any]) -> None:
    table = Table(title="tased-batch run", show_header=False)
    table.add_row("output", str(report["output"]))
    table.add_row("weights", f"{report['weights']['kind']} ({report['weights']['sha256'][:12]})")
    table.add_row("shards", f"{report['shards']['done']}/{report['shards']['total']} done, {report['shards']['pending']} pending")
    table.add_row("videos", f"{report['videos']['done']} done, {report['videos']['failed']} failed of {report['videos']['total']}")
    table.add_row("frames", f"{report['frames_done']:,} in store; {report['frames_this_run']:,} this run "
                            f"at {report['frames_per_second']:.1f} frames/s")
    if report.get("actor_restarts"):
        table.add_row("actor restarts", str(report["actor_restarts"]))
    for reason, count in sorted(report.get("failures_by_reason", {}).items()):
        table.add_row(f"failed: {reason}", str(count))
    err.print(table)


def _finish(result, log: str) -> None:
    report = result.report
    if report.get("dry_run"):
        if log == "jsonl":
            typer.echo(json.dumps({"event": "plan", **report}))
        else:
            plan = report["plan"]
            err.print(f"[bold]dry run[/bold]: {plan['videos']:,} videos in {plan['shards']:,} shards of {plan['shard_size']}; "
                      f"{plan['shards_to_run']:,} to run, {plan['shards_done']:,} already done; weights "
                      f"{report['weights']['kind']} {report['weights']['sha256'][:12]}; output writable")
        raise typer.Exit(0)
    if log == "jsonl":
        typer.echo(json.dumps({"event": "summary", **report}, default=str))
    elif log != "quiet":
        _print_summary(report)
    raise typer.Exit(result.exit_code)


def _run(config) -> None:
    from tased_batch.job import run_job

    if config.weights == "random" and config.log != "jsonl":
        err.print("[yellow]warning:[/yellow] random stand-in weights (--weights random): the maps show the pipeline, not saliency")
    with user_errors():
        result = run_job(config)
    _finish(result, config.log)


def run(
    input: str = typer.Argument(None, help="Videos: file, folder, glob, s3:// prefix, manifest (.txt/.csv/.tsv/.jsonl/.parquet) or tar shards."),
    output: str = typer.Argument(None, help="Results URI (local path or s3://...)."),
    config_file: str = typer.Option(None, "--config", help="YAML/JSON/TOML file with these options; flags override it."),
    weights: str = typer.Option(None, "--weights", "-w", help="Checkpoint path/URI; default 'released' (the cached file); 'random' = labelled stand-in."),
    format: str = typer.Option(None, "--format", help="parquet (default) | zarr | png."),
    size: str = typer.Option(None, "--size", help="Model input HxW, multiples of 32 (default 224x384)."),
    store_size: str = typer.Option(None, "--store-size", help="Stored map HxW (default model size / 6, 38x64)."),
    fps: float = typer.Option(None, "--fps", help="Resample videos to this frame rate before windowing."),
    every: int = typer.Option(None, "--every", help="Maps only for every N-th frame."),
    output_fps: float = typer.Option(None, "--output-fps", help="Maps only at this rate (maps per second)."),
    decoder: str = typer.Option(None, "--decoder", help="auto (decord, PyAV fallback) | decord | pyav."),
    resize: str = typer.Option(None, "--resize", help="decoder (fast) | exact (OpenCV, as the released script)."),
    precision: str = typer.Option(None, "--precision", help="fp32 (strict) | tf32 (CUDA, Ampere or newer) | bf16 | fp16."),
    first_windows: str = typer.Option(None, "--first-windows", help="Windows of the first 31 frames: reversed (time-reversed, default) | released (run_example.py's code to the letter)."),
    batch_size: BatchOpt = None,
    shard_size: int = typer.Option(None, "--shard-size", help="Videos per shard (default 16)."),
    url_col: str = typer.Option(None, "--url-col", help="Manifest column with video URIs (default url)."),
    id_col: str = typer.Option(None, "--id-col", help="Manifest column with video ids."),
    storage_option: StorageOpt = None,
    address: AddressOpt = None,
    actors: ActorsOpt = None,
    gpus_per_actor: GpusOpt = None,
    cpus_per_actor: CpusOpt = None,
    max_attempts: int = typer.Option(None, "--max-attempts", help="Attempts per shard before it is left pending (default 3)."),
    retry_failed: bool = typer.Option(None, "--retry-failed/--no-retry-failed", help="Redo shards that recorded failed videos."),
    overwrite: bool = typer.Option(None, "--overwrite/--no-overwrite", help="Start over when OUTPUT holds a run with another config."),
    dry_run: bool = typer.Option(None, "--dry-run/--no-dry-run", help="Check sources, weights, output and options; print the plan."),
    quiet: QuietOpt = False,
    log_json: LogJsonOpt = False,
) -> None:
    """Compute saliency maps for a video collection on Ray actors, resumably."""
    from tased_batch.config import build_config

    flags = dict(
        input=input, output=output, weights=weights, format=format, size=size, store_size=store_size, fps=fps,
        every=every, output_fps=output_fps, decoder=decoder, resize=resize, precision=precision, first_windows=first_windows, batch_size=batch_size,
        shard_size=shard_size, url_col=url_col, id_col=id_col, storage_options=storage_options(storage_option),
        address=address, actors=actors, gpus_per_actor=gpus_per_actor, cpus_per_actor=cpus_per_actor,
        max_attempts=max_attempts, retry_failed=retry_failed, overwrite=overwrite, dry_run=dry_run,
        log=log_mode(quiet, log_json),
    )
    with user_errors():
        config = build_config(config_file, flags)
    _run(config)


def resume(
    output: str = typer.Argument(..., help="Output URI of an earlier run."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Also redo shards that recorded failed videos."),
    storage_option: StorageOpt = None,
    address: AddressOpt = None,
    actors: ActorsOpt = None,
    cpus_per_actor: CpusOpt = None,
    gpus_per_actor: GpusOpt = None,
    batch_size: BatchOpt = None,
    quiet: QuietOpt = False,
    log_json: LogJsonOpt = False,
) -> None:
    """Process only the shards of OUTPUT's run that have no commit record yet."""
    from tased_batch.job import resume_config

    overrides = dict(
        retry_failed=retry_failed or None, storage_options=storage_options(storage_option), address=address,
        actors=actors, cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor, batch_size=batch_size,
        log=log_mode(quiet, log_json),
    )
    with user_errors():
        config = resume_config(output, overrides)
    _run(config)


def status(
    output: str = typer.Argument(..., help="Output URI of a run."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    storage_option: StorageOpt = None,
) -> None:
    """Shards done and pending, videos done and failed, frames done, failures by reason."""
    from tased_batch.job import run_status

    with user_errors():
        summary = run_status(output, storage_options(storage_option))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    s, v = summary["shards"], summary["videos"]
    out.print(f"[bold]{output}[/bold]")
    out.print(f"shards  {s['done']}/{s['total']} done, {s['pending']} pending")
    out.print(f"videos  {v['done']} done, {v['failed']} failed, {v['pending']} pending, of {v['total']}")
    out.print(f"frames  {summary['frames_done']:,}")
    if summary["failures"]:
        table = Table("reason", "videos", "example")
        for reason, count in sorted(summary["failures_by_reason"].items(), key=lambda kv: -kv[1]):
            example = next(f for f in summary["failures"] if (f["reason"] or "unknown") == reason)
            table.add_row(reason, str(count), f"{example['video_id']}: {example['error']}")
        out.print(table)


def register(app: typer.Typer) -> None:
    app.command("run", epilog=EXIT_HELP)(run)
    app.command("resume", epilog=EXIT_HELP)(resume)
    app.command("status")(status)
