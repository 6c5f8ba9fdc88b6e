"""What the saliency summaries cost in a run: time per map and bytes per map added.

Time: ``frame_stats`` per map at model size (batches of --batch, on --device), against the
per-map work the store writer already did before the summaries existed (area downsizing to
the store size and PNG encoding), measured in the same run; plus the crop track's extra work
(cumulative profiles and the smoothing at video close). Bytes: the compressed column chunks
the summaries add to ``maps.parquet`` (read from its footer), ``frame_stats.parquet`` (Zarr and
PNG formats), ``crop.parquet`` and the videos table, per stored map.

    python benchmarks/summaries_cost.py [--videos 4 --frames 128 --batch 32 --device cpu]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq
import torch

from tased_batch.core.records import VideoResult
from tased_batch.stores import open_shard_writer
from tased_batch.stores.parquet import encode_map
from tased_batch.stores.reader import open_results
from tased_batch.stores.resample import resize_maps
from tased_batch.stores.summaries import (
    FRAME_COLUMNS,
    VIDEO_COLUMNS,
    crop_geometry,
    crop_track,
    cumulative_profile,
    frame_stats,
    summarise_maps,
)
from tased_batch.stores.synthetic import MODEL_SIZE, synthetic_saliency_maps

RUN_INFO = {"config_fingerprint": "bench", "weights": {"sha256": "0" * 64, "kind": "random", "uri": "bench"}}
STORE = (38, 64)


def best_of(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def stats_work(maps: np.ndarray, batch: int, device: str):
    tensors = [torch.from_numpy(maps[i : i + batch]).to(device) for i in range(0, len(maps), batch)]

    def work() -> None:
        for t in tensors:
            frame_stats(t)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    work()  # warm-up
    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each is reported")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    videos = [synthetic_saliency_maps(args.frames, size=MODEL_SIZE, seed=seed) for seed in range(args.videos)]
    maps = np.concatenate(videos)
    n = len(maps)

    frames = np.arange(args.frames)
    geometry = crop_geometry("9:16", 1920, 1080)
    profiles = [frame_stats(torch.from_numpy(v))["profile_x"].numpy() for v in videos]

    def crop_extra() -> None:  # what --crop adds: cumulative profiles per batch, the track at video close
        for p in profiles:
            crop_track("v", frames, frames / 25.0, cumulative_profile(p), geometry, 1920, 1080)

    work = {
        "stats": stats_work(maps, args.batch, args.device),
        "baseline": lambda: [encode_map(m, "png") for m in resize_maps(maps, STORE)],
        "writer": lambda: [summarise_maps("v", v, frames, frames / 25.0, width=1920, height=1080) for v in videos],
        "crop": crop_extra,
    }
    best = dict.fromkeys(work, float("inf"))
    for _ in range(args.rounds):  # interleaved rounds, best of each: the machine may be shared
        for name, job in work.items():
            best[name] = min(best[name], best_of(1, job))
    stats, baseline, plain, crop = best["stats"], best["baseline"], best["writer"], best["crop"]

    size = f"{MODEL_SIZE[0]}x{MODEL_SIZE[1]}"
    print(f"{n} maps of {size}, batch {args.batch}, device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"frame_stats:                     {stats / n * 1e3:7.3f} ms/map")
    print(f"baseline (downsize + PNG encode): {baseline / n * 1e3:7.3f} ms/map")
    print(f"ratio frame_stats / baseline:     {stats / baseline:7.2f}")
    print(f"writer path (frame_stats on CPU + VideoSummary + Arrow rows): {plain / n * 1e3:7.3f} ms/map")
    print(f"--crop 9:16 adds (profiles + smoothed track):               {crop / n * 1e3:7.3f} ms/map")

    with tempfile.TemporaryDirectory() as root:
        sizes = {}
        for fmt in ("parquet", "zarr"):
            uri = f"{root}/{fmt}"
            with open_shard_writer(
                uri, "s0", format=fmt, store_size=None, model_size=MODEL_SIZE, run_info=RUN_INFO, crop="9:16"
            ) as w:
                for i, v in enumerate(videos):
                    w.write(
                        VideoResult(
                            video_id=f"video-{i:04d}",
                            source="bench",
                            n_frames=len(v),
                            fps=25.0,
                            width=1920,
                            height=1080,
                            duration=len(v) / 25,
                            frame_indices=frames,
                            timestamps=frames / 25.0,
                            maps=v,
                        )
                    )
                w.commit()
            res = open_results(uri)
            files = {
                path.rsplit("/", 1)[1]: path
                for name in ("maps.parquet", "frame_stats.parquet", "crop.parquet", "videos.parquet")
                for path in res.table_files(name)
            }
            sizes[fmt] = files
        meta = pq.ParquetFile(sizes["parquet"]["maps.parquet"]).metadata
        names = {c.name for c in FRAME_COLUMNS}
        added = blob = 0
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                column = group.column(c)
                if column.path_in_schema in names:
                    added += column.total_compressed_size
                elif column.path_in_schema == "data":
                    blob += column.total_compressed_size
        videos_meta = pq.ParquetFile(sizes["parquet"]["videos.parquet"]).metadata
        video_names = {c.name for c in VIDEO_COLUMNS}
        video_bytes = sum(
            videos_meta.row_group(0).column(c).total_compressed_size
            for c in range(videos_meta.num_columns)
            if videos_meta.row_group(0).column(c).path_in_schema in video_names
        )
        print(
            f"parquet: statistics columns {added / n:6.1f} B/map vs the map blob {blob / n:6.1f} B/map "
            f"(+{100 * added / blob:.1f}%)"
        )
        print(f"zarr/png: frame_stats.parquet {os.path.getsize(sizes['zarr']['frame_stats.parquet']) / n:6.1f} B/map")
        print(f"crop.parquet (--crop 9:16):   {os.path.getsize(sizes['parquet']['crop.parquet']) / n:6.1f} B/map")
        print(f"videos table summary columns: {video_bytes / args.videos:6.1f} B/video")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
