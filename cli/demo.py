"""`tased-batch demo`: the quickstart on synthesised sample videos, nothing to set up."""

from __future__ import annotations

import typer

from tased_batch.cli.common import err, model_size, user_errors


def demo(
    directory: str = typer.Argument("tased-demo", help="Folder for the sample videos, the maps and an overlay video."),
    weights: str = typer.Option(
        None, "--weights", "-w", help="Checkpoint (default: released, else the random stand-in)."
    ),
    size: str = typer.Option(None, "--size", help="Model input HxW (default 224x384 on GPU, 96x160 on CPU)."),
) -> None:
    """Make 3 sample videos, run the main job on them (local Ray), render one overlay."""
    from tased_batch.demo import run_demo

    if size:
        model_size(size)  # refused before any sample video is made
    with user_errors():
        result, overlay = run_demo(directory, weights, size, say=lambda line: err.print(line))
    report = result.report
    err.print(
        f"{report['videos']['done']} videos, {report['frames_done']:,} maps in {report['output']} "
        f"({report['frames_per_second']:.1f} frames/s); weights: {report['weights']['kind']}"
    )
    if overlay.exists():
        err.print(f"overlay: {overlay}")
    err.print(
        f"read them back: python -c \"import tased_batch; r = tased_batch.open_results('{report['output']}'); "
        "print(r.videos().select(['video_id', 'status', 'n_maps', 'weights_kind']))\""
    )
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
