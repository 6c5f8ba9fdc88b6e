"""WebDataset store: one output tar per input tar, sample keys aligned, read by ``webdataset`` loaders.

A run shard is one input tar (the planner cuts shards by tar with
:class:`TarShardIds`); shard ``00017`` writes ``OUTPUT/webdataset/00017.tar``. For every
video of the input tar, in the input's order, the output tar holds, under the video
member's WebDataset sample key ``KEY``:

* ``KEY.saliency.json``: status, reason and error (failed samples are marked here), frame
  indices, timestamps, the per-video summary, the weights' kind and sha256, sizes;
* ``KEY.saliency.npy``: the maps, uint8 T x H x W at the store size (0 x H x W for a
  failed sample), read by webdataset's default ``.npy`` decoder;
* ``KEY.saliency.parquet``: the per-map statistics (docs/summaries.md), one row per map.

Keys follow WebDataset's own rule (the member path up to the first dot of its file name),
so ``clip.v2.mp4`` is key ``clip``, as the loader groups it. A second video member of the
same sample (``a.mp4`` and ``a.webm``) gets ``KEY.saliency-2.*`` members, next to the first.

The tar is deterministic (GNU format, members sorted per key, mtime 0, uid/gid 0, empty
owner names, mode 0644, no times or attempt ids inside), so a redone shard produces the
same bytes. It is assembled at commit from a local spool and appears under its final name
whole (one upload, or a temporary file renamed locally), just before the commit record. The
attempt folder keeps ``videos.parquet`` and ``frame_stats.parquet`` like the other formats,
so ``status``, resume and ``open_results`` work unchanged. ``--format webdataset-copy``
writes instead a copy of the input tar (its members as they are) with these members added
after each sample's own.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import posixpath
import re
import tarfile
import tempfile
import uuid
from typing import IO, Any, ClassVar

import numpy as np
import pyarrow as pa

from tased_batch.core.errors import StoreError
from tased_batch.core.records import VideoMeta
from tased_batch.decode.sources import TAR_SUFFIXES, sample_key
from tased_batch.stores import layout
from tased_batch.stores.base import ShardWriter, VideoMaps, VideoSink, table_bytes
from tased_batch.stores.commit import CommitRecord, FileEntry
from tased_batch.stores.summaries import FRAME_STATS_SCHEMA

WDS_DIR = "webdataset"
FIELD = "saliency"
SOURCE_SEPARATOR = "::"  # VideoSource.display joins a tar's URI and its member with this
_BAD_SHARD_CHARS = re.compile(r"[^A-Za-z0-9._-]")


class TarShardIds:
    """A shard id per input tar, handed out as the listing streams: its file name without
    ``.tar``/``.tar.gz``/``.tgz`` (``00017.tar`` gives ``00017`` and ``OUTPUT/webdataset/00017.tar``);
    a name taken by an earlier tar, or not a valid shard id, gets a cleaned name plus 8 hex
    of the URI's sha1, so ids depend only on the input."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}
        self._taken: set[str] = set()

    def __call__(self, uri: str) -> str:
        known = self._ids.get(uri)
        if known is not None:
            return known
        name = posixpath.basename(uri.split("?", 1)[0].rstrip("/"))
        for suffix in TAR_SUFFIXES:
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        wanted = _BAD_SHARD_CHARS.sub("_", name)[:100].lstrip("._-") or "shard"
        if wanted in self._taken or wanted != name:
            wanted = f"{wanted}-{hashlib.sha1(uri.encode()).hexdigest()[:8]}"
        self._ids[uri] = wanted
        self._taken.add(wanted)
        return wanted


def output_tar(shard_id: str) -> str:
    """Where a shard's tar lives, relative to the output."""
    return f"{WDS_DIR}/{shard_id}.tar"


def split_source(source: str) -> tuple[str, str | None]:
    """(tar URI, member) of a video's source as the run names it (``uri::member``)."""
    if SOURCE_SEPARATOR in source:
        uri, member = source.rsplit(SOURCE_SEPARATOR, 1)
        return uri, member
    return source, None


def _key_of(video_id: str, source: str) -> str:
    """The WebDataset sample key of a video: its member's key; a video outside a tar: its id, dots made ``_``."""
    _, member = split_source(source)
    if member:
        return sample_key(member)
    head, name = posixpath.split(video_id)
    name = name.replace(".", "_")
    return posixpath.join(head, name) if head else name


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _npy(maps: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, np.ascontiguousarray(maps, dtype=np.uint8), allow_pickle=False)
    return out.getvalue()


