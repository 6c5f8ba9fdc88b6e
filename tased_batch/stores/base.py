"""What every shard writer shares: validation, downsizing, the per-video table, the commit.

A format subclass only stores the maps (:meth:`ShardWriter._write_maps`) and, at commit,
finishes its data objects and lists them (:meth:`ShardWriter._finish`).
"""

from __future__ import annotations

import io
import json
import math
import time
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tased_batch import __version__
from tased_batch.errors import StoreError
from tased_batch.records import VideoResult
from tased_batch.stores import layout
from tased_batch.stores.resample import resize_maps
from tased_batch.stores.summary_tables import ShardSummaries
from tased_batch.summaries import VIDEO_COLUMNS
from tased_batch.summaries import fields as summary_fields

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
    ) -> None:
        self.output = output
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
        self._rows: list[dict[str, Any]] = []
        self.summaries = ShardSummaries(crop, in_maps=self.stats_in_maps)
        self._ids: set[str] = set()
        self._state = "open"

    # -- paths -----------------------------------------------------------------------
    def _path(self, relative: str) -> str:
        """Absolute path (in ``self.fs``) of a file inside this attempt's folder."""
        return layout.join(self.root, self.prefix, relative)

    def _entry(self, relative: str, data: bytes, rows: int | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": f"{self.prefix}/{relative}", "bytes": len(data), "sha256": layout.sha256_hex(data)}
        if rows is not None:
            entry["rows"] = rows
        return entry

    # -- public API ----------------------------------------------------------------
    def write(self, result: VideoResult) -> None:
        """Store one video's maps (downsized to the store size) or its failure."""
        if self._state != "open":
            raise StoreError(f"shard {self.shard_id} writer is already {self._state}")
        if not isinstance(result.video_id, str) or not result.video_id:
            raise StoreError(f"video id must be a non-empty string, got {result.video_id!r}")
        if result.video_id in self._ids:
            raise StoreError(f"video {result.video_id!r} written twice to shard {self.shard_id}")
        location = None
        n_maps = 0
        if result.ok:
            maps, frames, times = self._check_maps(result)
            stats = self.summaries.add_whole(result.video_id, maps, frames, times, result.width, result.height)
            stored = resize_maps(maps, self.store_size)
            n_maps = int(stored.shape[0])
            try:
                location = self._write_maps(result, stored, frames, times, stats)
            except StoreError:
                raise
            except Exception as exc:  # fsspec/zarr raise many types; name the shard and video
                raise StoreError(f"shard {self.shard_id}: cannot store maps of {result.video_id!r}: {exc}") from exc
        elif result.status != "failed":
            raise StoreError(f"video {result.video_id!r} has status {result.status!r}", "use 'ok' or 'failed'")
        self._ids.add(result.video_id)
        self._rows.append(
            {
                "video_id": result.video_id,
                "source": result.source,
                "status": result.status,
                "reason": result.reason,
                "error": result.error,
                "n_frames": int(result.n_frames),
                "fps": float(result.fps),
                "width": int(result.width),
                "height": int(result.height),
                "duration": float(result.duration),
                "n_maps": n_maps,
                "location": location,
                **self.summaries.videos.get(result.video_id, {}),
            }
        )

    def commit(self) -> dict[str, Any]:
        """Finish the data objects, write the video table, then the commit record (last)."""
        if self._state != "open":
            raise StoreError(f"shard {self.shard_id} writer is already {self._state}")
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
            raise StoreError(f"shard {self.shard_id}: cannot write data: {exc}", "the shard is not committed; rerun to redo it") from exc
        statuses = [row["status"] for row in self._rows]
        record = {
            "version": layout.COMMIT_VERSION,
            "shard_id": self.shard_id,
            "attempt": self.attempt,
            "attempt_prefix": self.prefix,
            "format": self.format,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "tased_batch_version": __version__,
            "config_fingerprint": self.run_info["config_fingerprint"],
            "weights": self.run_info["weights"],
            "run_info": self.run_info,
            "model_size": list(self.model_size),
            "store_size": list(self.store_size),
            "resample": {"store": "area", "read": "bilinear"},
            "video_ids": [row["video_id"] for row in self._rows],
            "n_videos": len(self._rows),
            "n_ok": statuses.count("ok"),
            "n_failed": statuses.count("failed"),
            "n_maps": int(sum(row["n_maps"] for row in self._rows)),
            "failures": [
                {k: row[k] for k in ("video_id", "source", "reason", "error")}
                for row in self._rows
                if row["status"] != "ok"
            ],
            "files": files,
        }
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

    def __enter__(self) -> "ShardWriter":
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
            raise StoreError(f"{where}: maps are {maps.shape[1]}x{maps.shape[2]}, the model size is {self.model_size[0]}x{self.model_size[1]}")
        if frames.shape != (maps.shape[0],) or times.shape != (maps.shape[0],):
            raise StoreError(f"{where}: {maps.shape[0]} maps but {frames.size} frame indices and {times.size} timestamps")
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

    def _verify(self, files: list[dict[str, Any]]) -> None:
        """Check that every data object is in place with its size before publishing."""
        paths = [layout.join(self.root, f["path"]) for f in files]
        for path in {p.rsplit("/", 1)[0] for p in paths}:
            self.fs.invalidate_cache(path)
        for path, entry in zip(paths, files):
            try:
                size = self.fs.size(path)
            except FileNotFoundError:
                size = None
            if size != entry["bytes"]:
                raise StoreError(f"shard {self.shard_id}: {entry['path']} has {size} bytes, expected {entry['bytes']}")

    # -- format hooks ----------------------------------------------------------------
    def _write_maps(
        self, result: VideoResult, maps: np.ndarray, frames: np.ndarray, times: np.ndarray, stats: pa.Table
    ) -> str | None:
        """Store one video's maps at store size (``stats``: their per-map rows); return its location."""
        raise NotImplementedError

    def _finish(self) -> list[dict[str, Any]]:
        """Close the data objects; return commit-record entries (path, bytes, sha256)."""
        raise NotImplementedError

    def _discard(self) -> None:
        """Drop open uploads on abort."""
