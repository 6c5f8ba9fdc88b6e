"""``tased-batch render RESULTS VIDEO_ID --source VIDEO --out overlay.mp4|overlay.gif``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tased_batch.cli.common import check_storage, user_errors


def render_command(
    results: str = typer.Argument(..., help="Results store URI (any format) or PNG tree <video>/NNNN.png."),
    video_id: str = typer.Argument(..., help="The video's id in the results."),
    source: str = typer.Option(..., "--source", help="The source video the maps were computed from."),
    out: Path = typer.Option(..., "--out", help="Output file: *.mp4 (H.264) or *.gif."),
    side_by_side: bool = typer.Option(
        False, "--side-by-side", help="Video and coloured map next to each other instead of blended."
    ),
    alpha: float = typer.Option(
        0.5, min=0.0, max=1.0, help="Heat-map weight in the blend (0: video only, 1: map only)."
    ),
    crop: str = typer.Option(
        None,
        "--crop",
        help="Draw the crop window of this aspect ratio (e.g. 9:16): the stored track or one computed from the maps.",
    ),
) -> None:
    """Draw a video's saliency maps over it as a colour heat map (blue low, red high)."""
    from tased_batch.analysis.render import render

    console = Console()
    columns = (TextColumn("rendering"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    check_storage(results, source)
    with user_errors():
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("render", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total or None)

            info = render(
                results, video_id, source, out, side_by_side=side_by_side, alpha=alpha, crop=crop, progress=progress
            )
    console.print(f"wrote {info.path}: {info.frames} frames, {info.width}x{info.height} at {info.fps:g} fps")


def register(app: typer.Typer) -> None:
    """Add ``render`` to the app."""
    app.command("render")(render_command)
