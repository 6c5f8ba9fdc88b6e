"""`tased-batch run | resume | status`: the main job on Ray, its resume and its progress.

The options of `run` (and the ones `resume` may change) are generated from the option schema
(:mod:`tased_batch.options`): a new option there is a new flag here, with its help and group.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from tased_batch.cli.common import StorageOpt, check_storage, err, storage_options, user_errors
from tased_batch.core.secrets import plain
from tased_batch.options import OPTIONS, Option

KEYWORD = inspect.Parameter.KEYWORD_ONLY
PANELS = {
    "io": "Input and output",
    "model": "Model",
    "sampling": "Frames and decoding",
    "store": "Store",
    "execution": "Execution",
}

out = Console()


EXIT_HELP = (
    "Exit codes: 0 all videos done; 3 finished, some videos failed; 4 could not finish (resume it); 2 bad options."
)


def _print_summary(report: dict[str, Any]) -> None:
    table = Table(title="tased-batch run", show_header=False)
    table.add_row("output", plain(report["output"]))
    table.add_row("weights", f"{report['weights']['kind']} ({report['weights']['sha256'][:12]})")
    table.add_row(
        "shards", f"{report['shards']['done']}/{report['shards']['total']} done, {report['shards']['pending']} pending"
    )
    table.add_row(
        "videos", f"{report['videos']['done']} done, {report['videos']['failed']} failed of {report['videos']['total']}"
    )
    table.add_row(
        "frames",
        f"{report['frames_done']:,} in store; {report['frames_this_run']:,} this run "
        f"at {report['frames_per_second']:.1f} frames/s",
    )
    if report.get("actor_restarts"):
        table.add_row("actor restarts", str(report["actor_restarts"]))
    for reason, count in sorted(report.get("failures_by_reason", {}).items()):
        table.add_row(plain(f"failed: {reason}"), str(count))
    if report.get("stalled"):
        table.add_row("stalled", plain(report["stalled"]))
    if report.get("time"):
        table.add_row("time", plain(time_line(report["time"])))
    err.print(table)


def time_line(verdict: dict[str, Any]) -> str:
    """The verdict in one line: what limits, how busy the model was, what to change."""
    return f"{verdict['limit']}-bound, model busy {verdict['model_busy']:.0%}: {verdict['advice']}"


def _finish(result, log: str) -> None:
    report = result.report
    if report.get("dry_run"):
        if log == "jsonl":
            typer.echo(json.dumps({"event": "plan", **report}))
        else:
            plan = report["plan"]
            err.print(
                f"[bold]dry run[/bold]: {plan['videos']:,} videos in {plan['shards']:,} shards of {plan['shard_size']}; "
                f"{plan['shards_to_run']:,} to run, {plan['shards_done']:,} already done; weights "
                f"{report['weights']['kind']} {report['weights']['sha256'][:12]}; output writable"
            )
        raise typer.Exit(0)
    if log == "jsonl":
        typer.echo(json.dumps({"event": "summary", **report}, default=str))
    elif log != "quiet":
        _print_summary(report)
    raise typer.Exit(result.exit_code)


def _run(config) -> None:
    from tased_batch.run.job import run_job

    if config.weights == "random" and config.log != "jsonl":
        err.print(
            "[yellow]warning:[/yellow] random stand-in weights (--weights random): the maps show the pipeline, not saliency"
        )
    check_storage(config.input, config.output, config.weights, options=config.storage_options)
    from tased_batch.cli.report import write_after_run

    try:
        with user_errors():
            result = run_job(config)
    except KeyboardInterrupt:  # the run report was written; the page shows how far it got
        write_after_run(config.output, config.storage_options)
        err.print(plain(f"interrupted: continue with `tased-batch resume {config.output}`"))
        from tased_batch.run.job import EXIT_INCOMPLETE

        raise typer.Exit(EXIT_INCOMPLETE) from None
    if not result.report.get("dry_run"):
        write_after_run(config.output, config.storage_options)
    _finish(result, config.log)


def _param(option: Option, show_default: bool) -> list[inspect.Parameter]:
    """The Typer parameter(s) of one schema option: its flag, or its positional argument, plus its switches."""
    spec, panel = option.spec, PANELS[option.group]
    if spec.argument:
        info: Any = typer.Argument(None, help=option.help, show_default=False)
        return [inspect.Parameter(option.name, KEYWORD, annotation=str | None, default=info)]
    default = option.dump(option.default)
    show = "" if default in (None, False, {}) or not show_default else f" (default: {default})"
    decls = [f"{option.flag}/--no-{option.flag[2:]}"] if option.kind is bool else [option.flag]
    if spec.short:
        decls.append(spec.short)
    kind: Any = {bool: bool, int: int, float: float}.get(option.kind, str)
    if option.auto:
        kind = str
    if option.kind is dict:
        kind = list[str]
    if spec.choices:
        kind = Literal[spec.choices]
    metavar = spec.metavar or ("N|auto" if option.auto else None)
    extra: dict[str, Any] = {"metavar": metavar} if metavar else {}
    info = typer.Option(*decls, help=option.help + show, rich_help_panel=panel, show_default=False, **extra)
    params = [inspect.Parameter(option.name, KEYWORD, annotation=Annotated[kind | None, info], default=None)]
    for i, switch in enumerate(spec.switches):
        flag = typer.Option(*switch.flags, help=switch.help, rich_help_panel=panel)
        params.append(
            inspect.Parameter(f"{option.name}_switch{i}", KEYWORD, annotation=Annotated[bool, flag], default=False)
        )
    return params


def _given(option: Option, kwargs: dict[str, Any]) -> Any:
    """The value the command line gave for ``option`` (None: not given), from its flag or a switch."""
    value = kwargs.get(option.name)
    for i, switch in enumerate(option.spec.switches):
        if kwargs.get(f"{option.name}_switch{i}"):
            value = switch.value
    if option.kind is dict:
        value = storage_options(value)
    return value


def schema_command(
    body: Callable[..., None], options: list[Option], head: list[inspect.Parameter], *, show_defaults: bool = True
) -> Callable[..., None]:
    """A Typer command with ``head`` parameters and one per schema option; ``body(**head, flags=...)``.

    ``flags`` holds the options the command line gave (not None), by option name.
    """
    names = [p.name for p in head]

    def command(**kwargs: Any) -> None:
        with user_errors():
            flags = {o.name: _given(o, kwargs) for o in options}
        body(**{n: kwargs[n] for n in names}, flags={k: v for k, v in flags.items() if v is not None})

    params = head + [p for o in options for p in _param(o, show_defaults)]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__, command.__name__ = body.__doc__, body.__name__
    return command


def run_command(config_file: str | None, flags: dict[str, Any]) -> None:
    """Compute saliency maps for a video collection on Ray actors, resumably."""
    from tased_batch.config import build_config

    with user_errors():
        config = build_config(config_file, flags)
    _run(config)


def resume_command(output: str, flags: dict[str, Any]) -> None:
    """Process only the shards of OUTPUT's run that have no commit record yet."""
    from tased_batch.run.job import resume_config

    check_storage(output, options=flags.get("storage_options"))
    with user_errors():
        config = resume_config(output, flags)
    _run(config)


