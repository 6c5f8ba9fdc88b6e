"""Seconds per shard of short clips with decode workers kept between shards (a pool) vs started per shard.

A decode worker process takes a few tenths of a second to start (Python, numpy, decord).
On a GPU the model maps a shard of short clips in seconds, so a feed that starts its
workers for every shard leaves the model idle for that long on every shard. Here the model
is a cheap stand-in with TASED-Net's input and output shapes (the regime of a fast GPU,
where the data path is what limits), the clips are real H.264 files decoded by real worker
processes, and each shard is committed to a Parquet store. Rounds alternate between the
two modes in one process; the baseline ("per shard") is the same processor with its pool
disabled, which is what every version before the pool did.

    python benchmarks/shard_startup.py                       # 2 workers, 8 shards of 4 clips of 48 frames
    python benchmarks/shard_startup.py --workers 3 --shards 12 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="decode worker processes")
    parser.add_argument("--shards", type=int, default=8, help="shards per mode")
    parser.add_argument("--clips", type=int, default=4, help="clips per shard")
    parser.add_argument("--frames", type=int, default=48, help="frames per clip")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch
    from memory_flat import StandIn  # the same cheap stand-in (this folder is on sys.path when run)

    from tased_batch.config import RunConfig
    from tased_batch.decode.feed import DecoderPool
    from tased_batch.decode.sample import synthetic_frames, write_video
    from tased_batch.decode.sources import VideoSource
    from tased_batch.engine.engine import Engine
    from tased_batch.model.weights import WeightsInfo
    from tased_batch.run.shards import ShardProcessor, run_info

    torch.set_num_threads(1)
    size = (64, 96)
    with tempfile.TemporaryDirectory(prefix="tased-startup-") as tmp:
        clips = []
        for i in range(args.clips):
            path = os.path.join(tmp, f"clip{i}.mp4")
            write_video(path, synthetic_frames(args.frames, 96, 160, seed=i))
            clips.append(path)
        processors = {}
        for mode in ("pooled", "per shard"):
            config = RunConfig(
                input="x",
                output=os.path.join(tmp, mode.replace(" ", "-")),
                size=f"{size[0]}x{size[1]}",
                weights="stand-in",
                decode_workers=args.workers,
            ).validate()
            info = run_info(config, WeightsInfo(kind="custom", uri="stand-in", sha256="0" * 64), "startup")
            engine = Engine(StandIn.model(), batch_size=8, channels_last=False)
            processors[mode] = ShardProcessor.with_engine(config, engine, info)
        seconds: dict[str, list[float]] = {mode: [] for mode in processors}
        maps: dict[str, int] = {mode: 0 for mode in processors}
        for shard in range(args.shards + 1):  # the first round warms both up and is not counted
            for mode, processor in processors.items():
                if mode == "per shard":
                    processor._pool = DecoderPool()  # a fresh, empty pool each shard: workers start per shard
                sources = [VideoSource(f"s{shard}-c{i}", path) for i, path in enumerate(clips)]
                started = time.perf_counter()
                done = processor.process(f"{shard:06d}", sources)
                took = time.perf_counter() - started
                if mode == "per shard":
                    processor.close()
                if shard:
                    seconds[mode].append(took)
                    maps[mode] += done.record.n_maps
        for processor in processors.values():
            processor.close()
    pooled, fresh = statistics.median(seconds["pooled"]), statistics.median(seconds["per shard"])
    result = {
        "workers": args.workers,
        "shards": args.shards,
        "clips_per_shard": args.clips,
        "frames_per_clip": args.frames,
        "median_seconds_per_shard": {"pooled": round(pooled, 4), "per shard": round(fresh, 4)},
        "maps_per_second": {m: round(maps[m] / sum(seconds[m]), 1) for m in seconds},
        "speed_up": round(fresh / pooled, 3),
    }
    assert maps["pooled"] == maps["per shard"] == args.shards * args.clips * args.frames
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{args.shards} shards of {args.clips} clips x {args.frames} frames, {args.workers} decode workers, "
        f"cheap stand-in model:"
    )
    for mode in ("per shard", "pooled"):
        print(
            f"  workers {'kept between shards' if mode == 'pooled' else 'started per shard'}: "
            f"{result['median_seconds_per_shard'][mode]:.3f} s per shard (median), "
            f"{result['maps_per_second'][mode]:,.1f} maps/s"
        )
    print(f"  speed-up x{result['speed_up']:.2f}")


if __name__ == "__main__":
    main()
