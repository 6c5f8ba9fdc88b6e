"""`tased-batch weights download|info`."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from tased_batch.cli.common import check_storage, user_errors

weights_app = typer.Typer(help="Fetch and inspect TASED-Net checkpoints.", no_args_is_help=True)


@weights_app.command("download")
def download(
    dest: str = typer.Option(
        None, "--dest", help="Directory to store the file (default: the cache, $TASED_BATCH_CACHE)."
    ),
) -> None:
    """Fetch the released TASED_updated.pt from Google Drive, check that it loads, record its sha256."""
    from pathlib import Path

    from tased_batch.model.weights import download_released

    with user_errors():
        record = download_released(Path(dest) if dest else None)
    typer.echo(f"saved {record['file']}\nsha256 {record['sha256']}")


@weights_app.command("info")
def info(
    uri: str = typer.Argument(..., help="Local path or fsspec URI of a checkpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Tensor count, size, sha256, and whether the file is a full TASED-Net or an S3D encoder."""
    from tased_batch.model.weights import weights_info

    check_storage(uri)
    with user_errors():
        report = weights_info(uri)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(show_header=False)
    for key in ("uri", "kind", "tensors", "parameters", "bytes", "sha256", "loads", "problem"):
        if key in report:
            value = report[key]
            table.add_row(key, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")
