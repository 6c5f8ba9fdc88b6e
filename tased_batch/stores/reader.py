"""Read an output: only committed shards, the same way on local disk and object stores.

``open_results(uri)`` lists the commit records, loads each shard's video table (files named
by the records only) and reads maps on demand. Maps come back at stored size or resized:
bilinear (``align_corners=False``) when enlarging, area when shrinking.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tased_batch.errors import StoreError
from tased_batch.stores import layout
from tased_batch.stores.base import VIDEOS_SCHEMA
from tased_batch.stores.resample import resize_maps
from tased_batch.summaries import conform

Size = str | tuple[int, int]

# Open per-shard readers kept at once (each caches up to 4 Parquet row groups, ~32 MiB).
_CACHED_SHARDS = 4


@dataclass
class VideoMaps:
    """One video as yielded by iterating over :class:`Results` (maps at stored size)."""

    video_id: str
    status: str
    error: str | None
    frame_indices: np.ndarray
    timestamps: np.ndarray
    maps: np.ndarray


class Results:
    """The committed content of one output. Build it with :func:`open_results`."""

    def __init__(self, uri: str, storage_options: dict | None = None) -> None:
        self.uri = uri
        self.storage_options = storage_options
        self.fs, self.root = layout.open_fs(uri, storage_options)
        self.shards: dict[str, dict[str, Any]] = layout.list_commits(self.fs, self.root)
        self._table = self._load_videos()
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
        self._cache: OrderedDict[str, Any] = OrderedDict()

    # -- loading ---------------------------------------------------------------------
    def _file(self, record: dict[str, Any], name: str) -> str:
        for entry in record["files"]:
            if entry["path"] == f"{record['attempt_prefix']}/{name}":
                return layout.join(self.root, entry["path"])
        raise StoreError(f"commit record of shard {record['shard_id']} names no {name}", "delete the record to redo the shard")

    def _read_parquet(self, path: str) -> pa.Table:
        try:
            return pq.read_table(io.BytesIO(self.fs.cat_file(path)))
        except FileNotFoundError as exc:
            raise StoreError(f"committed file {path} is missing", "the output was modified after commit; redo that shard") from exc

    def _load_videos(self) -> pa.Table:
        paths = {sid: self._file(rec, "videos.parquet") for sid, rec in sorted(self.shards.items())}
        contents = layout.cat_many(self.fs, list(paths.values()))
        tables = []
        for (sid, path), data in zip(paths.items(), contents):
            if isinstance(data, Exception):
                raise StoreError(f"committed file {path} of shard {sid} cannot be read: {data}", "redo that shard")
            tables.append(conform(pq.read_table(io.BytesIO(data)), VIDEOS_SCHEMA))  # older: null summaries
        if not tables:
            return VIDEOS_SCHEMA.empty_table()
        return pa.concat_tables(tables)

    # -- public API ------------------------------------------------------------------
    def videos(self) -> pa.Table:
        """One row per video: id, source, status, error, n_frames, fps, width, height, ...,
        and the per-video saliency summaries (docs/summaries.md; null in older outputs)."""
        return self._table

    def frame_stats(self, video_id: str | None = None) -> pa.Table:
        """Per-map saliency statistics of one video or all (docs/summaries.md), by video and frame."""
        from tased_batch.stores.summary_tables import read_frame_stats

        return read_frame_stats(self, video_id)

    def table_files(self, name: str) -> list[str]:
        """Paths (URIs off local disk) of the committed tables called ``name`` (``videos.parquet``,
        ``maps.parquet``, ``frame_stats.parquet``, ``crop.parquet``): what DuckDB or Polars should read."""
        from tased_batch.stores.summary_tables import committed_files

        return committed_files(self, name)

    def crop_track(self, video_id: str | None = None, aspect: str | None = None) -> pa.Table:
        """The crop track stored by ``run --crop``, or for another ``aspect`` computed from a video's maps."""
        from tased_batch.stores.summary_tables import read_crop

        return read_crop(self, video_id, aspect)

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

    def verify(self) -> None:
        """Re-read every committed file and check its size and sha256 (raises StoreError)."""
        for sid, record in sorted(self.shards.items()):
            for entry in record["files"]:
                path = layout.join(self.root, entry["path"])
                try:
                    data = self.fs.cat_file(path)
                except FileNotFoundError as exc:
                    raise StoreError(f"shard {sid}: committed file {entry['path']} is missing") from exc
                if len(data) != entry["bytes"] or layout.sha256_hex(data) != entry["sha256"]:
                    raise StoreError(f"shard {sid}: {entry['path']} does not match its commit record", "redo that shard")
            if record["format"] == "png":  # the PNGs are listed, with checksums, in frames.parquet
                table = self._read_parquet(self._file(record, "frames.parquet"))
                paths = [layout.join(self.root, p) for p in table["path"].to_pylist()]
                expected = zip(paths, table["bytes"].to_pylist(), table["sha256"].to_pylist())
                for (path, size, digest), data in zip(expected, layout.cat_many(self.fs, paths)):
                    if not isinstance(data, bytes) or len(data) != size or layout.sha256_hex(data) != digest:
                        raise StoreError(f"shard {sid}: {path} is missing or does not match frames.parquet", "redo that shard")

    # -- helpers ---------------------------------------------------------------------
    def _info(self, video_id: str) -> dict[str, Any]:
        row = self._row.get(video_id)
        if row is None:
            raise StoreError(f"no video {video_id!r} in {self.uri}", f"it holds {len(self._row)} videos; see .videos()")
        return self._table.slice(row, 1).to_pylist()[0]

    def _cached(self, key: str, load: Callable[[], Any]) -> Any:
        """Per-shard readers of the last few shards used (videos are read shard by shard)."""
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = self._cache[key] = load()
        while len(self._cache) > _CACHED_SHARDS:
            _, old = self._cache.popitem(last=False)
            if hasattr(old, "close"):
                old.close()
        return value

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
        record = self.shards[info["shard_id"]]
        shape = (info["store_height"], info["store_width"])
        fmt = record["format"]
        if fmt == "parquet":
            frames, times, maps = self._read_parquet_maps(record, info["video_id"], shape)
        elif fmt == "zarr":
            frames, times, maps = self._read_zarr(record, info, shape)
        elif fmt == "png":
            frames, times, maps = self._read_png(record, info["video_id"], shape)
        else:
            raise StoreError(f"shard {record['shard_id']} has unknown format {fmt!r}", "upgrade tased-batch")
        if maps.shape[0] != info["n_maps"]:
            raise StoreError(
                f"video {info['video_id']!r}: {maps.shape[0]} maps stored, its table says {info['n_maps']}",
                "the shard is damaged; redo it",
            )
        return frames, times, maps

    def _read_parquet_maps(self, record: dict[str, Any], video_id: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from tased_batch.stores.parquet import MapsFile, decode_map

        maps_file = self._cached(f"maps:{record['shard_id']}", lambda: MapsFile(self.fs, self._file(record, "maps.parquet")))
        table = maps_file.rows(video_id).sort_by("frame_index")
        maps = np.empty((table.num_rows, *shape), np.uint8)
        rows = zip(table["data"].to_pylist(), table["encoding"].to_pylist(), table["height"].to_pylist(), table["width"].to_pylist())
        for i, (data, encoding, height, width) in enumerate(rows):
            maps[i] = decode_map(data, encoding, height, width)
        return table["frame_index"].to_numpy(), table["timestamp"].to_numpy(), maps

    def _read_zarr(self, record: dict[str, Any], info: dict[str, Any], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import zarr

        from tased_batch.stores.zarr_store import zarr_store

        location = info["location"]
        if f"{record['attempt_prefix']}/{location}/zarr.json" not in {f["path"] for f in record["files"]}:
            raise StoreError(f"commit record of shard {record['shard_id']} names no array {location}", "redo that shard")
        path = layout.join(self.root, record["attempt_prefix"], location)
        array = zarr.open_array(store=zarr_store(self.fs, path, self.storage_options, read_only=True), mode="r")
        attrs = array.attrs
        frames = np.asarray(attrs["frame_indices"], np.int64)
        times = np.asarray(attrs["timestamps"], np.float64)
        maps = np.asarray(array[...], np.uint8) if array.shape[0] else np.zeros((0, *shape), np.uint8)
        return frames, times, maps

    def _read_png(self, record: dict[str, Any], video_id: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from tased_batch.stores.png import decode_png

        frames_table: pa.Table = self._cached(
            f"frames:{record['shard_id']}", lambda: self._read_parquet(self._file(record, "frames.parquet"))
        )
        table = frames_table.filter(pc.equal(frames_table["video_id"], video_id)).sort_by("frame_index")
        paths = [layout.join(self.root, p) for p in table["path"].to_pylist()]
        contents = layout.cat_many(self.fs, paths)
        maps = np.empty((len(paths), *shape), np.uint8)
        for i, (path, size, data) in enumerate(zip(paths, table["bytes"].to_pylist(), contents)):
            if not isinstance(data, bytes) or len(data) != size:
                raise StoreError(f"committed PNG {path} is missing or damaged", "redo that shard")
            maps[i] = decode_png(data)
        return table["frame_index"].to_numpy(), table["timestamp"].to_numpy(), maps


def open_results(uri: str, storage_options: dict | None = None) -> Results:
    """Open the results at ``uri`` (a local path or any fsspec URI such as ``s3://b/run``)."""
    return Results(uri, storage_options)
