"""`tased-batch predict`: one video or frame folder on this machine, PNGs as the released script writes them."""

from __future__ import annotations

import time

import typer

from tased_batch.cli.common import batch_size as batch_size_option
from tased_batch.cli.common import check_storage, err, fail, model_size, user_errors
from tased_batch.options import OPTIONS

EXIT_HELP = "Exit codes: 0 maps written; 3 the video could not be read (the reason is printed); 2 bad options."
EXIT_VIDEO_FAILED = 3  # as `run` exits when videos failed


def predict(
    input: str = typer.Argument(..., help="A video file or a folder of frame images (sorted by name)."),
    output_dir: str = typer.Argument(..., help="Maps go to OUTPUT_DIR/<video name>/%04d.png (any fsspec URI)."),
    weights: str = typer.Option(
        None,
        "--weights",
        "-w",
        help="Checkpoint path/URI; default the cached released file; 'random' = labelled stand-in.",
    ),
    device: str = typer.Option(None, "--device", help="torch device (default: cuda if available, else cpu)."),
    batch_size: str = typer.Option(
        "auto", "--batch-size", "-b", help="Windows per forward pass, or 'auto' (from free device memory; 4 on CPUs)."
    ),
    precision: str = typer.Option(
        "fp32",
        "--precision",
        help="fp32 (strict, no TF32) | tf32 (CUDA, Ampere or newer) | bf16 | fp16 (autocast; bf16 on CPUs only with bf16 instructions).",
    ),
    compile: bool = typer.Option(
        False, "--compile", help="Run the model through torch.compile (pays off on long videos)."
    ),
    size: str = typer.Option("224x384", "--size", help="Model input size HxW (multiples of 32)."),
    decoder: str = typer.Option("auto", "--decoder", help="decord | pyav | auto (decord, PyAV fallback)."),
    exact_resize: bool = typer.Option(
        False, "--exact-resize", help="Decode full size and resize with OpenCV bilinear, as the released script."
    ),
    first_windows: str = typer.Option(
        "reversed",
        "--first-windows",
        help="Windows of the first 31 frames: reversed (time-reversed) | released (run_example.py's code to the letter).",
    ),
    reuse: str = typer.Option("auto", "--reuse", help=OPTIONS["reuse"].help),
    fps: float = typer.Option(None, "--fps", help="Resample the video to this frame rate before windowing."),
    every: int = typer.Option(None, "--every", help="Maps only for every N-th frame (each with its full window)."),
    output_fps: float = typer.Option(None, "--output-fps", help="Maps only at this rate (e.g. 2 maps per second)."),
) -> None:
    """Compute one video's saliency maps without Ray (the parity path)."""
    from tased_batch.decode.options import DecodeOptions
    from tased_batch.engine.engine import Engine
    from tased_batch.model.weights import load_model
    from tased_batch.run.pipeline import default_device, predict_video
    from tased_batch.stores.png import weights_text, write_png_maps

    size_hw = model_size(size)
    batch = batch_size_option(batch_size)
    dev = device or default_device()
    check_storage(input, output_dir, weights)
    with user_errors():
        model, info = load_model(weights, dev)
    if info.kind == "random":
        err.print("[yellow]warning:[/yellow] random stand-in weights: these maps show the pipeline, not saliency")
    try:
        engine = Engine(
            model,
            device=dev,
            batch_size=batch,
            precision=precision,
            compile=compile,
            first_windows=first_windows,
            reuse=reuse,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    start = time.perf_counter()
    with user_errors():
        options = DecodeOptions(
            decoder=decoder, resize="exact" if exact_resize else "decoder", fps=fps, every=every, output_fps=output_fps
        )
        result = predict_video(input, engine, size=size_hw, options=options)
    if not result.ok:
        fail(str(result.error), EXIT_VIDEO_FAILED)
    name = result.video_id
    with user_errors():
        write_png_maps(output_dir, name, result.maps, result.frame_indices, text=weights_text(info.to_dict()))
    seconds = time.perf_counter() - start
    typer.echo(
        f"{name}: {len(result.maps)} maps -> {output_dir.rstrip('/')}/{name}/ "
        f"({seconds:.1f} s, {len(result.maps) / max(seconds, 1e-9):.1f} frames/s)"
    )


def register(app: typer.Typer) -> None:
    app.command("predict", epilog=EXIT_HELP)(predict)