def _plain(value: Any) -> Any:
    """JSON-safe values: NaN and infinities become null (strict JSON readers refuse them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _WdsVideo(VideoMaps):
    """One video's maps and statistics, held at store size until it closes, then spooled."""

    def __init__(self, writer: WebDatasetShardWriter, video_id: str) -> None:
        self.writer = writer
        self.video_id = video_id
        self.maps: list[np.ndarray] = []
        self.frames: list[np.ndarray] = []
        self.times: list[np.ndarray] = []
        self.stats: list[pa.Table] = []

    def append(self, frames: np.ndarray, times: np.ndarray, maps: np.ndarray, stats: pa.Table) -> None:
        self.maps.append(maps)
        self.frames.append(frames)
        self.times.append(times)
        self.stats.append(stats)

    def close(self) -> str | None:
        h, w = self.writer.store_size
        maps = np.concatenate(self.maps) if self.maps else np.zeros((0, h, w), np.uint8)
        stats = pa.concat_tables(
            [FRAME_STATS_SCHEMA.empty_table(), *(t.select(FRAME_STATS_SCHEMA.names) for t in self.stats)]
        )
        frames = np.concatenate(self.frames) if self.frames else np.zeros(0, np.int64)
        times = np.concatenate(self.times) if self.times else np.zeros(0, np.float64)
        self.writer._spool_video(self.video_id, maps, frames, times, stats)
        self.maps, self.stats = [], []
        return self.writer._member(self.video_id, "npy")

    def discard(self) -> None:
        self.maps, self.frames, self.times, self.stats = [], [], [], []


