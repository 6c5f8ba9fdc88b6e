"""Where the saliency summaries live in a shard attempt, and how writers and the reader reach them.

* per-map statistics (:data:`~tased_batch.stores.summaries.FRAME_COLUMNS`): columns of ``maps.parquet``
  in the Parquet format (next to each map's blob); ``frame_stats.parquet`` in the Zarr and PNG
  formats (video_id, frame_index, timestamp, statistics);
* per-video summaries (:data:`~tased_batch.stores.summaries.VIDEO_COLUMNS`): columns of ``videos.parquet``;
* the crop track (:data:`~tased_batch.stores.summaries.CROP_COLUMNS`), with a crop aspect only:
  ``crop.parquet``, one row per map, written when the shard commits (the smoothing needs each
  whole video, so it cannot sit in map rows that are written as they stream).

Outputs written before these existed have none of them: their videos table reads with null
summary columns and they contribute no rows to :func:`read_frame_stats` and :func:`read_crop`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tased_batch.core.errors import StoreError
from tased_batch.stores import layout
from tased_batch.stores.base import CROP_FILE, FRAME_STATS_FILE
from tased_batch.stores.commit import CommitRecord
from tased_batch.stores.files import StoreFiles
from tased_batch.stores.summaries import (
    CROP_SCHEMA,
    FRAME_COLUMNS,
    FRAME_STATS_SCHEMA,
    conform,
)

__all__ = [
    "CROP_FILE",
    "FRAME_STATS_FILE",
    "committed_files",
    "read_frame_stats",
    "read_stored_crop",
]


# -- reading ------------------------------------------------------------------------------------
def _listed(record: CommitRecord, name: str) -> str | None:
    entry = record.file(name)
    return None if entry is None else entry.path


def _listed_all(record: CommitRecord, name: str) -> list[str]:
    """The shard's files called ``name``; for ``maps.parquet`` also the part files of long videos
    (``maps-vNNNNN.parquet``: the same columns, see :mod:`tased_batch.stores.parquet`)."""
    if name != "maps.parquet":
        found = _listed(record, name)
        return [found] if found else []
    parts = re.compile(re.escape(f"{record.attempt_prefix}/") + r"maps(-v\d+)?\.parquet")
    return [entry.path for entry in record.files if parts.fullmatch(entry.path)]


def committed_files(files: StoreFiles, records: list[CommitRecord], name: str) -> list[str]:
    """The file ``name`` of each of ``records``: plain paths on local disk, URIs elsewhere (s3://...).

    ``maps.parquet`` includes the part files that long videos spill to (the same columns)."""
    paths = [layout.join(files.root, p) for record in records for p in _listed_all(record, name)]
    return paths if layout.is_local(files.fs) else [files.fs.unstrip_protocol(p) for p in paths]


def _read(results: StoreFiles, relative: str, columns: list[str] | None = None) -> pa.Table:
    try:
        with results.fs.open(layout.join(results.root, relative), "rb") as handle:
            return pq.read_table(handle, columns=columns)
    except FileNotFoundError as exc:
        raise StoreError(
            f"committed file {relative} is missing", "the output was modified after commit; redo that shard"
        ) from exc


def _shard_frame_stats(results: StoreFiles, record: CommitRecord) -> pa.Table | None:
    if record.format == "parquet":
        tables = []
        for relative in _listed_all(record, "maps.parquet"):  # the shared file and long videos' part files
            with results.fs.open(layout.join(results.root, relative), "rb") as handle:
                names = pq.ParquetFile(handle).schema_arrow.names
            if any(c.name not in names for c in FRAME_COLUMNS):
                return None  # written before the summaries existed
            tables.append(_read(results, relative, columns=FRAME_STATS_SCHEMA.names))
        return pa.concat_tables(tables) if tables else None
    stats_file = _listed(record, FRAME_STATS_FILE)
    return None if stats_file is None else _read(results, stats_file)


def _collect(
    files: StoreFiles,
    records: list[CommitRecord],
    video_id: str | None,
    read: Callable[[StoreFiles, CommitRecord], pa.Table | None],
    schema: pa.Schema,
) -> pa.Table:
    tables = [schema.empty_table()]
    for record in records:
        table = read(files, record)
        if table is None:
            continue
        if video_id is not None:
            table = table.filter(pc.equal(table["video_id"], video_id))
        tables.append(conform(table, schema))
    return pa.concat_tables(tables).sort_by([("video_id", "ascending"), ("frame_index", "ascending")])


def read_frame_stats(files: StoreFiles, records: list[CommitRecord], video_id: str | None = None) -> pa.Table:
    """Per-map statistics (:data:`FRAME_STATS_SCHEMA`) of ``records``' shards (of one video, or all),
    sorted by video and frame."""
    return _collect(files, records, video_id, _shard_frame_stats, FRAME_STATS_SCHEMA)


def _shard_crop(files: StoreFiles, record: CommitRecord) -> pa.Table | None:
    relative = _listed(record, CROP_FILE)
    return None if relative is None else _read(files, relative)


def read_stored_crop(files: StoreFiles, records: list[CommitRecord], video_id: str | None = None) -> pa.Table:
    """The crop tracks (:data:`CROP_SCHEMA`) that ``run --crop`` stored in ``records``' shards."""
    return _collect(files, records, video_id, _shard_crop, CROP_SCHEMA)
