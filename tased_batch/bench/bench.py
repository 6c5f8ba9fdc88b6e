"""`tased-batch bench`: the released script's algorithm vs this project, same machine, frames, weights.

Three measurements, interleaved when repeated so that machine noise hits them alike:

(a) ``reference``: the released ``run_example.py`` algorithm as it is: frames read and
    resized one at a time with OpenCV, a host copy of each 32-frame clip, batch 1, fp32,
    default memory format, per-frame scipy blur on the host, one PNG written per frame.
(b) ``pipeline``: this project end to end: decode (background thread) -> :class:`Engine`
    (batched, on-device post-processing) -> a Parquet shard written by a background writer.
(c) ``model``: :meth:`Engine.forward` alone on prepared batches of the same sizes as (b).

(d) ``reuse``: the engine with window reuse on (``auto``, engine/reuse.py) and ``off``, on (a)'s
    frames in memory (model frames/s, every frame) and end to end ((b) with reuse off), the
    ratios, and the parity of the two engines' maps.

(b)/(a) is the speed-up, (b)/(c) the pipeline efficiency (how little besides the model
costs). Parity: the engine's maps for (a)'s own frames at a few targets (one batch) against
(a)'s maps, as the fraction of pixels within one grey level and the largest difference.
(b)'s maps are also correlated with (a)'s, but (b) decodes with decord, whose frames differ
slightly from OpenCV's, so that CC mixes decoder and engine differences.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tased_batch.engine.engine import (
    AUTO,
    PRECISIONS,
    Engine,
    postprocess_reference,
    precision_supported,
    window_frames,
)
from tased_batch.model import WINDOW


@dataclass
class BenchSettings:
    """What one bench run measures; all of it is reported with the figures."""

    size: tuple[int, int] = (224, 384)
    frames: int = 40
    batch_size: int | str = AUTO
    precision: str = "fp32"
    device: str = "cpu"
    weights: str = "random"
    source_size: tuple[int, int] = (360, 640)
    resize: str = "decoder"
    repeat: int = 1
    compile: bool = False
    peak_tflops: float | None = None


@dataclass
class BenchResult:
    """Frames per second of (a), (b), (c), their ratios, map parity and the settings."""

    reference_fps: float
    pipeline_fps: float
    model_fps: float
    speedup: float
    efficiency: float
    parity_within_1: float
    parity_max_diff: int
    pipeline_cc: float
    model_tflops: float
    gflop_per_window: float = 0.0
    reuse: dict[str, float] = field(default_factory=dict)
    precisions: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        settings = out.pop("settings")
        return {**out, **settings}


def gflop_per_window(model: torch.nn.Module, size: tuple[int, int]) -> float:
    """The model's cost of one window at ``size``, counted by torch's FLOP counter (on the meta device: no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.zeros(1, 3, WINDOW, *size, device="meta"))
    return counter.get_total_flops() / 1e9


def synthesise_video(path: Path, n_frames: int, source_size: tuple[int, int]) -> Path:
    """A real H.264 file of moving blobs on texture, made here (no download, no fixture)."""
    from tased_batch.decode.sample import synthetic_frames, write_video

    return write_video(path, synthetic_frames(n_frames, source_size[0], source_size[1], seed=7))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------
# (a) the released algorithm


def _released_clip(snippet: list[np.ndarray]) -> torch.Tensor:
    """The released ``transform``: concatenate on channels, permute, float, scale, 1x3x32xHxW."""
    h, w = snippet[0].shape[:2]
    x = torch.from_numpy(np.concatenate(snippet, axis=-1)).permute(2, 0, 1).contiguous().float()
    x = x.mul_(2.0).sub_(255).div(255)
    return x.view(1, -1, 3, h, w).permute(0, 2, 1, 3, 4)


