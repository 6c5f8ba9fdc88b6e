"""GPU figures for issue 6 in one run (about 6 minutes on one H100): no Ray, no network.

Run by ``benchmarks/gpu_bench.sh`` on a machine that has torch with CUDA; decord and PyAV
come as wheels in ``.whl/``. Synthesises its test video, then measures on the same video
and weights:

(a) the released algorithm once (batch 1, fp32, host scipy blur, PNG per frame);
(b) this pipeline and (c) its model alone, for fp32, bf16 and fp16, interleaved and
    repeated (medians), with the batch size chosen from free GPU memory;
the maps' parity with (a) on (a)'s own frames, and the CC of bf16/fp16 maps with fp32's; the model's
TFLOP/s and its share of the GPU's dense peak at that precision;
(d) the decode feed alone (``tased_batch.bench.feed_bench``: frames/s delivered to a no-op model,
    a long 720p video and 360p clips) for 1, 2, 4 and 8 decode workers on the CPU and, where
    torchcodec and NVDEC work, 1, 2, 4 and 8 GPU decoding threads, so (b), (c) and (d) side by
    side say at once whether decoding or the model is the limit. ``--feed only`` runs (d)
    alone (about 2-3 minutes), ``--feed off`` skips it. Writes one JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.modules["ray"] = None  # type: ignore[assignment]  # any Ray import on this path fails loudly

import numpy as np  # noqa: E402
import torch  # noqa: E402

# Dense (no sparsity) tensor-core peaks in TFLOP/s from NVIDIA's data sheets; fp32 without TF32.
PEAKS = {
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "fp32": 51.0},
    "H100": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9},  # SXM
    "H200": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9},
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5},
}


def device_peaks(name: str) -> dict[str, float] | None:
    for key in sorted(PEAKS, key=len, reverse=True):
        if all(part in name for part in key.split()):
            return PEAKS[key]
    return None


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    from tased_batch.bench.bench import map_cc

    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"within_1": float((diff <= 1).mean()), "max_diff": int(diff.max()), "cc": map_cc(a, b)}


def main() -> None:
    from tased_batch.bench.bench import (
        BenchSettings,
        gflop_per_window,
        machine,
        run_model,
        run_pipeline,
        run_reference,
        synthesise_video,
        warm_up,
    )
    from tased_batch.engine.engine import AUTO, Engine, precision_supported
    from tased_batch.model.weights import load_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--frames", type=int, default=450)
    parser.add_argument("--size", default="224x384")
    parser.add_argument("--source-size", default="360x640")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"])
    parser.add_argument("--batch-size", default=AUTO)
    parser.add_argument("--compile", action="store_true", help="also measure bf16 through torch.compile")
    parser.add_argument("--device", default="cuda", help="cpu only to try the script out at a small --size")
    parser.add_argument("--feed", choices=("also", "only", "off"), default="also", help="measure (d), the decode feed")
    parser.add_argument("--feed-workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--feed-clips", type=int, default=160)
    parser.add_argument("--feed-long-frames", type=int, default=3000)
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda":
        assert torch.cuda.is_available(), "this script measures a CUDA device"
    size = tuple(int(v) for v in args.size.split("x"))
    source = tuple(int(v) for v in args.source_size.split("x"))
    batch = AUTO if args.batch_size == AUTO else int(args.batch_size)
    started = time.perf_counter()
    report: dict = {
        "machine": machine(),
        "frames": args.frames,
        "size": list(size),
        "source_size": list(source),
        "repeat": args.repeat,
        "gflop_per_window": gflop_per_window(size),
    }
    peaks = device_peaks(report["machine"].get("gpu", ""))
    report["peak_tflops"] = peaks
    out = Path(args.out)

    def save() -> None:
        report["seconds"] = time.perf_counter() - started
        out.write_text(json.dumps(report, indent=1))

    if args.feed != "off":
        report["feed"] = measure_feed(args, size, device)
        save()
        if args.feed == "only":
            print(json.dumps(report, indent=1))
            return
    model, weights = load_model("random", "cpu")
    run_info = {"config_fingerprint": "gpu-bench", "weights": weights.to_dict()}
    report["weights"] = weights.kind
    reference = copy.deepcopy(model).to(device)
    variants = [(p, False) for p in args.precisions if precision_supported(p, device)]
    if args.compile and precision_supported("bf16", device):
        variants.append(("bf16", True))
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        video = synthesise_video(Path(tmp) / "bench.mp4", args.frames, source)
        engines = {}
        for precision, compiled in variants:
            name = precision + ("+compile" if compiled else "")
            t0 = time.perf_counter()
            engine = Engine(
                copy.deepcopy(model), device=device, batch_size=batch, precision=precision, compile=compiled
            )
            warm_up(engine, reference, size)
            engines[name] = engine
            report.setdefault("variants", {})[name] = {
                "batch_size": engine.batch_size,
                "warm_up_s": time.perf_counter() - t0,
            }
            print(f"{name}: batch {engine.batch_size}, warm-up {time.perf_counter() - t0:.1f} s", flush=True)

        png_dir = Path(tmp) / "reference"
        png_dir.mkdir()
        seconds, ref_maps, ref_frames = run_reference(reference, video, size, str(png_dir))
        report["reference_fps"] = args.frames / seconds
        print(f"(a) reference {report['reference_fps']:.1f} frames/s", flush=True)
        save()

        same_input = {name: engine.predict(np.stack(ref_frames)) for name, engine in engines.items()}
        times = {name: {"pipeline": [], "model": []} for name in engines}
        maps = {}
        for r in range(args.repeat):
            for name, engine in engines.items():
                settings = BenchSettings(size=size, frames=args.frames, device=args.device, source_size=source)
                seconds, maps[name] = run_pipeline(
                    engine, video, settings, str(Path(tmp) / f"store-{name}-{r}"), run_info
                )
                times[name]["pipeline"].append(seconds)
                times[name]["model"].append(run_model(engine, args.frames, size))
                print(
                    f"[{r + 1}/{args.repeat}] {name}: (b) {args.frames / seconds:.1f} frames/s, "
                    f"(c) {args.frames / times[name]['model'][-1]:.1f} frames/s",
                    flush=True,
                )
        for name in engines:
            v = report["variants"][name]
            v["pipeline_fps"] = args.frames / statistics.median(times[name]["pipeline"])
            v["model_fps"] = args.frames / statistics.median(times[name]["model"])
            v["speedup"] = v["pipeline_fps"] / report["reference_fps"]
            v["efficiency"] = v["pipeline_fps"] / v["model_fps"]
            v["model_tflops"] = v["model_fps"] * report["gflop_per_window"] / 1000
            precision = name.split("+")[0]
            if peaks:
                v["peak_share"] = v["model_tflops"] / peaks[precision]
            v["vs_reference_same_frames"] = compare(same_input[name], ref_maps)
            v["pipeline_vs_reference"] = compare(maps[name], ref_maps)  # decord vs OpenCV frames
            if "fp32" in same_input and name != "fp32":
                v["vs_fp32"] = compare(same_input[name], same_input["fp32"])
            v["runs_fps"] = {k: [args.frames / s for s in t] for k, t in times[name].items()}
        report["reuse"] = measure_reuse(engines, model, video, ref_frames, args, size, run_info, Path(tmp))
        print(f"reuse on/off: {report['reuse']}", flush=True)
    if "feed" in report:
        best = max((p["frames_per_s"] for p in report["feed"]["points"] if p["decode"] == "cpu"), default=0.0)
        fastest_model = max(v["model_fps"] for v in report["variants"].values())
        report["feed"]["limit"] = "decoding" if best < fastest_model else "model"
        print(
            f"(d) best CPU feed {best:.0f} frames/s vs (c) fastest model {fastest_model:.0f} frames/s: "
            f"{report['feed']['limit']} is the limit",
            flush=True,
        )
    report["ray_imported"] = any(
        m == "ray" or m.startswith("ray.") for m, mod in sys.modules.items() if mod is not None
    )
    save()
    print(json.dumps(report, indent=1))


def measure_reuse(engines, model, video, ref_frames, args, size, run_info, tmp: Path) -> dict:
    """Window reuse on vs off at the first variant's precision: model (frames in memory) and pipeline frames/s."""
    from tased_batch.bench.bench import BenchSettings, reuse_figures, run_frames, run_pipeline
    from tased_batch.engine.engine import Engine

    name = next(iter(engines))
    engine = engines[name]
    plain = Engine(
        copy.deepcopy(model),
        device=engine.device,
        batch_size=engine.batch_size,
        precision=name.split("+")[0],
        reuse="off",
    )
    frames = np.stack(ref_frames)
    plain.predict(frames[:32], targets=[31])  # warm-up
    times = {"pipeline": [], "pipeline_off": [], "frames_on": [], "frames_off": []}
    settings = BenchSettings(size=size, frames=args.frames, device=args.device)
    for r in range(args.repeat):
        for key, eng in (("pipeline", engine), ("pipeline_off", plain)):
            seconds, _ = run_pipeline(eng, video, settings, str(tmp / f"store-reuse-{key}-{r}"), run_info)
            times[key].append(seconds)
        seconds, on = run_frames(engine, frames)
        times["frames_on"].append(seconds)
        seconds, off = run_frames(plain, frames)
        times["frames_off"].append(seconds)
    return {"precision": name, **reuse_figures(times, args.frames, on, off)}


