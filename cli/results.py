"""`tased-batch export`: one video's maps from a results store, as PNGs."""

from __future__ import annotations

import typer

from tased_batch.cli.common import check_storage, user_errors


def _size(text: str) -> str | tuple[int, int]:
    if text in ("stored", "model", "source"):
        return text
    from tased_batch.stores.resample import parse_size

    return parse_size(text)


def export(
    results: str = typer.Argument(..., help="A results store (local path or fsspec URI such as s3://bucket/run)."),
    video_id: str = typer.Argument(..., help="The video to export (see the video_id column of the store)."),
    out_dir: str = typer.Argument(..., help="Maps go to OUT_DIR/<video>/%04d.png, 1-based source frame numbers."),
    size: str = typer.Option("model", "--size", help="stored | model | source | HxW (upsampling is bilinear)."),
) -> None:
    """Write one video's saliency maps as 8-bit grey PNGs, in the released script's layout."""
    from tased_batch.stores.png import write_png_maps
    from tased_batch.stores.reader import open_results

    check_storage(results, out_dir)
    with user_errors():
        target = _size(size)
        store = open_results(results)
        maps = store.maps(video_id, size=target)
        frames = store.frame_indices(video_id)
        paths = write_png_maps(out_dir, video_id, maps, frames)
    folder = paths[0].rsplit("/", 1)[0] if paths else out_dir
    typer.echo(f"{video_id}: {len(paths)} maps ({maps.shape[1]}x{maps.shape[2]}) -> {folder}/")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
