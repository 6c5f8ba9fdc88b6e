"""`status --json` and `open_results(uri).videos()` on a big synthetic store, before and after the index.

Builds an output of N videos in N/16 committed shards (commit records, per-shard video
tables, plan and config as a run writes them; no maps), on local disk and on a local S3
endpoint (moto), then times each reader in a fresh process (imports included) and prints
its peak RSS: first with the commit records only, then after folding them into the index.

    python benchmarks/index_bench.py                       # 1,000,000 videos local, 100,000 on S3
    python benchmarks/index_bench.py --videos 1000000 --s3-videos 1000000
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

from tased_batch.config import fingerprint
from tased_batch.stores import index, layout
from tased_batch.stores.base import VIDEOS_SCHEMA, table_bytes
from tased_batch.stores.commit import COMMIT_VERSION

SHARD_SIZE = 16
FINGERPRINT_FIELDS = {"bench": True}
FP = fingerprint(FINGERPRINT_FIELDS)
WEIGHTS = {"sha256": "0" * 64, "kind": "custom", "uri": "bench.pt"}


def all_videos(n_videos: int) -> pa.Table:
    """Every video row of the synthetic output (sliced per shard), built once."""
    ids = [f"video-{i:08d}" for i in range(n_videos)]
    shard = [f"{i // SHARD_SIZE:06d}" for i in range(n_videos)]
    rows = {name: pa.nulls(n_videos, field.type) for name, field in zip(VIDEOS_SCHEMA.names, VIDEOS_SCHEMA)}
    const = {
        "status": "ok",
        "n_frames": 300,
        "fps": 30.0,
        "width": 1280,
        "height": 720,
        "duration": 10.0,
        "n_maps": 300,
        "format": "parquet",
        "store_height": 38,
        "store_width": 64,
        "model_height": 224,
        "model_width": 384,
        "weights_sha256": WEIGHTS["sha256"],
        "weights_kind": WEIGHTS["kind"],
        "weights_uri": WEIGHTS["uri"],
        "config_fingerprint": FP,
    }
    for name, value in const.items():
        rows[name] = pa.array([value] * n_videos, VIDEOS_SCHEMA.field(name).type)
    rows["video_id"] = pa.array(ids, pa.string())
    rows["source"] = pa.array([f"s3://archive/{v}.mp4" for v in ids], pa.string())
    rows["shard_id"] = pa.array(shard, pa.string())
    rows["attempt"] = pa.array([f"20260101T000000Z-{int(s):012x}" for s in shard], pa.string())
    return pa.table(rows, schema=VIDEOS_SCHEMA)


def shard_files(shard: int, first: int, count: int, table: pa.Table) -> dict[str, bytes]:
    """The commit record and video table of one synthetic shard (relative path -> bytes)."""
    shard_id = f"{shard:06d}"
    attempt = "20260101T000000Z-" + f"{shard:012x}"
    prefix = f"shards/{shard_id}/{attempt}"
    ids = [f"video-{i:08d}" for i in range(first, first + count)]
    videos = table_bytes(table.slice(first, count))
    record = {
        "version": COMMIT_VERSION,
        "shard_id": shard_id,
        "attempt": attempt,
        "attempt_prefix": prefix,
        "format": "parquet",
        "created": "2026-01-01T00:00:00Z",
        "tased_batch_version": "bench",
        "config_fingerprint": FP,
        "weights": WEIGHTS,
        "run_info": {"config_fingerprint": FP, "weights": WEIGHTS},
        "model_size": [224, 384],
        "store_size": [38, 64],
        "resample": {"store": "area", "read": "bilinear"},
        "video_ids": ids,
        "n_videos": count,
        "n_ok": count,
        "n_failed": 0,
        "n_maps": 300 * count,
        "failures": [],
        "files": [
            {"path": f"{prefix}/maps.parquet", "bytes": 0, "sha256": "0" * 64},
            {
                "path": f"{prefix}/videos.parquet",
                "bytes": len(videos),
                "sha256": layout.sha256_hex(videos),
                "rows": count,
            },
        ],
    }
    return {
        f"_commits/{shard_id}.json": json.dumps(record, indent=1, sort_keys=True).encode(),
        f"{prefix}/videos.parquet": videos,
    }


def build(fs, root: str, n_videos: int) -> float:
    """Write the synthetic output; returns seconds."""
    started = time.perf_counter()
    n_shards = (n_videos + SHARD_SIZE - 1) // SHARD_SIZE
    ids = [f"video-{i:08d}" for i in range(n_videos)]
    plan = pa.table(
        {
            "video_id": ids,
            "uri": [f"s3://archive/{v}.mp4" for v in ids],
            "member": pa.nulls(n_videos, pa.string()),
            "offset": pa.nulls(n_videos, pa.int64()),
            "size": pa.nulls(n_videos, pa.int64()),
            "shard": [f"{i // SHARD_SIZE:06d}" for i in range(n_videos)],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(plan, buffer, compression="zstd")
    batch: dict[str, bytes] = {
        f"{root}/plan/videos.parquet": buffer.getvalue(),
        f"{root}/config.json": json.dumps(
            {
                "config": {},
                "fingerprint": FP,
                "fingerprint_fields": FINGERPRINT_FIELDS,
                "n_videos": n_videos,
                "n_shards": n_shards,
            }
        ).encode(),
    }
    local = layout.is_local(fs)
    table = all_videos(n_videos)
    for shard in range(n_shards):
        first = shard * SHARD_SIZE
        for rel, data in shard_files(shard, first, min(SHARD_SIZE, n_videos - first), table).items():
            batch[f"{root}/{rel}"] = data
        if len(batch) >= 2000 or shard == n_shards - 1:
            if local:
                for path, data in batch.items():
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "wb") as fh:
                        fh.write(data)
            else:
                fs.pipe(batch)  # concurrent PUTs
            batch = {}
    return time.perf_counter() - started


MEASURE = r"""
import io, json, sys, time
from contextlib import redirect_stdout
started = time.perf_counter()
kind, uri = sys.argv[1], sys.argv[2]
if kind == "open":
    from tased_batch import open_results
    imported = time.perf_counter()
    n = open_results(uri).videos().num_rows