def measure_feed(args: argparse.Namespace, size: tuple[int, int], device: torch.device) -> dict:
    """(d): frames/s of the decode feed per workload, decode worker count and decoding device."""
    from tased_batch.bench.feed_bench import make_workloads, measure
    from tased_batch.decode import BACKENDS

    workloads = make_workloads(Path(tempfile.gettempdir()) / "tased-feed-bench", args.feed_long_frames, args.feed_clips)
    gpu_reason = BACKENDS["torchcodec"].unavailable()
    if gpu_reason is None and device.type != "cuda":
        gpu_reason = "not a CUDA run"
    result: dict = {"points": [], "gpu_decoding": gpu_reason or "measured"}
    if gpu_reason:
        print(f"(d) GPU decoding skipped: {gpu_reason}", flush=True)
    for workload in ("long", "clips"):
        for workers in args.feed_workers:
            for decode in ("cpu", "gpu"):
                if decode == "gpu" and gpu_reason:
                    continue
                options = {"decoder": "torchcodec", "device": str(device)} if decode == "gpu" else {"device": "cpu"}
                fps = measure(workloads[workload], size, workers, 1, **options)
                print(f"(d) {workload:<5} {decode} x{workers}: {fps:.1f} frames/s", flush=True)
                result["points"].append(
                    {"workload": workload, "decode": decode, "decode_workers": workers, "frames_per_s": fps}
                )
    return result


if __name__ == "__main__":
    main()
