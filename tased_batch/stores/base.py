"""What every shard writer shares: validation, downsizing, the per-video table, the commit.

Maps stream in: :meth:`ShardWriter.open_video` gives a :class:`VideoSink` that takes a
video's maps batch by batch (downsized to the store size per batch), so a writer's memory
does not grow with video length. A format subclass gives each video a :class:`VideoMaps`
(append, close, discard) and, at commit, finishes its data objects and lists them
(:meth:`ShardWriter._finish`). A video that fails after some maps were written discards
them (:meth:`VideoMaps.discard`): no committed data object holds maps of a failed video.
The saliency summaries follow the same per-video protocol through :attr:`ShardWriter.summaries`
(:class:`ShardSummaries`; read back by :mod:`tased_batch.stores.summary_tables`): dropped with a failed video, written at commit.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tased_batch.core.errors import StoreError
from tased_batch.core.records import VideoMeta, VideoResult
from tased_batch.core.secrets import scrub_text
from tased_batch.core.version import __version__
from tased_batch.stores import layout
from tased_batch.stores.commit import CommitRecord, FailureEntry, FileEntry
from tased_batch.stores.resample import resize_maps
from tased_batch.stores.summaries import (
    CROP_SCHEMA,
    FRAME_STATS_SCHEMA,
    VIDEO_COLUMNS,
    VideoSummary,
    frame_stats_numpy,
    has_frame_stats,
    parse_aspect,
)
from tased_batch.stores.summaries import fields as summary_fields

# Default stored size = model size divided by this factor (rounded up), chosen with
# benchmarks/store_size_table.py: see docs/stores.md for the measurements.
DEFAULT_STORE_FACTOR = 6

WEIGHT_KINDS = ("released", "random", "custom")

VIDEOS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("source", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("error", pa.string()),
        ("n_frames", pa.int64()),
        ("fps", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("duration", pa.float64()),
        ("n_maps", pa.int64()),
        ("location", pa.string()),
        ("format", pa.string()),
        ("store_height", pa.int32()),
        ("store_width", pa.int32()),
        ("model_height", pa.int32()),
        ("model_width", pa.int32()),
        ("weights_sha256", pa.string()),
        ("weights_kind", pa.string()),
        ("weights_uri", pa.string()),
        ("config_fingerprint", pa.string()),
        ("shard_id", pa.string()),
        ("attempt", pa.string()),
        *summary_fields(VIDEO_COLUMNS),  # per-video saliency summaries (docs/summaries.md)
    ]
)


def default_store_size(model_size: tuple[int, int]) -> tuple[int, int]:
    """The stored map size used when none is given: model size / DEFAULT_STORE_FACTOR."""
    return (math.ceil(model_size[0] / DEFAULT_STORE_FACTOR), math.ceil(model_size[1] / DEFAULT_STORE_FACTOR))


def check_run_info(run_info: dict[str, Any]) -> dict[str, Any]:
    """Every output records which weights made it, so a random stand-in is always visible."""
    if not isinstance(run_info, dict) or not isinstance(run_info.get("config_fingerprint"), str):
        raise StoreError("run_info needs a 'config_fingerprint' string")
    weights = run_info.get("weights")
    if not isinstance(weights, dict) or not all(k in weights for k in ("sha256", "kind", "uri")):
        raise StoreError("run_info['weights'] needs 'sha256', 'kind' and 'uri'")
    if weights["kind"] not in WEIGHT_KINDS:
        raise StoreError(f"run_info['weights']['kind'] is {weights['kind']!r}", f"use one of {', '.join(WEIGHT_KINDS)}")
    try:
        json.dumps(run_info)
    except TypeError as exc:
        raise StoreError(f"run_info must be JSON-serialisable: {exc}") from exc
    return run_info


def table_bytes(table: pa.Table) -> bytes:
    """A small Parquet file in memory, written later in one PUT."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


FRAME_STATS_FILE = "frame_stats.parquet"  # per-map statistics of formats that keep them outside their map rows
CROP_FILE = "crop.parquet"  # the crop track, with --crop


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


