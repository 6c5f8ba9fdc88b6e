"""``tased-batch evaluate PRED GT``: saliency metrics against a DHF1K-style ground truth."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from tased_batch.cli.common import check_storage, user_errors


def _fmt(value: float) -> str:
    return "–" if math.isnan(value) else f"{round(value, 3) + 0.0:.3f}"  # + 0.0: no "-0.000"


def evaluate_command(
    predictions: str = typer.Argument(..., help="Results store URI (any format) or PNG tree <video>/NNNN.png."),
    ground_truth: str = typer.Argument(..., help="DHF1K-style tree: <video>/maps/*.png and <video>/fixation/*.png."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for evaluation.csv and evaluation.json."),
    seed: int = typer.Option(0, help="Seed of s-AUC's negative draws (fixed, so runs repeat exactly)."),
    splits: int = typer.Option(100, min=1, help="s-AUC draws per frame (100 in the MIT benchmark code)."),
) -> None:
    """Score predicted maps with NSS, CC, SIM, AUC-J, s-AUC and KLD (docs/metrics.md)."""
    from tased_batch.analysis.evaluate import METRICS, evaluate

    console = Console()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    check_storage(predictions, ground_truth)
    with user_errors():
        with Progress(*columns, console=console, transient=True) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    label = "reading fixations" if stage == "fixations" else "scoring frames"
                    tasks[stage] = bar.add_task(label, total=total)
                bar.update(tasks[stage], completed=done)

            report = evaluate(predictions, ground_truth, seed=seed, n_splits=splits, progress=progress)

    table = Table(title=f"{predictions} vs {ground_truth}")
    table.add_column("video")
    table.add_column("frames", justify="right")
    for m in METRICS:
        table.add_column(m + (" ↓" if m == "KLD" else ""), justify="right")
    for video in report.videos:
        if video.status == "ok":
            table.add_row(video.video_id, str(video.frames), *(_fmt(video.scores[m]) for m in METRICS))
        else:
            table.add_row(video.video_id, f"[yellow]{video.status}[/]", *("–" for _ in METRICS))
    scored = [v for v in report.videos if v.status == "ok"]
    table.add_section()
    table.add_row(
        f"mean ({len(scored)} videos)",
        str(sum(v.frames for v in scored)),
        *(_fmt(report.mean[m]) for m in METRICS),
        style="bold",
    )
    console.print(table)
    missing = sum(v.missing_frames for v in report.videos)
    if missing:
        console.print(f"[yellow]{missing} ground-truth frames had no prediction and were not scored.[/]")
    csv_path = report.write_csv(out / "evaluation.csv")
    json_path = report.write_json(out / "evaluation.json")
    console.print(f"wrote {csv_path} and {json_path}")


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the app."""
    app.command("evaluate")(evaluate_command)
