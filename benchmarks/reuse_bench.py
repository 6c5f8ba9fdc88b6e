"""Window reuse on vs off in one run: model frames/s on the same prepared frames, the ratio, map parity.

Every frame of a synthetic video gets a map (the released script's default), so windows
overlap by 31 frames: the case reuse is for. Both engines see the same frames and weights;
the figure is the model's (frames already decoded, post-processing on the device included).

    python benchmarks/reuse_bench.py --size 224x384 --frames 40
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch

from tased_batch.decode.sample import synthetic_frames
from tased_batch.engine.engine import Engine
from tased_batch.engine.windows import parse_size
from tased_batch.model.weights import calibrated_random_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="224x384")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--first-target", type=int, default=31, help="first map (31: forward windows only)")
    args = parser.parse_args()
    size = parse_size(args.size)
    model = calibrated_random_model(seed=0, size=(64, 96))  # calibrated small: speed does not depend on weights
    frames = synthetic_frames(args.frames, *size, seed=7)
    targets = list(range(args.first_target, args.frames))
    results = {}
    maps = {}
    for mode in ("off", "auto"):
        engine = Engine(model, batch_size=args.batch_size, reuse=mode)
        engine.predict(frames[:32], targets=[31])  # warm-up: allocator, oneDNN kernel choice
        start = time.perf_counter()
        maps[mode] = engine.predict(frames, targets=targets)
        results[mode] = len(targets) / (time.perf_counter() - start)
    diff = np.abs(maps["auto"].astype(np.int16) - maps["off"].astype(np.int16))
    report = {
        "size": args.size,
        "maps": len(targets),
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "model_fps_reuse_off": round(results["off"], 4),
        "model_fps_reuse_auto": round(results["auto"], 4),
        "ratio": round(results["auto"] / results["off"], 3),
        "within_1": float((diff <= 1).mean()),
        "max_diff": int(diff.max()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
