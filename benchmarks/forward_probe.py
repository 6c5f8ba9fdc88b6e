"""Seconds per window of single forward passes, interleaved within seconds of each other.

On a shared machine whole-run figures drift with the load; alternating the variants
pass by pass keeps their ratios honest. Variants: the released arithmetic (batch 1,
contiguous, BatchNorm unfolded) and the engine at batch 1, 2, 4, 8 in fp32 and 4 in bf16
(where supported), optionally compiled:

    python benchmarks/forward_probe.py --rounds 3            # 224x384, random input
    python benchmarks/forward_probe.py --compile             # adds fp32 b4 + torch.compile
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch


def main() -> None:
    from tased_batch.engine.engine import Engine, precision_supported
    from tased_batch.model.weights import load_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="224x384")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    model, _ = load_model("random")
    reference = copy.deepcopy(model).eval()
    x = torch.rand(8, 3, 32, h, w) * 2 - 1
    fp32 = Engine(copy.deepcopy(model), batch_size=8)
    variants = [("reference b1", lambda: reference(x[:1]), 1)]
    variants += [(f"engine fp32 b{b}", (lambda b=b: fp32.forward(x[:b])), b) for b in (1, 2, 4, 8)]
    if precision_supported("bf16", "cpu"):
        bf16 = Engine(copy.deepcopy(model), batch_size=4, precision="bf16")
        variants.append(("engine bf16 b4", lambda: bf16.forward(x[:4]), 4))
    if args.compile:
        compiled = Engine(copy.deepcopy(model), batch_size=4, compile=True)
        variants.append(("engine fp32 b4 compiled", lambda: compiled.forward(x[:4]), 4))
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    with torch.no_grad():
        for _, run, _ in variants:  # warm-up (and compilation)
            run()
        for r in range(args.rounds):
            for name, run, b in variants:
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) / b)
                print(f"round {r + 1}: {name}: {times[name][-1]:.3f} s/window", flush=True)
    print(json.dumps({name: {"median": statistics.median(v), "runs": v} for name, v in times.items()}))


if __name__ == "__main__":
    main()
