"""Parquet store (the default): one row per stored map, one file per shard attempt.

``maps.parquet`` columns: ``video_id``, ``frame_index`` (0-based source frame),
``timestamp`` (s), ``encoding`` (``png``: an 8-bit grey PNG; ``raw``: H*W uint8 bytes,
row-major), ``height``, ``width`` (stored size), ``data`` (the map bytes), then the per-map
saliency statistics (:data:`tased_batch.summaries.FRAME_COLUMNS`, docs/summaries.md). zstd
compression; row groups are cut by blob bytes, not row counts; the blob column has no
dictionary encoding (blobs never repeat) and no statistics (min/max of blobs are useless).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tased_batch.errors import StoreError
from tased_batch.records import VideoResult
from tased_batch.stores import layout
from tased_batch.stores.base import ShardWriter
from tased_batch.summaries import FRAME_COLUMNS
from tased_batch.summaries import fields as summary_fields

MAPS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("frame_index", pa.int64()),
        ("timestamp", pa.float64()),
        ("encoding", pa.string()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("data", pa.binary()),
        *summary_fields(FRAME_COLUMNS),  # per-map saliency statistics (docs/summaries.md)
    ]
)

# A row group holds about this many blob bytes: large enough for efficient S3 range reads,
# small enough that reading one video does not pull much else.
ROW_GROUP_BYTES = 8 << 20

ENCODINGS = ("png", "raw")


def encode_map(image: np.ndarray, encoding: str) -> bytes:
    if encoding == "png":
        from tased_batch.stores.png import encode_png

        return encode_png(image)
    return np.ascontiguousarray(image).tobytes()


def decode_map(data: bytes, encoding: str, height: int, width: int) -> np.ndarray:
    if encoding == "png":
        from tased_batch.stores.png import decode_png

        image = decode_png(data)
    elif encoding == "raw":
        image = np.frombuffer(data, np.uint8).reshape(height, width)
    else:
        raise StoreError(f"unknown map encoding {encoding!r}", "upgrade tased-batch to read this output")
    if image.shape != (height, width):
        raise StoreError(f"stored map is {image.shape}, its row says {height}x{width}")
    return image


class _HashingFile:
    """Forwards writes to an fsspec file, counting bytes and hashing them for the commit record."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.sha = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        data = bytes(data)
        self.sha.update(data)
        self.size += len(data)
        self.handle.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class ParquetShardWriter(ShardWriter):
    """Streams map rows into ``maps.parquet`` (an S3 multipart upload, completed at commit)."""

    format = "parquet"
    stats_in_maps = True

    def __init__(self, *args: Any, encoding: str = "png", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if encoding not in ENCODINGS:
            raise StoreError(f"unknown map encoding {encoding!r}", f"use one of {', '.join(ENCODINGS)}")
        self.encoding = encoding
        self._handle: Any = None
        self._hashing: _HashingFile | None = None
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_bytes = 0
        self._rows_written = 0

    def _open(self) -> None:
        if layout.is_local(self.fs):
            self.fs.makedirs(self._path(""), exist_ok=True)
        self._handle = self.fs.open(self._path("maps.parquet"), "wb")
        self._hashing = _HashingFile(self._handle)
        metadata = {
            "tased_batch.run_info": json.dumps(self.run_info),
            "tased_batch.model_size": json.dumps(list(self.model_size)),
            "tased_batch.store_size": json.dumps(list(self.store_size)),
        }
        self._writer = pq.ParquetWriter(
            pa.PythonFile(self._hashing, mode="w"),
            MAPS_SCHEMA.with_metadata(metadata),
            compression="zstd",
            use_dictionary=["video_id", "encoding"],
            write_statistics=["video_id", "frame_index", "timestamp", *(c.name for c in FRAME_COLUMNS)],
        )

    def _write_maps(
        self, result: VideoResult, maps: np.ndarray, frames: np.ndarray, times: np.ndarray, stats: pa.Table
    ) -> str | None:
        if self._writer is None:
            self._open()
        n = maps.shape[0]
        blobs = [encode_map(image, self.encoding) for image in maps]
        table = pa.Table.from_arrays(
            [
                pa.array([result.video_id] * n, pa.string()),
                pa.array(frames, pa.int64()),
                pa.array(times, pa.float64()),
                pa.array([self.encoding] * n, pa.string()),
                pa.array(np.full(n, maps.shape[1], np.int32)),
                pa.array(np.full(n, maps.shape[2], np.int32)),
                pa.array(blobs, pa.binary()),
                *(stats[c.name] for c in FRAME_COLUMNS),
            ],
            schema=MAPS_SCHEMA,
        )
        if n == 0:
            return None
        self._pending.append(table)
        self._pending_bytes += sum(len(b) for b in blobs)
        if self._pending_bytes >= ROW_GROUP_BYTES:
            self._flush()
        return None

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        self._writer.write_table(table, row_group_size=table.num_rows)
        self._rows_written += table.num_rows
        self._pending, self._pending_bytes = [], 0

    def _finish(self) -> list[dict[str, Any]]:
        if self._writer is None:
            self._open()  # an all-failed shard still gets an (empty) maps file
        self._flush()
        self._writer.close()
        self._handle.close()  # completes the upload: the object appears whole
        entry = {
            "path": f"{self.prefix}/maps.parquet",
            "bytes": self._hashing.size,
            "sha256": self._hashing.sha.hexdigest(),
            "rows": self._rows_written,
        }
        self._writer = None
        return [entry]

    def _discard(self) -> None:
        if self._handle is not None and not self._handle.closed:
            discard = getattr(self._handle, "discard", None)
            if discard is not None:
                discard()  # aborts a pending multipart upload
            else:
                self._handle.close()


class MapsFile:
    """Reads one committed ``maps.parquet`` video by video.

    The footer is read once; decoded row groups are kept in a small LRU, because a row
    group holds many videos and iterating over a shard would otherwise fetch each group
    once per video (on S3, many times the file's size).
    """

    def __init__(self, fs: Any, path: str, cached_groups: int = 4) -> None:
        self._handle = fs.open(path, "rb")
        self._file = pq.ParquetFile(self._handle)
        meta = self._file.metadata
        column = self._file.schema_arrow.get_field_index("video_id")
        self._ranges: list[tuple[str | None, str | None]] = []
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(column).statistics
            self._ranges.append((stats.min, stats.max) if stats is not None and stats.has_min_max else (None, None))
        self._groups: OrderedDict[int, pa.Table] = OrderedDict()
        self._cached_groups = cached_groups

    def _group(self, index: int) -> pa.Table:
        if index in self._groups:
            self._groups.move_to_end(index)
        else:
            self._groups[index] = self._file.read_row_group(index)
            while len(self._groups) > self._cached_groups:
                self._groups.popitem(last=False)
        return self._groups[index]

    def rows(self, video_id: str) -> pa.Table:
        """The rows of one video, in file order (row groups skipped by their statistics)."""
        tables = [
            self._group(i)
            for i, (low, high) in enumerate(self._ranges)
            if low is None or low <= video_id <= high
        ]
        tables = [t.filter(pc.equal(t["video_id"], video_id)) for t in tables]
        return pa.concat_tables(tables) if tables else MAPS_SCHEMA.empty_table()

    def close(self) -> None:
        self._handle.close()
