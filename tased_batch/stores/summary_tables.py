"""Where the saliency summaries live in a shard attempt, and how writers and the reader reach them.

* per-map statistics (:data:`~tased_batch.summaries.FRAME_COLUMNS`): columns of ``maps.parquet``
  in the Parquet format (next to each map's blob); ``frame_stats.parquet`` in the Zarr and PNG
  formats (video_id, frame_index, timestamp, statistics);
* per-video summaries (:data:`~tased_batch.summaries.VIDEO_COLUMNS`): columns of ``videos.parquet``;
* the crop track (:data:`~tased_batch.summaries.CROP_COLUMNS`), with a crop aspect only:
  ``crop.parquet``, one row per map, written when the shard commits (the smoothing needs each
  whole video, so it cannot sit in map rows that are written as they stream).

Outputs written before these existed have none of them: their videos table reads with null
summary columns and they contribute no rows to :func:`read_frame_stats` and :func:`read_crop`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tased_batch.errors import StoreError
from tased_batch.stores import layout
from tased_batch.stores.commit import CommitRecord, FileEntry
from tased_batch.summaries import (
    CROP_SCHEMA,
    FRAME_COLUMNS,
    FRAME_STATS_SCHEMA,
    VideoSummary,
    conform,
    crop_track_from_maps,
    frame_stats,
    parse_aspect,
)

if TYPE_CHECKING:
    from tased_batch.stores.base import ShardWriter
    from tased_batch.stores.reader import Results

FRAME_STATS_FILE = "frame_stats.parquet"
CROP_FILE = "crop.parquet"

__all__ = [
    "CROP_FILE",
    "FRAME_STATS_FILE",
    "ShardSummaries",
    "VideoSummary",
    "committed_files",
    "frame_stats",
    "read_crop",
    "read_frame_stats",
]


class ShardSummaries:
    """A shard writer's summaries: per-video columns, and the tables written at commit.

    ``in_maps``: the format keeps the per-map statistics in its own map rows (Parquet);
    otherwise they are collected here and written as ``frame_stats.parquet``.

    Streaming use, per video: ``summary = open_video(...)``; per batch ``rows = summary.add(...)``
    and ``add_rows(rows)`` (or the rows go into the format's map rows); at the end
    ``close_video(summary)``, or ``drop_video(video_id)`` if the video failed part-way.
    """

    def __init__(self, crop: str | None, in_maps: bool) -> None:
        if crop is not None:
            parse_aspect(crop)
        self.crop = crop
        self.in_maps = in_maps
        self.videos: dict[str, dict[str, Any]] = {}
        self._frames: list[pa.Table] = []
        self._pending: dict[str, list[pa.Table]] = {}
        self._crops: list[pa.Table] = []

    def open_video(self, video_id: str, width: int, height: int) -> VideoSummary:
        """The accumulator for one video (the streaming writer's sink feeds it batch by batch)."""
        crop = self.crop if width >= 2 and height >= 2 else None  # unknown source size: no crop track
        return VideoSummary(video_id, width=width, height=height, crop=crop)

    def add_rows(self, rows: pa.Table) -> None:
        """Per-map rows of a batch (of one video) that the format does not store in its map rows."""
        if not self.in_maps and rows.num_rows:
            self._pending.setdefault(rows["video_id"][0].as_py(), []).append(rows)

    def close_video(self, summary: VideoSummary) -> None:
        """A video's last batch is in: keep its per-map rows, per-video columns and crop track."""
        self._frames.extend(self._pending.pop(summary.video_id, []))
        row, track = summary.finish()
        self.videos[summary.video_id] = row
        if track is not None and track.num_rows:
            self._crops.append(track)

    def drop_video(self, video_id: str) -> None:
        """Forget a video that failed after some of its batches: no rows of it are written."""
        self._pending.pop(video_id, None)
        self.videos.pop(video_id, None)

    def write(self, writer: ShardWriter) -> list[FileEntry]:
        """Put the shard's summary tables into its attempt; return their commit-record entries."""
        from tased_batch.stores.base import table_bytes

        tables: list[tuple[str, pa.Table]] = []
        if not self.in_maps:
            tables.append((FRAME_STATS_FILE, pa.concat_tables([FRAME_STATS_SCHEMA.empty_table(), *self._frames])))
        if self.crop is not None:
            tables.append((CROP_FILE, pa.concat_tables([CROP_SCHEMA.empty_table(), *self._crops])))
        entries = []
        for name, table in tables:
            data = table_bytes(table)
            layout.put_whole(writer.fs, writer._path(name), data)
            entries.append(writer._entry(name, data, rows=table.num_rows))
        return entries


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


def committed_files(results: Results, name: str) -> list[str]:
    """Every committed shard's file ``name``: plain paths on local disk, URIs elsewhere (s3://...).

    ``maps.parquet`` includes the part files that long videos spill to (the same columns)."""
    paths = [layout.join(results.root, p) for s in sorted(results.shards) for p in _listed_all(results.shards[s], name)]
    return paths if layout.is_local(results.fs) else [results.fs.unstrip_protocol(p) for p in paths]


def _read(results: Results, relative: str, columns: list[str] | None = None) -> pa.Table:
    try:
        with results.fs.open(layout.join(results.root, relative), "rb") as handle:
            return pq.read_table(handle, columns=columns)
    except FileNotFoundError as exc:
        raise StoreError(
            f"committed file {relative} is missing", "the output was modified after commit; redo that shard"
        ) from exc


def _shard_frame_stats(results: Results, record: CommitRecord) -> pa.Table | None:
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


def _collect(results: Results, video_id: str | None, read: Any, schema: pa.Schema) -> pa.Table:
    if video_id is None:
        records = [results.shards[sid] for sid in sorted(results.shards)]
    else:
        records = [results.shards[results._info(video_id)["shard_id"]]]
    tables = [schema.empty_table()]
    for record in records:
        table = read(results, record)
        if table is None:
            continue
        if video_id is not None:
            table = table.filter(pc.equal(table["video_id"], video_id))
        tables.append(conform(table, schema))
    return pa.concat_tables(tables).sort_by([("video_id", "ascending"), ("frame_index", "ascending")])


def read_frame_stats(results: Results, video_id: str | None = None) -> pa.Table:
    """Per-map statistics (:data:`FRAME_STATS_SCHEMA`) of one video or of all, sorted by video and frame."""
    return _collect(results, video_id, _shard_frame_stats, FRAME_STATS_SCHEMA)


def read_crop(results: Results, video_id: str | None = None, aspect: str | None = None) -> pa.Table:
    """The crop track (:data:`CROP_SCHEMA`): stored by the run, or computed now for another ``aspect``.

    A stored track is used when the run had the same ``--crop`` (or ``aspect`` is None);
    otherwise the track is computed from the stored maps of ``video_id`` (needed then), placed at
    stored size: a little coarser than the run's, which places it on the model-size maps.
    """

    def stored(res: Results, record: CommitRecord) -> pa.Table | None:
        relative = _listed(record, CROP_FILE)
        return None if relative is None else _read(res, relative)

    table = _collect(results, video_id, stored, CROP_SCHEMA)
    if aspect is None:
        return table
    parse_aspect(aspect)
    table = table.filter(pc.equal(table["crop_aspect"], aspect))
    if table.num_rows or video_id is None:
        if video_id is None and not table.num_rows:
            raise StoreError(
                f"{results.uri} holds no crop track for {aspect}", "name a video_id to compute one from its maps"
            )
        return table
    info = results._info(video_id)
    maps = results.maps(video_id)
    return crop_track_from_maps(
        video_id,
        maps,
        results.frame_indices(video_id),
        results.timestamps(video_id),
        aspect,
        info["width"],
        info["height"],
    )