CONFIG_PARAM = inspect.Parameter(
    "config_file",
    KEYWORD,
    annotation=Annotated[
        str | None,
        typer.Option(
            "--config", help="YAML/JSON/TOML file with these options (dashes or underscores); flags override it."
        ),
    ],
    default=None,
)
OUTPUT_PARAM = inspect.Parameter(
    "output", KEYWORD, annotation=Annotated[str, typer.Argument(help="Output URI of an earlier run.")]
)
run = schema_command(run_command, list(OPTIONS.values()), [CONFIG_PARAM])
# Unset, resume's options keep the stored run's values, so no defaults are shown.
resume = schema_command(
    resume_command, [o for o in OPTIONS.values() if o.spec.resume], [OUTPUT_PARAM], show_defaults=False
)


def status(
    output: str = typer.Argument(..., help="Output URI of a run."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    storage_option: StorageOpt = None,
) -> None:
    """Shards done and pending, videos done and failed, frames done, failures by reason."""
    from tased_batch.run.job import run_status

    check_storage(output, options=storage_options(storage_option))
    with user_errors():
        summary = run_status(output, storage_options(storage_option))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    s, v = summary["shards"], summary["videos"]
    out.print(plain(output), style="bold")
    out.print(f"shards  {s['done']}/{s['total']} done, {s['pending']} pending")
    out.print(f"videos  {v['done']} done, {v['failed']} failed, {v['pending']} pending, of {v['total']}")
    out.print(f"frames  {summary['frames_done']:,}")
    if summary["failures"]:
        table = Table("reason", "videos", "example")
        for reason, count in sorted(summary["failures_by_reason"].items(), key=lambda kv: -kv[1]):
            example = next(f for f in summary["failures"] if (f["reason"] or "unknown") == reason)
            table.add_row(plain(reason), str(count), plain(f"{example['video_id']}: {example['error']}"))
        out.print(table)
    if summary.get("stale_records"):
        out.print(f"stale   {len(summary['stale_records'])} commit record(s) of another config or plan (not counted)")
    if summary.get("time"):
        out.print(plain(f"time    {time_line(summary['time'])}"))
    if summary.get("lease"):
        lease = summary["lease"]
        out.print(
            plain(
                f"lease   held by {lease['owner']}@{lease['host']} (pid {lease['pid']}), "
                f"last heartbeat {lease['seconds_since_heartbeat']:.0f} s ago"
            )
        )


def register(app: typer.Typer) -> None:
    app.command("run", epilog=EXIT_HELP)(run)
    app.command("resume", epilog=EXIT_HELP)(resume)
    app.command("status")(status)
