"""Read an output: only committed shards, the same way on local disk and object stores.

``open_results(uri)`` reads the output's index plus the commit records newer than it (see
:mod:`tased_batch.stores.index`), keeps only the records of the run's config (``config.json``),
loads the video tables (files named by the records only) and reads maps on demand. Maps come back at stored size or resized:
bilinear (``align_corners=False``) when enlarging, area when shrinking.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tased_batch.core.errors import StoreError
from tased_batch.stores import layout
from tased_batch.stores.base import VIDEOS_SCHEMA
from tased_batch.stores.commit import CommitRecord, FileEntry
from tased_batch.stores.files import REPAIR_HINT, StoreFiles, check_size, damaged
from tased_batch.stores.formats import STORE_FORMATS, StoreFormat
from tased_batch.stores.resample import resize_maps
from tased_batch.stores.summaries import conform, crop_track_from_maps, parse_aspect
from tased_batch.stores.summary_tables import committed_files, read_frame_stats, read_stored_crop

if TYPE_CHECKING:
    from tased_batch.stores.index import ShardEntry

Size = str | tuple[int, int]


@dataclass
class VideoMaps:
    """One video as yielded by iterating over :class:`Results` (maps at stored size)."""

    video_id: str
    status: str
    error: str | None
    frame_indices: np.ndarray
    timestamps: np.ndarray
    maps: np.ndarray


class Results(StoreFiles):
    """The committed content of one output. Build it with :func:`open_results`."""

    def __init__(self, uri: str, storage_options: dict | None = None) -> None:
        super().__init__(uri, storage_options)
        self._check_exists()
        self._entries, self._table = self._load()
        self._records: dict[str, CommitRecord] = {}
        ids = self._table["video_id"].to_pylist()
        self._row: dict[str, int] = {}
        for i, video_id in enumerate(ids):
            if video_id in self._row:
                first = self._table["shard_id"][self._row[video_id]].as_py()
                second = self._table["shard_id"][i].as_py()
                raise StoreError(
                    f"video {video_id!r} is in two committed shards ({first}, {second}) of {uri}",
                    "the plan assigned it twice; delete one shard's record under _commits/",
                )
            self._row[video_id] = i

    # -- loading ---------------------------------------------------------------------
    def _check_exists(self) -> None:
        """A mistyped path is an error, not an empty result (an output not committed to yet reads as empty)."""
        if not self.fs.exists(self.root):
            raise StoreError(f"{self.uri} does not exist", "check the OUTPUT path of the run")

    def _load(self) -> tuple[dict[str, ShardEntry], pa.Table]:
        """The run's committed shards and their video rows: the index, then only newer records."""
        from tased_batch.stores import index

        commits = index.scan(self.fs, self.root, with_videos=True)
        entries = commits.entries
        run_fingerprint = self._run_fingerprint()
        if run_fingerprint is not None:  # records of another config (an interrupted --overwrite) do not count
            entries = {s: e for s, e in entries.items() if e.config_fingerprint == run_fingerprint}
        tables = []
        if commits.indexed_videos is not None:
            videos = commits.indexed_videos
            kept = sorted(commits.indexed & set(entries))
            if len(kept) < len(commits.indexed):
                videos = videos.filter(pc.is_in(videos["shard_id"], pa.array(kept, pa.string())))
            tables.append(conform(videos, VIDEOS_SCHEMA))  # an index of older shards: null summaries
        fresh = [entries[s] for s in sorted(set(entries) - commits.indexed)]
        tables.extend(index.read_videos_tables(self.fs, self.root, fresh))
        table = pa.concat_tables(tables) if tables else VIDEOS_SCHEMA.empty_table()
        if len(tables) > 1:
            table = table.sort_by("shard_id") if table.num_rows else table
        return entries, table

    def _run_fingerprint(self) -> str | None:
        import json

        try:
            return json.loads(self.fs.cat_file(layout.join(self.root, "config.json"))).get("fingerprint")
        except (FileNotFoundError, ValueError):
            return None

    @property
    def shards(self) -> dict[str, CommitRecord]:
        """``{shard_id: commit record}`` of every committed shard (parsed on first use)."""
        return {s: self._record(s) for s in sorted(self._entries)}

    def _record(self, shard_id: str) -> CommitRecord:
        record = self._records.get(shard_id)
        if record is None:
            record = self._records[shard_id] = self._entries[shard_id].record
        return record

    # -- public API ------------------------------------------------------------------
    def videos(self) -> pa.Table:
        """One row per video: id, source, status, error, n_frames, fps, width, height, ...,
        and the per-video saliency summaries (docs/summaries.md; null in older outputs)."""
        return self._table

    def frame_stats(self, video_id: str | None = None) -> pa.Table:
        """Per-map saliency statistics of one video or all (docs/summaries.md), by video and frame."""
        return read_frame_stats(self, self._records_of(video_id), video_id)

    def table_files(self, name: str) -> list[str]:
        """Paths (URIs off local disk) of the committed tables called ``name`` (``videos.parquet``,
        ``maps.parquet``, ``frame_stats.parquet``, ``crop.parquet``): what DuckDB or Polars should read."""
        return committed_files(self, self._records_of(None), name)

    def crop_track(self, video_id: str | None = None, aspect: str | None = None) -> pa.Table:
        """The crop track (:data:`~tased_batch.stores.summaries.CROP_SCHEMA`): stored by the run, or
        computed now for another ``aspect``.

        A stored track is used when the run had the same ``--crop`` (or ``aspect`` is None);
        otherwise the track is computed from the stored maps of ``video_id`` (needed then), placed at
        stored size: a little coarser than the run's, which places it on the model-size maps.
        """
        table = read_stored_crop(self, self._records_of(video_id), video_id)
        if aspect is None:
            return table
        parse_aspect(aspect)
        table = table.filter(pc.equal(table["crop_aspect"], aspect))
        if table.num_rows or video_id is None:
            if video_id is None and not table.num_rows:
                raise StoreError(
                    f"{self.uri} holds no crop track for {aspect}", "name a video_id to compute one from its maps"
                )
            return table
        info = self._info(video_id)
        return crop_track_from_maps(
            video_id,
            self.maps(video_id),
            self.frame_indices(video_id),
            self.timestamps(video_id),
            aspect,
            info["width"],
            info["height"],
        )

    def __len__(self) -> int:
        return self._table.num_rows

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._row

    def __iter__(self) -> Iterator[VideoMaps]:
        """Every video in shard order, maps at stored size (empty for failed videos)."""
        for video_id in self._table["video_id"].to_pylist():
            info = self._info(video_id)
            if info["status"] == "ok":
                frames, times, maps = self._read(info)
            else:
                frames, times = np.zeros(0, np.int64), np.zeros(0, np.float64)
                maps = np.zeros((0, info["store_height"], info["store_width"]), np.uint8)
            yield VideoMaps(video_id, info["status"], info["error"], frames, times, maps)

    def maps(self, video_id: str, size: Size = "stored") -> np.ndarray:
        """uint8 maps (T x H x W) of a video: ``size`` is "stored", "model", "source" or (h, w)."""
        info = self._info(video_id)
        if info["status"] != "ok":
            raise StoreError(f"video {video_id!r} failed ({info['reason']}): {info['error']}", "it has no maps")
        _, _, maps = self._read(info)
        return resize_maps(maps, self._target(info, size))

    def frame_indices(self, video_id: str) -> np.ndarray:
        """0-based source frame indices (int64), aligned with :meth:`maps`."""
        info = self._info(video_id)
        if info["status"] != "ok":
            return np.zeros(0, np.int64)
        return self._read(info)[0]

    def timestamps(self, video_id: str) -> np.ndarray:
        """Times in seconds (float64), aligned with :meth:`maps`."""
        info = self._info(video_id)
        if info["status"] != "ok":
            return np.zeros(0, np.float64)
        return self._read(info)[1]

    def damaged(self, threads: int = 8) -> dict[str, str]:
        """Every committed shard whose files are not what its record says: ``{shard: why}``.

        Re-reads each committed file (streamed, a few at a time) and checks it is there with
        its recorded size and sha256, then the format's own lists (PNG: ``frames.parquet``).
        """
        from concurrent.futures import ThreadPoolExecutor

        def check(sid: str) -> tuple[str, str | None]:
            record = self._record(sid)
            try:
                for entry in record.files:
                    _check_digest(self.fs, self.root, record, entry)
                self._format(record).verify_files(self, record)
            except StoreError as exc:
                return sid, exc.message
            return sid, None

        with ThreadPoolExecutor(max(1, threads)) as pool:
            found = dict(pool.map(check, sorted(self._entries)))
        return {sid: why for sid, why in found.items() if why is not None}

    def verify(self) -> None:
        """Re-read every committed file and check its size and sha256 (raises StoreError naming the shard)."""
        bad = self.damaged()
        if bad:
            first = min(bad)
            more = f" (and {len(bad) - 1} more shard(s))" if len(bad) > 1 else ""
            raise StoreError(bad[first] + more, REPAIR_HINT)

    # -- helpers ---------------------------------------------------------------------
    def _records_of(self, video_id: str | None) -> list[CommitRecord]:
        """The commit records holding ``video_id`` (all, in shard order, for None)."""
        if video_id is None:
            return [self._record(s) for s in sorted(self._entries)]
        return [self._record(self._info(video_id)["shard_id"])]

    def _info(self, video_id: str) -> dict[str, Any]:
        row = self._row.get(video_id)
        if row is None:
            raise StoreError(f"no video {video_id!r} in {self.uri}", f"it holds {len(self._row)} videos; see .videos()")
        return self._table.slice(row, 1).to_pylist()[0]

    def _format(self, record: CommitRecord) -> StoreFormat:
        fmt = STORE_FORMATS.get(record.format)
        if fmt is None:
            raise StoreError(f"shard {record.shard_id} has unknown format {record.format!r}", "upgrade tased-batch")
        return fmt

    def _target(self, info: dict[str, Any], size: Size) -> tuple[int, int]:
        if size == "stored":
            return info["store_height"], info["store_width"]
        if size == "model":
            return info["model_height"], info["model_width"]
        if size == "source":
            if info["height"] < 1 or info["width"] < 1:
                raise StoreError(f"video {info['video_id']!r} has no recorded source size")
            return info["height"], info["width"]
        if isinstance(size, tuple) and len(size) == 2 and all(isinstance(v, (int, np.integer)) and v > 0 for v in size):
            return int(size[0]), int(size[1])
        raise StoreError(f"invalid size {size!r}", 'use "stored", "model", "source" or a (height, width) tuple')

    def _read(self, info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        record = self._record(info["shard_id"])
        shape = (info["store_height"], info["store_width"])
        frames, times, maps = self._format(record).read_maps(self, record, info, shape)
        if maps.shape[0] != info["n_maps"]:
            raise StoreError(
                f"video {info['video_id']!r}: {maps.shape[0]} maps stored, its table says {info['n_maps']}",
                "the shard is damaged; redo it",
            )
        return frames, times, maps


def _check_digest(fs: Any, root: str, record: CommitRecord, entry: FileEntry, chunk: int = 8 << 20) -> None:
    """One committed file against its record: there, its size, its sha256 (read in chunks)."""
    import hashlib

    path = check_size(fs, root, record, entry)
    digest = hashlib.sha256()
    try:
        with fs.open(path, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    except FileNotFoundError:
        raise damaged(record, entry.path, "is missing") from None
    if digest.hexdigest() != entry.sha256:
        raise damaged(record, entry.path, "does not match the sha256 in its commit record")


def open_results(uri: str, storage_options: dict | None = None) -> Results:
    """Open the results at ``uri`` (a local path or any fsspec URI such as ``s3://b/run``)."""
    return Results(uri, storage_options)