class ShardWriter:
    """Writes one attempt of one shard; nothing is visible to readers until :meth:`commit`.

    Use one writer per shard at a time, ``write`` each video's result once, then
    ``commit`` (or ``abort``). As a context manager it aborts unless committed.
    """

    format: ClassVar[str] = ""
    stats_in_maps: ClassVar[bool] = False  # per-map statistics are columns of the map rows

    def __init__(
        self,
        output: str,
        shard_id: str,
        *,
        store_size: tuple[int, int] | None,
        model_size: tuple[int, int],
        run_info: dict[str, Any],
        storage_options: dict | None = None,
        crop: str | None = None,
        fence: str | None = None,
    ) -> None:
        self.output = output
        self.fence = fence
        self.shard_id = layout.check_shard_id(shard_id)
        self.model_size = (int(model_size[0]), int(model_size[1]))
        if min(self.model_size) < 1:
            raise StoreError(f"invalid model size {model_size}")
        size = default_store_size(self.model_size) if store_size is None else (int(store_size[0]), int(store_size[1]))
        if min(size) < 1 or size[0] > self.model_size[0] or size[1] > self.model_size[1]:
            raise StoreError(
                f"store size {size[0]}x{size[1]} does not fit the model size {self.model_size[0]}x{self.model_size[1]}",
                "use a positive size no larger than the model size (the reader upsamples)",
            )
        self.store_size = size
        self.run_info = check_run_info(run_info)
        self.storage_options = storage_options
        self.fs, self.root = layout.open_fs(output, storage_options)
        self.attempt = layout.new_attempt_id()
        self.prefix = layout.attempt_prefix(self.shard_id, self.attempt)
        self._rows: list[dict[str, Any]] = []  # the video table, in the order videos were opened (set at commit)
        self._finished: dict[str, dict[str, Any]] = {}
        self._opened: list[str] = []
        self.summaries = ShardSummaries(crop, in_maps=self.stats_in_maps)
        self._ids: set[str] = set()
        self._state = "open"

    # -- paths -----------------------------------------------------------------------
    def _path(self, relative: str) -> str:
        """Absolute path (in ``self.fs``) of a file inside this attempt's folder."""
        return layout.join(self.root, self.prefix, relative)

    def _entry(self, relative: str, data: bytes, rows: int | None = None) -> FileEntry:
        return FileEntry(f"{self.prefix}/{relative}", len(data), layout.sha256_hex(data), rows)

    # -- public API ----------------------------------------------------------------
    def open_video(self, video_id: str, source: str, meta: VideoMeta | None = None) -> VideoSink:
        """Start one video: ``append`` its maps batch by batch, then ``close`` it (or ``fail`` it)."""
        if self._state != "open":
            raise StoreError(f"shard {self.shard_id} writer is already {self._state}")
        if not isinstance(video_id, str) or not video_id:
            raise StoreError(f"video id must be a non-empty string, got {video_id!r}")
        if video_id in self._ids:
            raise StoreError(f"video {video_id!r} written twice to shard {self.shard_id}")
        self._ids.add(video_id)
        self._opened.append(video_id)
        return VideoSink(self, video_id, source, meta or VideoMeta())

    def write(self, result: VideoResult) -> None:
        """Store one whole video's maps (downsized to the store size) or its failure."""
        if result.ok:
            maps, frames, times = self._check_maps(result)
        elif result.status != "failed":
            raise StoreError(f"video {result.video_id!r} has status {result.status!r}", "use 'ok' or 'failed'")
        sink = self.open_video(result.video_id, result.source, result.meta)
        if result.ok:
            sink.append(frames, times, maps)
            sink.close()
        else:
            sink.fail(result.reason or "error", result.error or "")

    def _add_row(
        self,
        video_id: str,
        source: str,
        meta: VideoMeta,
        status: str,
        reason: str | None,
        error: str | None,
        n_maps: int,
        location: str | None,
    ) -> None:
        self._finished[video_id] = {
            "video_id": video_id,
            "source": scrub_text(source),  # a signed URL's signature is never stored
            "status": status,
            "reason": reason,
            "error": None if error is None else scrub_text(error),
            "n_frames": int(meta.n_frames),
            "fps": float(meta.fps),
            "width": int(meta.width),
            "height": int(meta.height),
            "duration": float(meta.duration),
            "n_maps": n_maps,
            "location": location,
            **self.summaries.videos.get(video_id, {}),  # null summaries for a failed video
        }

    def commit(self) -> CommitRecord:
        """Finish the data objects, write the video table, then the commit record (last)."""
        if self._state != "open":
            raise StoreError(f"shard {self.shard_id} writer is already {self._state}")
        unfinished = [v for v in self._opened if v not in self._finished]
        if unfinished:
            raise StoreError(
                f"shard {self.shard_id}: video {unfinished[0]!r} is neither closed nor failed",
                "close or fail every video",
            )
        self._rows = [self._finished[v] for v in self._opened]
        try:
            files = self._finish()
            files += self.summaries.write(self)
            videos = self._videos_table()
            data = table_bytes(videos)
            layout.put_whole(self.fs, self._path("videos.parquet"), data)
            files.append(self._entry("videos.parquet", data, rows=videos.num_rows))
            self._verify(files)
        except StoreError:
            self.abort()
            raise
        except Exception as exc:
            self.abort()
            raise StoreError(
                f"shard {self.shard_id}: cannot write data: {exc}", "the shard is not committed; rerun to redo it"
            ) from exc
        statuses = [row["status"] for row in self._rows]
        record = CommitRecord(
            shard_id=self.shard_id,
            attempt=self.attempt,
            attempt_prefix=self.prefix,
            format=self.format,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            tased_batch_version=__version__,
            config_fingerprint=self.run_info["config_fingerprint"],
            weights=self.run_info["weights"],
            run_info=self.run_info,
            model_size=self.model_size,
            store_size=self.store_size,
            video_ids=tuple(row["video_id"] for row in self._rows),
            n_ok=statuses.count("ok"),
            n_failed=statuses.count("failed"),
            n_maps=int(sum(row["n_maps"] for row in self._rows)),
            failures=tuple(
                FailureEntry(row["video_id"], row["source"], row["reason"], row["error"])
                for row in self._rows
                if row["status"] != "ok"
            ),
            files=tuple(files),
        )
        self._check_fence()
        try:
            layout.write_commit(self.fs, self.root, record)
        except StoreError as exc:
            # The PUT may have landed (e.g. a timeout after the upload), so keep the data.
            self._state = "failed"
            raise StoreError(
                f"shard {self.shard_id}: commit record not confirmed: {exc.message}",
                "check read_commit(); if it is absent the shard is redone on resume",
            ) from exc
        self._state = "committed"
        return record

    def _check_fence(self) -> None:
        """Refuse to commit once the run that opened this writer no longer holds the output's lease.

        A driver that was taken over (it stopped beating for longer than the TTL) may still
        have actors finishing shards; the new driver may already have removed their attempt
        folders as orphans or be redoing the shards. One read of the lease just before the
        commit record keeps such a late commit from replacing a good one.
        """
        if self.fence is None:
            return
        from tased_batch.stores.lease import read_lease

        try:
            holder = read_lease(self.fs, self.root)
        except Exception as exc:
            self.abort()
            raise StoreError(
                f"shard {self.shard_id}: cannot read the output's lease before committing: {exc}",
                "the shard is not committed; it is redone",
            ) from exc
        if holder is None or holder.token != self.fence:
            self.abort()
            who = "nobody" if holder is None else holder.describe(time.time())
            raise StoreError(
                f"shard {self.shard_id} not committed: this run no longer holds the output's lease (held by {who})",
                "another driver took this output over and redoes the shard; check `tased-batch status OUTPUT`",
            )

    def abort(self) -> None:
        """Drop this attempt: discard open uploads and remove what it wrote (best effort)."""
        if self._state in ("committed", "failed"):
            # "failed": the commit record may have landed and point at this data; keep it.
            raise StoreError(f"shard {self.shard_id} writer is {self._state}; its data is kept")
        self._state = "aborted"
        try:
            self._discard()
        except Exception:  # best effort: the attempt is invisible without a commit record anyway
            pass
        try:
            self.fs.rm(layout.join(self.root, self.prefix), recursive=True)
        except (FileNotFoundError, OSError):
            pass

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._state == "open":
            self.abort()

    # -- helpers -------------------------------------------------------------------
    def _check_maps(self, result: VideoResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        maps = np.asarray(result.maps)
        frames = np.asarray(result.frame_indices, dtype=np.int64)
        times = np.asarray(result.timestamps, dtype=np.float64)
        where = f"video {result.video_id!r}"
        if maps.dtype != np.uint8 or maps.ndim != 3:
            raise StoreError(f"{where}: maps must be uint8 N x H x W, got {maps.dtype} {maps.shape}")
        if maps.shape[0] and maps.shape[1:] != self.model_size:
            raise StoreError(
                f"{where}: maps are {maps.shape[1]}x{maps.shape[2]}, the model size is {self.model_size[0]}x{self.model_size[1]}"
            )
        if frames.shape != (maps.shape[0],) or times.shape != (maps.shape[0],):
            raise StoreError(
                f"{where}: {maps.shape[0]} maps but {frames.size} frame indices and {times.size} timestamps"
            )
        if frames.size and (frames[0] < 0 or np.any(np.diff(frames) <= 0)):
            raise StoreError(f"{where}: frame indices must be non-negative and strictly increasing")
        return maps, frames, times

    def _videos_table(self) -> pa.Table:
        weights = self.run_info["weights"]
        shared = {
            "format": self.format,
            "store_height": self.store_size[0],
            "store_width": self.store_size[1],
            "model_height": self.model_size[0],
            "model_width": self.model_size[1],
            "weights_sha256": weights["sha256"],
            "weights_kind": weights["kind"],
            "weights_uri": weights["uri"],
            "config_fingerprint": self.run_info["config_fingerprint"],
            "shard_id": self.shard_id,
            "attempt": self.attempt,
        }
        table = pa.Table.from_pylist([{**row, **shared} for row in self._rows], schema=VIDEOS_SCHEMA)
        return table.replace_schema_metadata({b"tased_batch.run_info": json.dumps(self.run_info).encode()})

    def _verify(self, files: list[FileEntry]) -> None:
        """Check that every data object is in place with its size before publishing."""
        paths = [layout.join(self.root, f.path) for f in files]
        for path in {p.rsplit("/", 1)[0] for p in paths}:
            self.fs.invalidate_cache(path)
        for path, entry in zip(paths, files):
            try:
                size = self.fs.size(path)
            except FileNotFoundError:
                size = None
            if size != entry.bytes:
                raise StoreError(f"shard {self.shard_id}: {entry.path} has {size} bytes, expected {entry.bytes}")

    # -- format hooks ----------------------------------------------------------------
    def _video_maps(self, video_id: str, source: str, meta: VideoMeta) -> VideoMaps:
        """Where one video's maps go, batch by batch, at store size."""
        raise NotImplementedError

    def _finish(self) -> list[FileEntry]:
        """Close the data objects; return commit-record entries (path, bytes, sha256)."""
        raise NotImplementedError

    def _discard(self) -> None:
        """Drop open uploads on abort."""


class VideoMaps:
    """One video's maps in one format: appended at store size, then kept (``close``) or dropped (``discard``)."""

    def append(self, frames: np.ndarray, times: np.ndarray, maps: np.ndarray, stats: pa.Table) -> None:
        """One batch at store size; ``stats``: its per-map statistics rows (for formats that store them with the maps)."""
        raise NotImplementedError

    def close(self) -> str | None:
        """Finish the video's data; return its location inside the attempt (None: the shared maps file)."""
        raise NotImplementedError

    def discard(self) -> None:
        """Remove whatever was written for this video (it failed)."""


class VideoSink:
    """One video's maps on their way into a shard, batch by batch; see :meth:`ShardWriter.open_video`.

    Maps arrive at model size (uint8, b x H x W) with their source frame indices (strictly
    increasing across batches) and timestamps; each batch is downsized to the store size
    and handed to the format at once, so nothing of the video accumulates here. Each batch's
    per-map statistics (docs/summaries.md) come from the engine (``extras``, computed on the
    device from the model-size maps) or, without them, are computed here on the CPU.
    """

    def __init__(self, writer: ShardWriter, video_id: str, source: str, meta: VideoMeta) -> None:
        self.writer = writer
        self.video_id = video_id
        self.source = source
        self.meta = meta
        self.n_maps = 0
        self._last_frame = -1
        self._state = "open"
        self._maps: VideoMaps | None = None
        self._summary: VideoSummary | None = None  # opened at the first batch, when the source size is known

    def _where(self) -> str:
        return f"shard {self.writer.shard_id}, video {self.video_id!r}"

    def _check_open(self) -> None:
        if self._state != "open":
            raise StoreError(f"{self._where()}: the video is already {self._state}")
        if self.writer._state != "open":
            raise StoreError(f"shard {self.writer.shard_id} writer is already {self.writer._state}")

    def _summary_of_video(self) -> VideoSummary:
        if self._summary is None:
            self._summary = self.writer.summaries.open_video(self.video_id, self.meta.width, self.meta.height)
        return self._summary

    def append(
        self,
        frame_indices: np.ndarray,
        timestamps: np.ndarray,
        maps: np.ndarray,
        extras: Mapping[str, Any] | None = None,
    ) -> None:
        """Store one batch of maps (model size, or already at store size) of this video, in frame order.

        ``extras``: the engine's per-map values for this batch; used when they hold every
        :func:`~tased_batch.stores.summaries.frame_stats` output, otherwise the statistics are computed from ``maps``.
        """
        self._check_open()
        maps = np.asarray(maps)
        frames = np.asarray(frame_indices, dtype=np.int64)
        times = np.asarray(timestamps, dtype=np.float64)
        where = self._where()
        model = self.writer.model_size
        if maps.dtype != np.uint8 or maps.ndim != 3:
            raise StoreError(f"{where}: maps must be uint8 N x H x W, got {maps.dtype} {maps.shape}")
        if maps.shape[0] and maps.shape[1:] not in (model, self.writer.store_size):
            raise StoreError(
                f"{where}: maps are {maps.shape[1]}x{maps.shape[2]}, the model size is {model[0]}x{model[1]}"
            )
        if frames.shape != (maps.shape[0],) or times.shape != (maps.shape[0],):
            raise StoreError(
                f"{where}: {maps.shape[0]} maps but {frames.size} frame indices and {times.size} timestamps"
            )
        if frames.size and (frames[0] <= self._last_frame or frames[0] < 0 or np.any(np.diff(frames) <= 0)):
            raise StoreError(f"{where}: frame indices must be non-negative and strictly increasing")
        if not frames.size:
            return
        stats = extras if extras is not None and has_frame_stats(extras) else frame_stats_numpy(maps)
        rows = self._summary_of_video().add(frames, times, stats)
        stored = resize_maps(maps, self.writer.store_size)
        try:
            if self._maps is None:
                self._maps = self.writer._video_maps(self.video_id, self.source, self.meta)
            self._maps.append(frames, times, stored, rows)
        except StoreError:
            raise
        except Exception as exc:  # fsspec/zarr raise many types; name the shard and video
            raise StoreError(f"{where}: cannot store maps: {exc}") from exc
        self.writer.summaries.add_rows(rows)
        self.n_maps += int(stored.shape[0])
        self._last_frame = int(frames[-1])

    def close(self) -> None:
        """The video is complete: its maps become part of the shard (visible once it commits)."""
        self._check_open()
        try:
            if self._maps is None:  # a video with no maps still gets its (empty) data object
                self._maps = self.writer._video_maps(self.video_id, self.source, self.meta)
            location = self._maps.close()
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"{self._where()}: cannot store maps: {exc}") from exc
        self.writer.summaries.close_video(self._summary_of_video())
        self._state = "closed"
        self.writer._add_row(self.video_id, self.source, self.meta, "ok", None, None, self.n_maps, location)

    def restart(self) -> None:
        """Drop the maps written so far and start the video again (a retry after a transient error)."""
        self._check_open()
        if self._maps is not None:
            self._maps.discard()
        self._maps = None
        self.writer.summaries.drop_video(self.video_id)
        self._summary = None
        self.n_maps = 0
        self._last_frame = -1

    def fail(self, reason: str, error: str) -> None:
        """The video failed: drop any maps written so far and record the failure instead."""
        self._check_open()
        if self._maps is not None:
            self._maps.discard()
        self.writer.summaries.drop_video(self.video_id)
        self._summary = None
        self._state = "failed"
        self.writer._add_row(self.video_id, self.source, self.meta, "failed", reason, error, 0, None)