elif kind == "fold":
    from tased_batch.stores import index, layout
    imported = time.perf_counter()
    n = len(index.fold(*layout.open_fs(uri)).entries)
else:  # the CLI as a user runs it: `tased-batch status URI --json`
    from tased_batch.cli.main import main
    import tased_batch.run.job
    imported = time.perf_counter()
    sys.argv = ["tased-batch", "status", uri, "--json"]
    captured = io.StringIO()
    try:
        with redirect_stdout(captured):
            main()
    except SystemExit as e:
        if e.code:
            raise
    n = json.loads(captured.getvalue())["videos"]["total"]
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - started, "imports": imported - started, "rows": n,
                  "peak_rss_mib": hwm / 1024}))
"""


def measure(kind: str, uri: str, env: dict[str, str]) -> dict:
    """Seconds (a fresh process, imports included), rows and peak RSS of one reader."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, kind, uri], env=env, capture_output=True, text=True, timeout=3600
    )
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(label: str, result: dict) -> None:
    print(
        f"{label:44s} {result['seconds']:7.1f} s (imports {result['imports']:4.1f} s,"
        f" peak RSS {result['peak_rss_mib']:6.0f} MiB)   rows {result['rows']:,}",
        flush=True,
    )


def run_case(name: str, uri: str, storage_options: dict, n_videos: int, env: dict[str, str], open_last: bool) -> None:
    """Build, then time each reader; with `open_last` the slow records-only `open_results` runs at the end.

    Each figure is printed as soon as it is measured, so an interrupted run keeps what it got.
    """
    fs, root = layout.open_fs(uri, storage_options)
    print(
        f"\n== {name}: {n_videos:,} videos in {(n_videos + SHARD_SIZE - 1) // SHARD_SIZE:,} shards at {uri}", flush=True
    )
    print(f"build          {build(fs, root, n_videos):8.1f} s", flush=True)
    before = {"status": measure("status", uri, env)}
    report("status --json, records only", before["status"])
    if not open_last:
        before["open"] = measure("open", uri, env)
        report("open_results().videos(), records only", before["open"])
    folded = measure("fold", uri, env)
    report("fold (index built from every record)", folded)
    after = {k: measure(k, uri, env) for k in ("status", "open")}
    report("status --json, with index", after["status"])
    report("open_results().videos(), with index", after["open"])
    if open_last:
        fs.rm(f"{root}/{index.INDEX_DIR}", recursive=True)
        before["open"] = measure("open", uri, env)
        report("open_results().videos(), records only", before["open"])
    for k, label in (("status", "status --json"), ("open", "open_results().videos()")):
        print(f"{label:24s} speed-up x{before[k]['seconds'] / after[k]['seconds']:.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=1_000_000)
    parser.add_argument("--s3-videos", type=int, default=100_000, help="0 skips the S3 case")
    parser.add_argument("--dir", default=None, help="where the local store goes (default: a temporary folder)")
    parser.add_argument(
        "--open-last",
        action="store_true",
        help="time the records-only open_results (the slowest reader) last, after the index figures",
    )
    args = parser.parse_args()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        if args.videos:
            run_case("local disk", os.path.join(tmp, "out"), {}, args.videos, env, args.open_last)
    if args.s3_videos:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request slows the server

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        endpoint = f"http://127.0.0.1:{port}"
        env.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=endpoint,
            AWS_ENDPOINT_URL_S3=endpoint,
        )
        os.environ.update(
            {
                k: env[k]
                for k in (
                    "AWS_ACCESS_KEY_ID",
                    "AWS_SECRET_ACCESS_KEY",
                    "AWS_DEFAULT_REGION",
                    "AWS_ENDPOINT_URL",
                    "AWS_ENDPOINT_URL_S3",
                )
            }
        )
        import s3fs

        s3fs.S3FileSystem(endpoint_url=endpoint).mkdir("bench-index")
        try:
            run_case("S3 endpoint (moto)", "s3://bench-index/out", {}, args.s3_videos, env, args.open_last)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
