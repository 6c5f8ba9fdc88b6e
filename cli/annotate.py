"""`tased-batch annotate`: a finished store's per-video summaries as versioned columns of the user's clip table."""

from __future__ import annotations

import typer

from tased_batch.cli.common import user_errors


def annotate(
    table: str = typer.Argument(
        ..., help="Your clip table: a Lance table (.lance, annotated in place) or a .parquet file."
    ),
    source: str = typer.Option(..., "--from", help="The finished tased-batch output whose summaries are added."),
    id_col: str = typer.Option(..., "--id-col", help="The table's column holding the video ids of the store."),
    out: str | None = typer.Option(
        None, "--out", help="Parquet only: where the joined copy goes (default: TABLE with .saliency.parquet)."
    ),
) -> None:
    """Add saliency_tased_<weights sha>_<summary> columns, matched by id; unmatched ids get nulls and are counted."""
    from tased_batch.stores.annotate import annotate as run

    with user_errors():
        result = run(table, source, id_col, out=out)
    if result.written is None:
        typer.echo(f"{table} already holds the {len(result.columns)} columns of this store: nothing changed")
    else:
        where = f"version {result.version}" if result.version is not None else result.written
        typer.echo(f"{len(result.columns)} columns ({result.columns[0]}, ...) -> {where}")
    typer.echo(f"{result.rows} rows: {result.matched} matched, {result.unmatched} without a committed video (null)")


def register(app: typer.Typer) -> None:
    app.command("annotate")(annotate)