def reference_frames(video: str, size: tuple[int, int]) -> list[np.ndarray]:
    """Frames as the released script prepares them: OpenCV decode, cv2.resize (bilinear), BGR -> RGB."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.resize(frame, (size[1], size[0]))[..., ::-1])
    finally:
        capture.release()
    return frames


@contextmanager
def released_cudnn() -> Iterator[None]:
    """The released script sets ``cudnn.benchmark = False``; the engine turns it on globally."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def reference_maps(
    model: torch.nn.Module, frames: list[np.ndarray], out_dir: str | None = None, targets: list[int] | None = None
) -> np.ndarray:
    """The released loop's work for every frame (or ``targets``): one window at a time, host post-processing.

    Frame i's window is :func:`window_frames` (the released clip for i >= 31, the flipped
    clip of i + 31 below, looped for videos under 63 frames). Each map is written as
    ``out_dir/%04d.png`` with OpenCV when ``out_dir`` is given.
    """
    import cv2

    device = next(model.parameters()).device
    n = len(frames)
    maps = []
    for i in range(n) if targets is None else targets:
        clip = _released_clip([frames[j] for j in window_frames(i, n)])
        with torch.no_grad(), released_cudnn():
            raw = model(clip.to(device)).cpu().data[0].numpy()
        smap = postprocess_reference(raw)
        if out_dir is not None:
            cv2.imwrite(os.path.join(out_dir, f"{i + 1:04d}.png"), smap)
        maps.append(smap)
    return np.stack(maps)


def run_reference(
    model: torch.nn.Module, video: Path, size: tuple[int, int], out_dir: str
) -> tuple[float, np.ndarray, list[np.ndarray]]:
    """Seconds for (a) on ``video``, its maps and the frames it read."""
    device = next(model.parameters()).device
    _sync(device)
    start = time.perf_counter()
    frames = reference_frames(str(video), size)
    maps = reference_maps(model, frames, out_dir)
    _sync(device)
    return time.perf_counter() - start, maps, frames


def parity_targets(n: int, batch: int) -> list[int]:
    """One batch of targets spread over the video, flipped windows (i < 31) included."""
    return sorted(set(np.linspace(0, n - 1, num=min(n, batch)).round().astype(int).tolist()))


