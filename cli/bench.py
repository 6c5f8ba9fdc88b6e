"""`tased-batch bench`: frames/s of the released algorithm, this pipeline and its model alone."""

from __future__ import annotations

import json

import typer

from tased_batch.cli.common import batch_size as batch_size_option
from tased_batch.cli.common import check_storage, err, fail, model_size, user_errors


def bench(
    size: str = typer.Option("224x384", "--size", help="Model input size HxW (multiples of 32)."),
    frames: int = typer.Option(40, "--frames", min=1, help="Frames in the synthesised test video."),
    batch_size: str = typer.Option("auto", "--batch-size", "-b", help="Windows per forward pass, or 'auto'."),
    precision: str = typer.Option(
        "fp32", "--precision", help="fp32 | tf32 | bf16 | fp16 for (b) and (c); (a) is always fp32."
    ),
    device: str = typer.Option(None, "--device", help="torch device (default: cuda if available, else cpu)."),
    weights: str = typer.Option(
        "random", "--weights", "-w", help="Checkpoint path/URI, or 'random' (calibrated stand-in)."
    ),
    source_size: str = typer.Option("360x640", "--source-size", help="Resolution HxW of the synthesised video."),
    exact_resize: bool = typer.Option(
        False, "--exact-resize", help="(b) decodes full size and resizes with OpenCV, like (a)."
    ),
    compile: bool = typer.Option(False, "--compile", help="Run (b) and (c) through torch.compile."),
    repeat: int = typer.Option(1, "--repeat", min=1, help="Rounds of (a), (b), (c), interleaved; medians reported."),
    peak_tflops: float = typer.Option(
        None, "--peak-tflops", help="Device peak at this precision, to report the model's share."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of the table."),
    feed: bool = typer.Option(
        False, "--feed", help="Measure the decode feed alone (frames/s to a no-op model) instead."
    ),
    feed_clips: int = typer.Option(
        160, "--feed-clips", min=1, help="--feed: two-second 360p clips in the clips workload."
    ),
    feed_long_frames: int = typer.Option(
        3000, "--feed-long-frames", min=64, help="--feed: frames of the long 720p video."
    ),
    feed_segment: int = typer.Option(
        1024, "--feed-segment", min=63, help="--feed: positions per segment of a long video."
    ),
) -> None:
    """Measure the speed-up over the released script and the pipeline's efficiency (docs/benchmarks.md)."""
    if feed:
        _feed_bench(model_size(size), feed_clips, feed_long_frames, feed_segment, repeat, as_json)
        return
    from tased_batch.bench.bench import BenchSettings, run_bench
    from tased_batch.run.pipeline import default_device

    size_hw = model_size(size)
    try:
        src_h, src_w = (int(v) for v in source_size.lower().split("x"))
    except ValueError as e:
        raise typer.BadParameter("use HxW, e.g. 360x640", param_hint="--source-size") from e
    if src_h % 2 or src_w % 2 or src_h <= 0 or src_w <= 0:
        raise typer.BadParameter("H.264 needs a positive, even height and width", param_hint="--source-size")
    batch = batch_size_option(batch_size)
    settings = BenchSettings(
        size=size_hw,
        frames=frames,
        batch_size=batch,
        precision=precision,
        device=device or default_device(),
        weights=weights,
        source_size=(src_h, src_w),
        resize="exact" if exact_resize else "decoder",
        repeat=repeat,
        compile=compile,
        peak_tflops=peak_tflops,
    )
    check_storage(weights)
    with user_errors():
        try:
            result = run_bench(settings, log=err.print)
        except ValueError as e:  # settings the engine refuses (precision, batch size on this device)
            fail(str(e))
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    s = result.settings
    typer.echo(
        f"{s['frames']} frames at {size}, {s['device']} {s['precision']}, batch {s['batch_size']}, weights {s['weights']}"
    )
    typer.echo(f"(a) released algorithm   {result.reference_fps:8.3f} frames/s")
    typer.echo(f"(b) this pipeline        {result.pipeline_fps:8.3f} frames/s")
    typer.echo(f"(c) model forward alone  {result.model_fps:8.3f} frames/s  ({result.model_tflops:.2f} TFLOP/s)")
    typer.echo(f"speed-up (b)/(a)         {result.speedup:8.2f}x")
    typer.echo(f"efficiency (b)/(c)       {result.efficiency:8.2f}")
    typer.echo(
        f"parity, same frames      {result.parity_within_1:.4%} of pixels within 1 grey level, max diff {result.parity_max_diff}"
    )
    typer.echo(f"CC of (b)'s maps, (a)'s  {result.pipeline_cc:.4f} (different decoders)")
    r = result.reuse
    typer.echo(
        f"reuse on/off, model      {r['model_fps_on']:8.3f} / {r['model_fps_off']:.3f} frames/s = {r['model_ratio']:.2f}x"
    )
    typer.echo(
        f"reuse on/off, pipeline   {r['pipeline_fps_on']:8.3f} / {r['pipeline_fps_off']:.3f} frames/s = "
        f"{r['pipeline_ratio']:.2f}x"
    )
    typer.echo(f"reuse parity             {r['within_1']:.4%} within 1 grey level, max diff {int(r['max_diff'])}")
    typer.echo(f"model cost               {result.gflop_per_window:.1f} GFLOP per window (torch FLOP counter)")
    for row in result.precisions:
        typer.echo(
            f"precision {row['precision']:<5}          {row['model_fps']:8.3f} frames/s, vs strict fp32: "
            f"{row['within_1']:.4%} within 1 grey level, CC {row['cc']:.4f}, max diff {row['max_diff']}"
        )
    if "peak_share" in s:
        typer.echo(f"share of device peak     {s['peak_share']:.1%}")


def _feed_bench(size: tuple[int, int], clips: int, long_frames: int, segment: int, repeat: int, as_json: bool) -> None:
    from tased_batch.bench.feed_bench import run_feed_bench

    result = run_feed_bench(size, long_frames=long_frames, clips=clips, repeat=repeat, segment=segment, log=err.print)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    for p in result.feed:
        typer.echo(
            f"{p.workload:<6} {p.decode_workers} worker(s) x {p.decoder_threads or 'auto'} thread(s) {p.frames_per_s:9.1f} frames/s"
        )
    typer.echo(f"per-clip overhead (fetch, open, probe, stream) {result.clip_overhead_ms:.1f} ms")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
