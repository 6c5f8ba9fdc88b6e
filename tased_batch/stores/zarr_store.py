"""Zarr v3 store: one uint8 array (frames x H x W) per video, sharded.

Each attempt holds a group ``maps.zarr`` with arrays ``v00000``, ``v00001``... (the video
table's ``location`` maps ids to arrays, since ids may hold ``/``). Inner chunks are
``CHUNK_FRAMES`` whole frames, compressed with zstd; the sharding codec packs up to
``SHARD_FRAMES`` frames into one object, so a typical video is two objects (metadata and
one shard). Every shard object is written once, whole, by the one writer of the attempt:
zarr-python's partial shard writes are read-modify-write, and concurrent ones lose data.
So a video's maps are held until a whole shard's worth (at most :data:`SHARD_BYTES`) is
there; a video that closes before that is written in one assignment, a longer one grows
shard by shard. A failed video's array is deleted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from tased_batch.core.errors import StoreError
from tased_batch.core.records import VideoMeta
from tased_batch.stores import layout
from tased_batch.stores.base import ShardWriter, VideoMaps
from tased_batch.stores.commit import CommitRecord, FileEntry
from tased_batch.stores.files import damaged

CHUNK_FRAMES = 128
SHARD_FRAMES = 4096
SHARD_BYTES = 16 << 20  # a long video's maps held in memory before its next shard object is written
ZSTD_LEVEL = 19  # measured: 9% smaller than level 9 on 128-frame chunks; decoding speed is the same


def zarr_store(fs: Any, path: str, storage_options: dict | None, read_only: bool) -> Any:
    """A zarr store at ``path`` of ``fs``: LocalStore on disk, FsspecStore elsewhere."""
    try:
        from zarr.storage import FsspecStore, LocalStore
    except ImportError as exc:
        raise StoreError(
            "the zarr format needs zarr >= 3", "install it (Python >= 3.11) or use --format parquet"
        ) from exc

    if layout.is_local(fs):
        return LocalStore(path, read_only=read_only)
    return FsspecStore.from_url(fs.unstrip_protocol(path), storage_options=storage_options, read_only=read_only)


def streaming_shard_frames(store_size: tuple[int, int]) -> int:
    """Frames per shard object of a long video: SHARD_FRAMES, fewer for large maps (SHARD_BYTES held at most)."""
    chunks = SHARD_BYTES // (store_size[0] * store_size[1] * CHUNK_FRAMES)
    return CHUNK_FRAMES * max(1, min(SHARD_FRAMES // CHUNK_FRAMES, chunks))


class _ZarrVideo(VideoMaps):
    """One video's array: held until a whole shard is there, so each shard object is written once."""

    def __init__(self, writer: ZarrShardWriter, name: str, video_id: str, source: str, meta: VideoMeta) -> None:
        self.writer = writer
        self.name = name
        self.attributes = {
            "video_id": video_id,
            "source": source,
            "fps": float(meta.fps),
            "source_width": int(meta.width),
            "source_height": int(meta.height),
            "model_size": list(writer.model_size),
            "store_size": list(writer.store_size),
        }
        self.frames: list[int] = []
        self.times: list[float] = []
        self.held: list[np.ndarray] = []
        self.held_frames = 0
        self.shard = streaming_shard_frames(writer.store_size)
        self.array: Any = None
        self.stored = 0

    def _create(self, n: int, chunk: int, shard: int) -> Any:
        from zarr.codecs import ZstdCodec

        if self.writer._group is None:
            self.writer._open()
        height, width = self.writer.store_size
        self.array = self.writer._group.create_array(
            self.name,
            shape=(n, height, width),
            dtype="uint8",
            chunks=(chunk, height, width),
            shards=(shard, height, width),
            compressors=ZstdCodec(level=ZSTD_LEVEL),
            fill_value=0,
            dimension_names=("frame", "y", "x"),
            attributes=self.attributes,
        )
        return self.array

    def _store(self, maps: np.ndarray) -> None:
        """Write whole shards (or the last, partial one) at the end of the array."""
        end = self.stored + maps.shape[0]
        self.array.resize((end, *maps.shape[1:]))
        self.array[self.stored : end] = maps
        self.stored = end

    def append(self, frames: np.ndarray, times: np.ndarray, maps: np.ndarray, stats: pa.Table) -> None:
        self.frames.extend(int(i) for i in frames)
        self.times.extend(float(t) for t in times)
        self.held.append(maps)
        self.held_frames += maps.shape[0]
        if self.held_frames >= self.shard:
            held = np.concatenate(self.held)
            full = (self.held_frames // self.shard) * self.shard
            if self.array is None:
                self._create(0, CHUNK_FRAMES, self.shard)
            self._store(held[:full])
            self.held, self.held_frames = [held[full:]], self.held_frames - full

    def close(self) -> str | None:
        held = np.concatenate(self.held) if self.held else np.zeros((0, *self.writer.store_size), np.uint8)
        if self.array is None:  # the whole video fits one shard: one array, one assignment
            n = held.shape[0]
            chunk = max(1, min(CHUNK_FRAMES, n))
            array = self._create(n, chunk, chunk * max(1, -(-min(n, SHARD_FRAMES) // chunk)))
            if n:
                array[...] = held
        elif held.shape[0]:
            self._store(held)
        self.array.update_attributes({"frame_indices": self.frames, "timestamps": self.times})
        return f"maps.zarr/{self.name}"

    def discard(self) -> None:
        self.held = []
        if self.array is not None:
            try:
                self.writer.fs.rm(self.writer._path(f"maps.zarr/{self.name}"), recursive=True)
            except (FileNotFoundError, OSError):
                pass


class ZarrShardWriter(ShardWriter):
    format = "zarr"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._group: Any = None
        self._count = 0

    def _open(self) -> None:
        import zarr

        store = zarr_store(self.fs, self._path("maps.zarr"), self.storage_options, read_only=False)
        self._group = zarr.open_group(
            store=store,
            mode="w-",
            zarr_format=3,
            attributes={"shard_id": self.shard_id, "attempt": self.attempt, "run_info": self.run_info},
        )

    def _video_maps(self, video_id: str, source: str, meta: VideoMeta) -> VideoMaps:
        name = f"v{self._count:05d}"
        self._count += 1
        return _ZarrVideo(self, name, video_id, source, meta)

    def _finish(self) -> list[FileEntry]:
        if self._group is None:
            return []
        root = self._path("maps.zarr")
        self.fs.invalidate_cache(root)
        paths = sorted(self.fs.find(root))
        entries = []
        for path, data in zip(paths, layout.cat_many(self.fs, paths)):
            if isinstance(data, Exception):
                raise StoreError(f"shard {self.shard_id}: cannot read back {path}: {data}")
            entries.append(self._entry(path[len(self.root) :].strip("/")[len(self.prefix) + 1 :], data))
        return entries


def _check_array_files(results: Any, record: CommitRecord, location: str) -> None:
    """Zarr reads a missing chunk as all-zero maps without a word: check the array's files
    against the commit record (one listing) before reading it."""
    prefix = f"{record.attempt_prefix}/{location}/"
    wanted = [e for e in record.files if e.path.startswith(prefix)]
    try:
        found = results.fs.find(layout.join(results.root, prefix), detail=True)
    except FileNotFoundError:
        found = {}
    sizes = {name[len(results.root) :].lstrip("/"): info.get("size") for name, info in found.items()}
    for entry in wanted:
        if entry.path not in sizes:
            raise damaged(record, entry.path, "is missing")
        if sizes[entry.path] != entry.bytes:
            raise damaged(record, entry.path, f"has {sizes[entry.path]} bytes, its commit record says {entry.bytes}")


def read_maps(
    results: Any, record: CommitRecord, info: dict[str, Any], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One committed video's array (named by the record's file list, or it does not count)."""
    import zarr

    location = info["location"]
    if record.file(f"{location}/zarr.json") is None:
        raise StoreError(f"commit record of shard {record.shard_id} names no array {location}", "redo that shard")
    path = layout.join(results.root, record.attempt_prefix, location)
    _check_array_files(results, record, location)
    array = zarr.open_array(store=zarr_store(results.fs, path, results.storage_options, read_only=True), mode="r")
    attrs = array.attrs
    frames = np.asarray(attrs["frame_indices"], np.int64)
    times = np.asarray(attrs["timestamps"], np.float64)
    maps = np.asarray(array[...], np.uint8) if array.shape[0] else np.zeros((0, *shape), np.uint8)
    return frames, times, maps