def map_cc(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two stacks of maps (1.0 when both are constant and equal)."""
    x, y = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if x.std() == 0 or y.std() == 0:
        return float(np.array_equal(x, y))
    return float(np.corrcoef(x, y)[0, 1])


# ----------------------------------------------------------------------------------------
# (b) this project end to end, (c) its model alone


def run_pipeline(
    engine: Engine, video: Path, settings: BenchSettings, out_dir: str, run_info: dict
) -> tuple[float, np.ndarray]:
    """Seconds for (b): decode -> engine -> committed Parquet shard; and the maps at model size."""
    from tased_batch.decode.options import DecodeOptions
    from tased_batch.run.pipeline import BackgroundWriter, predict_video
    from tased_batch.stores import open_shard_writer

    _sync(engine.device)
    start = time.perf_counter()
    writer = open_shard_writer(
        out_dir, "bench", format="parquet", store_size=None, model_size=settings.size, run_info=run_info
    )
    with BackgroundWriter(writer) as background:
        result = predict_video(str(video), engine, size=settings.size, options=DecodeOptions(resize=settings.resize))
        if not result.ok:
            raise RuntimeError(f"the bench video failed: {result.error}")
        background.submit(result)
    writer.commit()
    return time.perf_counter() - start, result.maps


def run_model(engine: Engine, n_windows: int, size: tuple[int, int]) -> float:
    """Seconds for (c): the engine's forward on prepared device batches, the sizes (b) uses."""
    batch = engine.resolve_batch_size(size)
    generator = torch.Generator().manual_seed(0)
    full = torch.rand(batch, 3, WINDOW, *size, generator=generator).mul(2).sub(1).to(engine.device)
    sizes = [min(batch, n_windows - i) for i in range(0, n_windows, batch)]
    _sync(engine.device)
    start = time.perf_counter()
    for b in sizes:
        engine.forward(full[:b])
    _sync(engine.device)
    return time.perf_counter() - start


def run_frames(engine: Engine, frames: np.ndarray) -> tuple[float, np.ndarray]:
    """Seconds for the engine to map every frame of a video already in memory, and the maps."""
    _sync(engine.device)
    start = time.perf_counter()
    maps = engine.predict(frames)
    _sync(engine.device)
    return time.perf_counter() - start, maps


def reuse_figures(times: dict[str, list[float]], frames: int, on: np.ndarray, off: np.ndarray) -> dict[str, float]:
    """Reuse on vs off: model and pipeline frames/s (medians), their ratios, parity of the maps."""
    fps = {k: frames / statistics.median(v) for k, v in times.items()}
    diff = np.abs(on.astype(np.int16) - off.astype(np.int16))
    return {
        "model_fps_on": fps["frames_on"],
        "model_fps_off": fps["frames_off"],
        "model_ratio": fps["frames_on"] / fps["frames_off"],
        "pipeline_fps_on": fps["pipeline"],
        "pipeline_fps_off": fps["pipeline_off"],
        "pipeline_ratio": fps["pipeline"] / fps["pipeline_off"],
        "within_1": float((diff <= 1).mean()),
        "max_diff": int(diff.max()),
    }


def warm_up(engine: Engine, reference: torch.nn.Module, size: tuple[int, int]) -> None:
    """One untimed pass of each model: one-time costs (kernel choice, compilation) are not speed."""
    batch = engine.resolve_batch_size(size)
    engine.forward(torch.zeros(batch, 3, WINDOW, *size, device=engine.device))
    with torch.no_grad(), released_cudnn():
        reference(torch.zeros(1, 3, WINDOW, *size, device=engine.device))
    _sync(engine.device)


def precision_table(
    model: torch.nn.Module,
    settings: BenchSettings,
    frames: np.ndarray,
    targets: list[int],
    strict: np.ndarray,
    fp32_fps: float,
    log=print,
) -> list[dict[str, Any]]:
    """Each precision this device runs: model frames/s and parity of its maps with strict fp32 on the same frames."""
    rows = [{"precision": "fp32", "model_fps": fp32_fps, "within_1": 1.0, "max_diff": 0, "cc": 1.0}]
    for precision in PRECISIONS:
        if precision == "fp32" or not precision_supported(precision, settings.device):
            continue
        engine = Engine(model, device=settings.device, batch_size=settings.batch_size, precision=precision)
        engine.forward(
            torch.zeros(engine.resolve_batch_size(settings.size), 3, WINDOW, *settings.size, device=engine.device)
        )
        seconds = statistics.median(run_model(engine, settings.frames, settings.size) for _ in range(settings.repeat))
        maps = engine.predict(frames, targets)
        diff = np.abs(maps.astype(np.int16) - strict.astype(np.int16))
        rows.append(
            {
                "precision": precision,
                "model_fps": settings.frames / seconds,
                "within_1": float((diff <= 1).mean()),
                "max_diff": int(diff.max()),
                "cc": map_cc(maps, strict),
            }
        )
        log(f"{precision}: {rows[-1]['model_fps']:.3f} frames/s, {rows[-1]['within_1']:.4%} within 1 of strict fp32")
    return rows


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def run_bench(settings: BenchSettings, log=print) -> BenchResult:
    """Measure (a), (b) and (c) ``settings.repeat`` times, interleaved; report medians."""
    from tased_batch.model.weights import load_model

    device = torch.device(settings.device)
    model, weights_info = load_model(settings.weights, device)
    reference = copy.deepcopy(model).eval()  # the engine turns its model channels-last in place
    engine = Engine(
        model, device=device, batch_size=settings.batch_size, precision=settings.precision, compile=settings.compile
    )
    plain = Engine(
        model,
        device=device,
        batch_size=settings.batch_size,
        precision=settings.precision,
        compile=settings.compile,
        reuse="off",
    )
    run_info = {"config_fingerprint": "bench", "weights": weights_info.to_dict()}
    times: dict[str, list[float]] = {"reference": [], "pipeline": [], "model": []}
    reuse_times: dict[str, list[float]] = {
        "pipeline": times["pipeline"],
        "pipeline_off": [],
        "frames_on": [],
        "frames_off": [],
    }
    with tempfile.TemporaryDirectory(prefix="tased-bench-") as tmp:
        video = synthesise_video(Path(tmp) / "bench.mp4", settings.frames, settings.source_size)
        log(f"warming up ({settings.size[0]}x{settings.size[1]}, {settings.device}, {settings.precision})")
        warm_up(engine, reference, settings.size)
        for r in range(settings.repeat):
            png_dir = Path(tmp) / f"reference-{r}"
            png_dir.mkdir()
            seconds, ref_maps, ref_frames = run_reference(reference, video, settings.size, str(png_dir))
            times["reference"].append(seconds)
            log(f"[{r + 1}/{settings.repeat}] (a) reference {settings.frames / seconds:.3f} frames/s")
            seconds, maps = run_pipeline(engine, video, settings, str(Path(tmp) / f"store-{r}"), run_info)
            times["pipeline"].append(seconds)
            log(f"[{r + 1}/{settings.repeat}] (b) pipeline  {settings.frames / seconds:.3f} frames/s")
            seconds = run_model(engine, settings.frames, settings.size)
            times["model"].append(seconds)
            log(f"[{r + 1}/{settings.repeat}] (c) model     {settings.frames / seconds:.3f} frames/s")
            seconds, _ = run_pipeline(plain, video, settings, str(Path(tmp) / f"store-off-{r}"), run_info)
            reuse_times["pipeline_off"].append(seconds)
            for mode, eng in (("on", engine), ("off", plain)):
                seconds, reuse_maps = run_frames(eng, np.stack(ref_frames))
                reuse_times[f"frames_{mode}"].append(seconds)
                if mode == "on":
                    maps_on = reuse_maps
            log(
                f"[{r + 1}/{settings.repeat}] (d) reuse     {settings.frames / reuse_times['frames_on'][-1]:.3f} vs "
                f"{settings.frames / seconds:.3f} frames/s off"
            )
    fps = {k: settings.frames / statistics.median(v) for k, v in times.items()}
    if ref_maps.shape != maps.shape:
        raise RuntimeError(f"reference made {ref_maps.shape} maps, pipeline {maps.shape}: the decoders disagree")
    assert engine.batch_size is not None  # resolved by the runs above
    targets = parity_targets(len(ref_frames), engine.batch_size)
    same_input = engine.predict(np.stack(ref_frames), targets)
    diff = np.abs(ref_maps[targets].astype(np.int16) - same_input.astype(np.int16))
    gflop = gflop_per_window(reference, settings.size)
    model_tflops = fps["model"] * gflop / 1000
    strict = same_input
    if settings.precision != "fp32":  # parity is measured against strict fp32
        strict = Engine(reference, device=device, batch_size=engine.batch_size).predict(np.stack(ref_frames), targets)
    fp32_fps = fps["model"] if settings.precision == "fp32" else float("nan")
    precisions = precision_table(reference, settings, np.stack(ref_frames), targets, strict, fp32_fps, log)
    reported = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}
    reported.update(batch_size=engine.batch_size, weights=weights_info.kind, **machine())
    if settings.peak_tflops:
        reported["peak_share"] = model_tflops / settings.peak_tflops
    return BenchResult(
        reference_fps=fps["reference"],
        pipeline_fps=fps["pipeline"],
        model_fps=fps["model"],
        speedup=fps["pipeline"] / fps["reference"],
        efficiency=fps["pipeline"] / fps["model"],
        parity_within_1=float((diff <= 1).mean()),
        parity_max_diff=int(diff.max()),
        pipeline_cc=map_cc(maps, ref_maps),
        model_tflops=model_tflops,
        gflop_per_window=gflop,
        reuse=reuse_figures(reuse_times, settings.frames, maps_on, reuse_maps),
        precisions=precisions,
        settings=reported,
        runs={k: [settings.frames / s for s in v] for k, v in times.items()},
    )
