"""Engine maps vs the released algorithm at full size on real frames, and bf16/fp16 vs fp32.

    python benchmarks/engine_parity.py                         # TASED-Net example frames
    python benchmarks/engine_parity.py --frames DIR --step 2 --precision bf16 --json out.json

The reference is ``tased_batch.bench.bench.reference_maps`` (batch 1, fp32, contiguous, scipy
blur), tested bit-exact against the released loop. Reported: fraction of pixels within one
grey level and the largest difference, for the fast fp32 engine and for each lower
precision, plus the correlation coefficient (CC) of the lower-precision maps with fp32's.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np

# the release's example frames, in the shared/ folder beside this checkout
EXAMPLE = str(Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "tased-example" / "ex1")


def load_frames(folder: str, size: tuple[int, int]) -> np.ndarray:
    """Frame images read and resized as the released script does (cv2 imread, resize, BGR->RGB)."""
    import cv2

    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return np.stack([cv2.resize(cv2.imread(str(p)), (size[1], size[0]))[..., ::-1] for p in paths])


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    from tased_batch.bench.bench import map_cc

    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    cc = map_cc(a, b)
    return {
        "within_1": float((diff <= 1).mean()),
        "max_diff": int(diff.max()),
        "mean_diff": float(diff.mean()),
        "cc": cc,
    }


def main() -> None:
    import torch

    from tased_batch.bench.bench import reference_maps
    from tased_batch.engine.engine import Engine, precision_supported
    from tased_batch.model.weights import load_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", default=EXAMPLE, help="folder of frame images")
    parser.add_argument("--size", default="224x384")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--step", type=int, default=1, help="maps for every STEP-th frame (each with its full window)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--precision", nargs="*", default=["bf16"], help="lower precisions to compare with fp32")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    frames = load_frames(args.frames, size)
    targets = list(range(0, len(frames), args.step))
    model, weights = load_model(args.weights, args.device)
    report: dict = {
        "frames": args.frames,
        "n_maps": len(targets),
        "size": list(size),
        "weights": weights.kind,
        "device": args.device,
        "batch_size": args.batch_size,
    }

    start = time.perf_counter()
    reference = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    ref = reference_maps(reference, list(frames), targets=targets)
    report["reference_seconds"] = time.perf_counter() - start
    maps = {}
    for precision in ["fp32", *args.precision]:
        if not precision_supported(precision, args.device):
            report[precision] = "unsupported on this device"
            continue
        engine = Engine(copy.deepcopy(model), device=args.device, batch_size=args.batch_size, precision=precision)
        start = time.perf_counter()
        maps[precision] = engine.predict(frames, targets)
        report[precision] = {"seconds": time.perf_counter() - start, "vs_reference": compare(maps[precision], ref)}
        if precision != "fp32" and "fp32" in maps:
            report[precision]["vs_fp32"] = compare(maps[precision], maps["fp32"])
        print(precision, json.dumps(report[precision]), flush=True)
    report["sensitivity"] = sensitivity(model, frames, args.device)
    print("sensitivity", json.dumps(report["sensitivity"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    print(json.dumps(report))


def sensitivity(model, frames: np.ndarray, device: str) -> dict:
    """How much the model's raw output moves for tiny input or weight changes (rounding-sized).

    A model that moves a lot (the random stand-in does) makes every parity figure a worst case.
    """
    import torch

    from tased_batch.engine.engine import normalise

    generator = torch.Generator().manual_seed(0)
    x = normalise(torch.from_numpy(frames[:32]))[None].to(device)
    out = {}
    with torch.no_grad():
        base = model(x)
        for eps in (1e-6, 1e-4):
            moved = model(x + eps * torch.randn(x.shape, generator=generator).to(device))
            out[f"input_noise_{eps:g}"] = {
                "max_abs": float((moved - base).abs().max()),
                "raw_cc": float(np.corrcoef(base.cpu().ravel(), moved.cpu().ravel())[0, 1]),
            }
        noisy = copy.deepcopy(model)
        for p in noisy.parameters():
            p.mul_(1 + 2**-9 * torch.randn(p.shape, generator=generator).to(device))
        moved = noisy(x)
        out["weight_noise_2^-9"] = {
            "max_abs": float((moved - base).abs().max()),
            "raw_cc": float(np.corrcoef(base.cpu().ravel(), moved.cpu().ravel())[0, 1]),
        }
    return out


if __name__ == "__main__":
    main()