class WebDatasetShardWriter(ShardWriter):
    """Writes ``OUTPUT/webdataset/<shard>.tar`` whole at commit, aligned key by key with the input tar."""

    format = "webdataset"
    stats_in_maps = False

    copy: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keys: dict[str, tuple[str, str]] = {}  # video id -> (sample key, field name)
        self._fields: dict[str, int] = {}
        self._spool: IO[bytes] = tempfile.TemporaryFile(prefix="tased-wds-")
        self._spooled: dict[str, tuple[int, int, int, int, list[int], list[float]]] = {}
        self._tar_uri: str | None = None

    def open_video(self, video_id: str, source: str, meta: VideoMeta | None = None) -> VideoSink:
        sink = super().open_video(video_id, source, meta)
        key = _key_of(video_id, source)
        n = self._fields[key] = self._fields.get(key, 0) + 1
        self._keys[video_id] = (key, FIELD if n == 1 else f"{FIELD}-{n}")
        uri, member = split_source(source)
        if member and self._tar_uri is None:
            self._tar_uri = uri
        return sink

    def _member(self, video_id: str, ext: str) -> str:
        key, field = self._keys[video_id]
        return f"{key}.{field}.{ext}"

    def _video_maps(self, video_id: str, source: str, meta: VideoMeta) -> VideoMaps:
        return _WdsVideo(self, video_id)

    def _spool_video(
        self, video_id: str, maps: np.ndarray, frames: np.ndarray, times: np.ndarray, stats: pa.Table
    ) -> None:
        npy, parquet = _npy(maps), table_bytes(stats)
        self._spool.seek(0, os.SEEK_END)
        start = self._spool.tell()
        self._spool.write(npy)
        self._spool.write(parquet)
        self._spooled[video_id] = (start, len(npy), start + len(npy), len(parquet), frames.tolist(), times.tolist())

    def _members(self, row: dict[str, Any]) -> list[tuple[str, bytes]]:
        """One video's members (sorted by name), from its finished row and its spooled maps."""
        video_id = row["video_id"]
        spooled = self._spooled.get(video_id) if row["status"] == "ok" else None
        if spooled is None:
            h, w = self.store_size
            npy, parquet = _npy(np.zeros((0, h, w), np.uint8)), table_bytes(FRAME_STATS_SCHEMA.empty_table())
            frames: list[int] = []
            times: list[float] = []
        else:
            npy_at, npy_len, pq_at, pq_len, frames, times = spooled
            self._spool.seek(npy_at)
            npy = self._spool.read(npy_len)
            self._spool.seek(pq_at)
            parquet = self._spool.read(pq_len)
        weights = self.run_info["weights"]
        skip = {"location", "source"}
        meta = {
            "video_id": video_id,
            **{k: v for k, v in row.items() if k not in skip and k != "video_id"},
            "frame_indices": frames,
            "timestamps": times,
            "store_size": list(self.store_size),
            "model_size": list(self.model_size),
            "weights_kind": weights["kind"],
            "weights_sha256": weights["sha256"],
            "config_fingerprint": self.run_info["config_fingerprint"],
        }
        data = json.dumps(_plain(meta), sort_keys=True, separators=(",", ":")).encode()
        return sorted(
            [
                (self._member(video_id, "json"), data),
                (self._member(video_id, "npy"), npy),
                (self._member(video_id, "parquet"), parquet),
            ]
        )

    def _samples(self) -> dict[str, list[dict[str, Any]]]:
        """Finished rows per sample key, keys in input order (a key's videos stay together)."""
        by_key: dict[str, list[dict[str, Any]]] = {}
        for row in self._rows:
            by_key.setdefault(self._keys[row["video_id"]][0], []).append(row)
        return by_key

    def _add_sample(self, tar: tarfile.TarFile, rows: list[dict[str, Any]]) -> None:
        """One sample's members, read back from the spool one video at a time (memory: one video's maps)."""
        for row in rows:
            for name, data in self._members(row):
                tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))

    def _write_tar(self, out: IO[bytes]) -> None:
        samples = self._samples()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
            if self.copy and self._tar_uri is not None:
                self._copy_input(tar, samples)
                return
            for rows in samples.values():
                self._add_sample(tar, rows)

    def _copy_input(self, tar: tarfile.TarFile, samples: dict[str, list[dict[str, Any]]]) -> None:
        """The input tar's members as they are, each sample followed by our members for its key."""
        fs, path = layout.open_fs(str(self._tar_uri), self.storage_options)

        def flush(key: str | None) -> None:
            if key is not None and key in samples:
                self._add_sample(tar, samples.pop(key))

        try:
            with fs.open(path, "rb") as handle, tarfile.open(fileobj=handle, mode="r|*") as source:
                current: str | None = None
                for info in source:
                    key = sample_key(info.name)
                    if key != current:
                        flush(current)
                        current = key
                    if info.isfile():
                        tar.addfile(info, source.extractfile(info))
                    else:
                        tar.addfile(info)
                flush(current)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise StoreError(
                f"shard {self.shard_id}: cannot copy input tar {self._tar_uri}: {exc}",
                "check that the input tar is complete and readable, or use --format webdataset",
            ) from exc
        for rows in list(samples.values()):  # keys the input no longer holds (it changed since planning)
            self._add_sample(tar, rows)

    def _finish(self) -> list[FileEntry]:
        """Build the tar in a local temporary file, then put it under its final name in one piece."""
        relative = output_tar(self.shard_id)
        target = layout.join(self.root, relative)
        local = layout.is_local(self.fs)
        directory = os.path.dirname(target) if local else None
        if directory is not None:
            os.makedirs(directory, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(
            dir=directory, prefix=f".{self.shard_id}.tar.{uuid.uuid4().hex[:8]}.", suffix=".tmp", delete=False
        )
        try:
            with handle:
                self._write_tar(handle)
                handle.flush()
                os.fsync(handle.fileno())
            sha, size = hashlib.sha256(), 0
            with open(handle.name, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    sha.update(block)
                    size += len(block)
            self._check_fence()  # a taken-over run must not replace the new driver's tar
            if local:
                os.replace(handle.name, target)
            else:
                self.fs.put_file(handle.name, target)  # one upload: the object appears whole when it completes
        finally:
            if os.path.exists(handle.name):
                os.unlink(handle.name)
        self._spool.close()
        return [FileEntry(relative, size, sha.hexdigest())]

    def _verify(self, files: list[FileEntry]) -> None:
        self.fs.invalidate_cache(layout.join(self.root, WDS_DIR))
        super()._verify(files)

    def _discard(self) -> None:
        self._spool.close()


class WebDatasetCopyShardWriter(WebDatasetShardWriter):
    """``--format webdataset-copy``: the output tar is the input tar with the saliency members added per sample."""

    format = "webdataset-copy"
    copy = True


class _TarIndex:
    """Where each member's bytes lie in one committed tar (headers read once, data read by range)."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs, self.path = fs, path
        self.members: dict[str, tuple[int, int]] = {}
        with fs.open(path, "rb") as handle, tarfile.open(fileobj=handle, mode="r:") as tar:
            for info in tar:
                if info.isfile():
                    self.members[info.name] = (info.offset_data, info.size)

    def read(self, name: str) -> bytes:
        where = self.members.get(name)
        if where is None:
            raise StoreError(f"{self.path} has no member {name}", "the tar was modified after commit; redo that shard")
        return self.fs.cat_file(self.path, start=where[0], end=where[0] + where[1])


def _tar_entry(record: CommitRecord) -> FileEntry:
    entry = next((f for f in record.files if f.path.startswith(f"{WDS_DIR}/")), None)
    if entry is None:
        raise StoreError(
            f"commit record of shard {record.shard_id} names no tar", "delete the record to redo the shard"
        )
    return entry


def read_maps(
    results: Any, record: CommitRecord, info: dict[str, Any], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One committed video's maps and frames, from its members in the shard's tar."""
    entry = _tar_entry(record)
    path = layout.join(results.root, entry.path)
    index = results._cached(f"wds:{record.shard_id}:{record.attempt}", lambda: _TarIndex(results.fs, path))
    npy_name = info["location"]
    maps = np.load(io.BytesIO(index.read(npy_name)), allow_pickle=False)
    meta = json.loads(index.read(npy_name[: -len(".npy")] + ".json"))
    frames = np.asarray(meta["frame_indices"], np.int64)
    times = np.asarray([math.nan if t is None else t for t in meta["timestamps"]], np.float64)
    if maps.shape[1:] != tuple(shape) or maps.shape[0] != frames.size:
        raise StoreError(f"{npy_name} in {entry.path} holds {maps.shape}, expected {frames.size} x {shape}")
    return frames, times, maps
