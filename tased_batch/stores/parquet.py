"""Parquet store (the default): one row per stored map, in ``maps.parquet`` per shard attempt.

A video's rows are held (at store size, encoded) until the video closes, then join the
shared ``maps.parquet``; a video whose rows outgrow :data:`SPILL_BYTES` streams them into
its own part file ``maps-vNNNNN.parquet`` instead (its ``location`` in the video table), so
memory stays bounded. A failed video's rows never reach a committed file: held rows are
dropped and its part file is deleted, so a plain Parquet or DuckDB read of an attempt's
``maps*.parquet`` sees only complete videos.

``maps.parquet`` columns: ``video_id``, ``frame_index`` (0-based source frame),
``timestamp`` (s), ``encoding`` (``png``: an 8-bit grey PNG; ``raw``: H*W uint8 bytes,
row-major), ``height``, ``width`` (stored size), ``data`` (the map bytes), then the per-map
saliency statistics (:data:`tased_batch.stores.summaries.FRAME_COLUMNS`, docs/summaries.md). zstd
compression; row groups are cut by blob bytes, not row counts; the blob column has no
dictionary encoding (blobs never repeat) and no statistics (min/max of blobs are useless).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import OrderedDict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tased_batch.core.errors import StoreError
from tased_batch.core.records import VideoMeta
from tased_batch.stores import layout
from tased_batch.stores.base import ShardWriter, VideoMaps
from tased_batch.stores.commit import CommitRecord, FileEntry
from tased_batch.stores.files import damaged
from tased_batch.stores.summaries import FRAME_COLUMNS
from tased_batch.stores.summaries import fields as summary_fields

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
# A video holding more blob bytes than this spills to its own part file (bounds memory per open video).
SPILL_BYTES = ROW_GROUP_BYTES
# Held batches are merged into one table beyond this many: each small table costs its own
# buffers (several per column), far more than its rows at the default store size.
MERGE_TABLES = 32


def _merged(tables: list[pa.Table]) -> list[pa.Table]:
    return [pa.concat_tables(tables).combine_chunks()] if len(tables) > MERGE_TABLES else tables


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


class _MapsOut:
    """One Parquet file of map rows being written (an S3 multipart upload until ``finish``), cut into row groups by bytes."""

    def __init__(self, writer: ParquetShardWriter, name: str) -> None:
        self.writer = writer
        self.name = name
        fs = writer.fs
        if layout.is_local(fs):
            fs.makedirs(writer._path(""), exist_ok=True)
        self.handle = fs.open(writer._path(name), "wb")
        self.hashing = _HashingFile(self.handle)
        metadata = {
            "tased_batch.run_info": json.dumps(writer.run_info),
            "tased_batch.model_size": json.dumps(list(writer.model_size)),
            "tased_batch.store_size": json.dumps(list(writer.store_size)),
        }
        self.parquet = pq.ParquetWriter(
            pa.PythonFile(self.hashing, mode="w"),
            MAPS_SCHEMA.with_metadata(metadata),
            compression="zstd",
            use_dictionary=["video_id", "encoding"],
            write_statistics=["video_id", "frame_index", "timestamp", *(c.name for c in FRAME_COLUMNS)],
        )
        self.pending: list[pa.Table] = []
        self.pending_bytes = 0
        self.rows = 0

    def add(self, tables: list[pa.Table], blob_bytes: int) -> None:
        self.pending = _merged(self.pending + tables)
        self.pending_bytes += blob_bytes
        if self.pending_bytes >= ROW_GROUP_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        table = pa.concat_tables(self.pending)
        self.parquet.write_table(table, row_group_size=table.num_rows)
        self.rows += table.num_rows
        self.pending, self.pending_bytes = [], 0

    def finish(self) -> FileEntry:
        self.flush()
        self.parquet.close()
        self.handle.close()  # completes the upload: the object appears whole
        return FileEntry(
            f"{self.writer.prefix}/{self.name}", self.hashing.size, self.hashing.sha.hexdigest(), self.rows
        )

    def discard(self) -> None:
        self.hashing.handle = io.BytesIO()  # the Parquet writer may still flush its footer when collected
        if not self.handle.closed:
            try:
                self.handle.discard()  # aborts a pending multipart upload
            except (AttributeError, RuntimeError):  # local files cannot discard: close them (then remove)
                self.handle.close()

    def remove(self) -> None:
        """Discard and delete the file (a failed video's part file)."""
        self.discard()
        try:
            self.writer.fs.rm(self.writer._path(self.name))
        except (FileNotFoundError, OSError):
            pass


class _ParquetVideo(VideoMaps):
    """One video's rows: held until it closes, or streamed into its own part file once they outgrow SPILL_BYTES."""

    def __init__(self, writer: ParquetShardWriter, video_id: str) -> None:
        self.writer = writer
        self.video_id = video_id
        self.tables: list[pa.Table] = []
        self.bytes = 0
        self.part: _MapsOut | None = None

    def append(self, frames: np.ndarray, times: np.ndarray, maps: np.ndarray, stats: pa.Table) -> None:
        table, blob_bytes = self.writer._map_rows(self.video_id, frames, times, maps, stats)
        if self.part is not None:
            self.part.add([table], blob_bytes)
            return
        self.tables = _merged([*self.tables, table])
        self.bytes += blob_bytes
        if self.bytes >= SPILL_BYTES:
            self.part = self.writer._new_part()
            self.part.add(self.tables, self.bytes)
            self.tables, self.bytes = [], 0

    def close(self) -> str | None:
        if self.part is not None:
            self.writer._parts.append(self.part.finish())
            return self.part.name
        if self.tables:
            self.writer._shared_file().add(self.tables, self.bytes)
        return None

    def discard(self) -> None:
        self.tables = []
        if self.part is not None:
            self.part.remove()


class ParquetShardWriter(ShardWriter):
    """Streams map rows into ``maps.parquet`` (an S3 multipart upload, completed at commit) and part files."""

    format = "parquet"
    stats_in_maps = True

    def __init__(self, *args: Any, encoding: str = "png", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if encoding not in ENCODINGS:
            raise StoreError(f"unknown map encoding {encoding!r}", f"use one of {', '.join(ENCODINGS)}")
        self.encoding = encoding
        self._shared: _MapsOut | None = None
        self._open_parts: list[_MapsOut] = []
        self._parts: list[FileEntry] = []

    def _shared_file(self) -> _MapsOut:
        if self._shared is None:
            self._shared = _MapsOut(self, "maps.parquet")
        return self._shared

    def _new_part(self) -> _MapsOut:
        part = _MapsOut(self, f"maps-v{len(self._open_parts):05d}.parquet")
        self._open_parts.append(part)
        return part

    def _map_rows(
        self, video_id: str, frames: np.ndarray, times: np.ndarray, maps: np.ndarray, stats: pa.Table
    ) -> tuple[pa.Table, int]:
        """Map rows for one batch of a video (store size, encoded, with their statistics) and their blob bytes."""
        n = maps.shape[0]
        blobs = [encode_map(image, self.encoding) for image in maps]
        table = pa.Table.from_arrays(
            [
                pa.array([video_id] * n, pa.string()),
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
        return table, sum(len(b) for b in blobs)

    def _video_maps(self, video_id: str, source: str, meta: VideoMeta) -> VideoMaps:
        return _ParquetVideo(self, video_id)

    def _finish(self) -> list[FileEntry]:
        entries = [self._shared_file().finish()]  # an all-failed shard still gets an (empty) maps file
        return entries + self._parts

    def _discard(self) -> None:
        for out in [self._shared, *self._open_parts]:
            if out is not None:
                out.discard()


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
            if low is None or high is None or low <= video_id <= high
        ]
        tables = [t.filter(pc.equal(t["video_id"], video_id)) for t in tables]
        return pa.concat_tables(tables) if tables else MAPS_SCHEMA.empty_table()

    def close(self) -> None:
        self._handle.close()


def read_maps(
    results: Any, record: CommitRecord, info: dict[str, Any], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One committed video's rows, from ``maps.parquet`` or its own part file (``location``)."""
    name = info["location"] or "maps.parquet"
    key = f"maps:{record.shard_id}:{name}"
    path = results._file(record, name)

    def open_maps() -> MapsFile:
        try:
            return MapsFile(results.fs, path)
        except FileNotFoundError:
            raise damaged(record, path[len(results.root) :].lstrip("/"), "is missing") from None
        except (OSError, pa.ArrowException) as exc:
            raise damaged(record, path[len(results.root) :].lstrip("/"), f"cannot be read ({exc})") from None

    maps_file = results._cached(key, open_maps)
    table = maps_file.rows(info["video_id"]).sort_by("frame_index")
    maps = np.empty((table.num_rows, *shape), np.uint8)
    columns = ("data", "encoding", "height", "width")
    rows = zip(*(table[c].to_pylist() for c in columns))
    for i, (data, encoding, height, width) in enumerate(rows):
        maps[i] = decode_map(data, encoding, height, width)
    return table["frame_index"].to_numpy(), table["timestamp"].to_numpy(), maps
