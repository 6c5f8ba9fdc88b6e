"""The WebDataset and Lance formats against Parquet, and one video's maps out of 100,000 in maps.lance.

Part 1 writes the same synthetic videos (``--videos`` x ``--maps`` maps, handed over at the
default store size 38x64, no two alike, ``--shard-size`` per shard) through each format's shard writer, Lance including the
driver's append, and prints seconds and bytes per map, with the ratio to Parquet.

Part 2 builds a ``maps.lance`` of ``--random-videos`` videos (``--random-maps`` maps each,
the store's schema, written as fragments and appended like a run) and times fetching one
random video's maps as the reader does (filter on video id and attempt), without and then
with the BTREE index the driver builds; it prints median and p95 latency and the ratio.

    python benchmarks/lance_webdataset.py                     # 100,000 videos for part 2
    python benchmarks/lance_webdataset.py --random-videos 10000 --videos 64
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import tarfile
import tempfile
import time

import numpy as np
import pyarrow as pa

from tased_batch.core.records import VideoMeta
from tased_batch.stores import committed_shards, open_shard_writer
from tased_batch.stores.base import default_store_size
from tased_batch.stores.synthetic import synthetic_saliency_maps

MODEL = (224, 384)
RUN_INFO = {"config_fingerprint": "bench", "weights": {"sha256": "0" * 64, "kind": "random", "uri": "random://0"}}


def unique_maps(pool: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Maps at store size, no two alike: pool maps shifted by how often the index wrapped
    (identical rows would let Lance's page compression, unlike per-map PNG, shrink them unrealistically)."""
    out = np.empty((len(indices), *pool.shape[1:]), np.uint8)
    for j, i in enumerate(indices):
        k = int(i) // len(pool)
        out[j] = np.roll(pool[int(i) % len(pool)], (k % pool.shape[1], (k // pool.shape[1]) % pool.shape[2]), (0, 1))
    return out


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def write_store(fmt: str, out: str, videos: int, maps: int, shard_size: int, pool: np.ndarray) -> float:
    """Seconds to write ``videos`` videos in ``fmt`` (Lance: and append them)."""
    shards = [list(range(i, min(i + shard_size, videos))) for i in range(0, videos, shard_size)]
    tar_dir = os.path.join(out + "-in")
    started = time.perf_counter()
    for s, ids in enumerate(shards):
        name = f"{s:05d}"
        if fmt.startswith("webdataset"):  # a stand-in input tar: the copy format reads it
            os.makedirs(tar_dir, exist_ok=True)
            with tarfile.open(os.path.join(tar_dir, f"{name}.tar"), "w") as tar:
                for v in ids:
                    info = tarfile.TarInfo(f"{v:09d}.mp4")
                    info.size = 4
                    tar.addfile(info, io.BytesIO(b"mp4!"))
        with open_shard_writer(out, name, format=fmt, model_size=MODEL, run_info=RUN_INFO) as writer:
            for v in ids:
                frames = np.arange(maps, dtype=np.int64)
                meta = VideoMeta(n_frames=maps, fps=30.0, width=640, height=360, duration=maps / 30.0)
                sink = writer.open_video(f"{v:09d}", f"{tar_dir}/{name}.tar::{v:09d}.mp4", meta)
                sink.append(frames, frames / 30.0, unique_maps(pool, v * maps + frames))  # store size: taken as is
                sink.close()
            writer.commit()
    if fmt == "lance":
        from tased_batch.stores.lance_store import append_committed

        append_committed(out, committed_shards(out))
    return time.perf_counter() - started


def cost(args: argparse.Namespace, root: str) -> None:
    pool = synthetic_saliency_maps(256, size=default_store_size(MODEL), seed=0)
    n_maps = args.videos * args.maps
    print(
        f"## cost: {args.videos} videos x {args.maps} maps, store size {default_store_size(MODEL)}, shard size {args.shard_size}"
    )
    print("| format | seconds | bytes per map | seconds vs parquet | bytes vs parquet |")
    print("|---|---|---|---|---|")
    write_store("parquet", os.path.join(root, "warm-up"), 2, 2, 2, pool)  # imports and first-call costs
    base: tuple[float, float] | None = None
    for fmt in ("parquet", "webdataset", "webdataset-copy", "lance"):
        out = os.path.join(root, fmt)
        seconds = write_store(fmt, out, args.videos, args.maps, args.shard_size, pool)
        per_map = folder_bytes(out) / n_maps
        base = base or (seconds, per_map)
        print(f"| {fmt} | {seconds:.2f} | {per_map:.0f} | {seconds / base[0]:.2f} | {per_map / base[1]:.2f} |")


def random_access(args: argparse.Namespace, root: str) -> None:
    import lance
    from lance.fragment import write_fragments

    from tased_batch.stores.lance_store import MAPS_SCHEMA

    h, w = default_store_size(MODEL)
    uri = os.path.join(root, "random", "maps.lance")
    pool = synthetic_saliency_maps(256, size=(h, w), seed=1)
    stats = {
        f.name: pa.nulls(0, f.type)
        for f in MAPS_SCHEMA
        if f.name not in {"video_id", "frame_index", "timestamp", "height", "width", "map", "shard_id", "attempt"}
    }
    started = time.perf_counter()
    per_shard = 1000
    fragments = []
    for first in range(0, args.random_videos, per_shard):
        ids = range(first, min(first + per_shard, args.random_videos))
        n = len(ids) * args.random_maps
        columns = {
            "video_id": pa.array([f"{v:09d}" for v in ids for _ in range(args.random_maps)]),
            "frame_index": pa.array(np.tile(np.arange(args.random_maps), len(ids)), pa.int64()),
            "timestamp": pa.array(np.tile(np.arange(args.random_maps) / 30.0, len(ids))),
            "height": pa.array(np.full(n, h, np.int32)),
            "width": pa.array(np.full(n, w, np.int32)),
            "map": pa.array(
                [
                    m.tobytes()
                    for m in unique_maps(pool, np.arange(first * args.random_maps, first * args.random_maps + n))
                ],
                pa.binary(),
            ),
            **{k: pa.nulls(n, v.type) for k, v in stats.items()},
            "shard_id": pa.array([f"{first // per_shard:06d}"] * n),
            "attempt": pa.array([f"attempt-{first // per_shard:06d}"] * n),
        }
        fragments += write_fragments(pa.table(columns, schema=MAPS_SCHEMA), uri, schema=MAPS_SCHEMA)
    dataset = lance.LanceDataset.commit(uri, lance.LanceOperation.Overwrite(MAPS_SCHEMA, fragments))
    print(
        f"\n## one video out of {args.random_videos:,} in maps.lance ({dataset.count_rows():,} rows, "
        f"{folder_bytes(uri) / 2**20:.1f} MiB, built in {time.perf_counter() - started:.1f} s)"
    )
    rng = random.Random(0)

    def timings(ds) -> list[float]:
        out = []
        for _ in range(args.lookups):
            v = rng.randrange(args.random_videos)
            where = f"video_id = '{v:09d}' AND attempt = 'attempt-{v // per_shard:06d}'"
            t = time.perf_counter()
            table = ds.to_table(columns=["frame_index", "timestamp", "map"], filter=where)
            out.append(time.perf_counter() - t)
            assert table.num_rows == args.random_maps
        return sorted(out)

    plain = timings(lance.dataset(uri))
    dataset.create_scalar_index("video_id", index_type="BTREE")
    indexed = timings(lance.dataset(uri))
    print("| lookup | median ms | p95 ms |")
    print("|---|---|---|")
    for label, t in (("no index (baseline)", plain), ("BTREE on video_id", indexed)):
        print(f"| {label} | {1000 * t[len(t) // 2]:.2f} | {1000 * t[int(len(t) * 0.95)]:.2f} |")
    print(f"ratio (baseline / indexed median): {plain[len(plain) // 2] / indexed[len(indexed) // 2]:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=256)
    parser.add_argument("--maps", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=32)
    parser.add_argument("--random-videos", type=int, default=100_000)
    parser.add_argument("--random-maps", type=int, default=8)
    parser.add_argument("--lookups", type=int, default=200)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="tased-lance-bench-")
    try:
        cost(args, root)
        random_access(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
