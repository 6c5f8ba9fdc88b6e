"""Join the maps of a workflow-2 run to the captions in the WebDataset shards they came from.

    python workflows/join_captions.py OUTPUT SHARDS [--out joined.parquet]

    python workflows/join_captions.py s3://my-bucket/saliency/captions-v1/ \
        "s3://my-bucket/video2dataset/*.tar" --out s3://my-bucket/saliency/captions-v1-joined.parquet

`tased-batch run` names each tar member's maps by its WebDataset sample key (``KEY.mp4``
-> ``KEY``), the same key as ``KEY.txt`` (caption) and ``KEY.json`` (video2dataset's
metadata). Keys repeat across shards (every video2dataset run starts at ``000000``; the
later video's id then gets a ``~hash`` suffix), so the join is by (shard, key): the shard
and member each map came from are in its videos-table ``source`` (``SHARD::MEMBER``). The
result has one row per clip: shard, key, caption, metadata, status, and the maps with their frame indices and timestamps, the maps
encoded as in the Parquet store (PNG at stored size).
"""

from __future__ import annotations

import argparse
import json
import tarfile
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from tased_batch import open_results
from tased_batch.decode.sources import expand_braces, sample_key
from tased_batch.stores.parquet import encode_map

SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("key", pa.string()),
        ("caption", pa.string()),
        ("meta", pa.string()),  # the sample's JSON, as text
        ("status", pa.string()),
        ("error", pa.string()),
        ("frame_indices", pa.list_(pa.int64())),
        ("timestamps", pa.list_(pa.float64())),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("maps", pa.list_(pa.binary())),
    ]
)


def _shard_uri(shard: Any) -> str:
    """The shard as the run names it in ``source``: a plain path on disk, a full URL elsewhere."""
    protocol = shard.fs.protocol if isinstance(shard.fs.protocol, tuple) else (shard.fs.protocol,)
    return shard.path if "file" in protocol else shard.fs.unstrip_protocol(shard.path)


def read_captions(shards: str, storage_options: dict | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """(SHARD, KEY) -> {"caption": KEY.txt, "meta": KEY.json text} for every sample (streamed)."""
    samples: dict[tuple[str, str], dict[str, Any]] = {}
    for pattern in expand_braces(shards):
        for shard in fsspec.open_files(pattern, "rb", **(storage_options or {})):
            uri = _shard_uri(shard)
            with shard as f, tarfile.open(fileobj=f, mode="r|*") as tar:
                for member in tar:
                    name = member.name.rsplit("/", 1)[-1]
                    kind = name.split(".", 1)[1] if "." in name else ""
                    if kind not in ("txt", "json") or not member.isfile():
                        continue
                    text = tar.extractfile(member).read().decode("utf-8")
                    entry = samples.setdefault((uri, sample_key(member.name)), {"caption": None, "meta": None})
                    entry["caption" if kind == "txt" else "meta"] = text
    return samples


def join(output: str, shards: str, storage_options: dict | None = None) -> pa.Table:
    """One row per clip of the run at ``output`` with its caption; clips without maps keep their error."""
    captions = read_captions(shards, storage_options)
    results = open_results(output, storage_options)
    table = results.videos()
    sources = dict(zip(table["video_id"].to_pylist(), table["source"].to_pylist(), strict=True))
    rows = []
    for video in results:
        shard, _, member = (sources.get(video.video_id) or "").rpartition("::")
        key = sample_key(member) if shard else video.video_id
        sample = captions.get((shard, key), {})
        height, width = video.maps.shape[1:] if video.maps.ndim == 3 and len(video.maps) else (0, 0)
        rows.append(
            {
                "shard": shard or None,
                "key": key,
                "caption": sample.get("caption"),
                "meta": sample.get("meta"),
                "status": video.status,
                "error": video.error,
                "frame_indices": video.frame_indices.tolist(),
                "timestamps": video.timestamps.tolist(),
                "height": height,
                "width": width,
                "maps": [encode_map(m, "png") for m in video.maps],
            }
        )
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="the run's OUTPUT (local path or s3://...)")
    parser.add_argument("shards", help='the run\'s INPUT shards: a glob or a brace range, e.g. "s3://bucket/wds/*.tar"')
    parser.add_argument("--out", default="joined.parquet", help="where to write the joined table [joined.parquet]")
    args = parser.parse_args()
    table = join(args.output, args.shards)
    with fsspec.open(args.out, "wb") as f:
        pq.write_table(table, f, compression="zstd")
    with_caption = sum(1 for c in table["caption"].to_pylist() if c is not None)
    print(json.dumps({"rows": table.num_rows, "with_caption": with_caption, "out": args.out}))


if __name__ == "__main__":
    main()
