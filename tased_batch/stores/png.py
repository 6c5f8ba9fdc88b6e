"""PNG folders in the released TASED-Net script's layout: ``<video>/%04d.png``.

The file number is the 1-based source frame index (source frame 0 -> ``0001.png``) and
the images are 8-bit grey. :func:`write_png_maps` is shared with ``tased-batch predict``.
The PNG store puts these folders inside each shard attempt, plus ``frames.parquet``
(video_id, frame_index, timestamp, path, bytes, sha256 per PNG), which is what readers use.
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

import numpy as np
import pyarrow as pa

from tased_batch.core.errors import StoreError
from tased_batch.core.records import VideoMeta
from tased_batch.stores import layout
from tased_batch.stores.base import ShardWriter, VideoMaps, table_bytes
from tased_batch.stores.commit import CommitRecord, FileEntry
from tased_batch.stores.files import damaged

# PNGs sent per concurrent batch (s3fs pipes a dict of objects in parallel).
_PUT_BATCH = 256

FRAMES_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("frame_index", pa.int64()),
        ("timestamp", pa.float64()),
        ("path", pa.string()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
    ]
)


def encode_png(image: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """One uint8 H x W map as an 8-bit grey PNG (zlib level 9: maps are tiny and smooth).

    ``text`` goes into tEXt chunks: metadata (which weights made the map) that travels with
    each file without changing its pixels or the released folder layout.
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = None
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, str(value))
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="L").save(
        buffer, format="PNG", compress_level=9, pnginfo=info
    )
    return buffer.getvalue()


def weights_text(weights: dict[str, Any]) -> dict[str, str]:
    """The PNG metadata that labels maps with the weights that made them (a random stand-in shows)."""
    return {"tased-batch:weights-kind": weights["kind"], "tased-batch:weights-sha256": weights["sha256"]}


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        if image.mode != "L":
            image = image.convert("L")
        return np.asarray(image, dtype=np.uint8).copy()


def png_name(frame_index: int) -> str:
    """``%04d.png`` of the 1-based frame number (more digits past 9999, as %04d does)."""
    return f"{int(frame_index) + 1:04d}.png"


_SEPARATORS = re.compile(r"[/\\\x00-\x1f]")
# File systems limit one name to 255 bytes; longer ids keep a readable prefix plus a digest.
MAX_NAME_BYTES = 200


def folder_name(video_id: str) -> str:
    """A video id as one folder name: path separators and control characters become ``_``
    (``.`` and ``..`` too), everything else is kept, as the released script names folders.

    An id longer than :data:`MAX_NAME_BYTES` in UTF-8 is shortened deterministically (its
    first characters, ``~`` and 16 hex digits of its sha256); the full id stays in the tables.
    """
    name = _SEPARATORS.sub("_", video_id)
    if name in ("", ".", ".."):
        return "_"
    encoded = name.encode("utf-8", "surrogatepass")
    if len(encoded) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(video_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    prefix = encoded[: MAX_NAME_BYTES - 17].decode("utf-8", "ignore")
    return f"{prefix}~{digest}"


def _write_pngs(
    fs: Any, directory: str, maps: np.ndarray, frame_indices: np.ndarray, text: dict[str, str] | None = None
) -> list[tuple[str, bytes]]:
    if maps.ndim != 3 or maps.dtype != np.uint8:
        raise StoreError(f"maps must be uint8 N x H x W, got {maps.dtype} {maps.shape}")
    if len(frame_indices) != maps.shape[0]:
        raise StoreError(f"{maps.shape[0]} maps but {len(frame_indices)} frame indices")
    if layout.is_local(fs):
        fs.makedirs(directory, exist_ok=True)
    written: list[tuple[str, bytes]] = []
    for start in range(0, maps.shape[0], _PUT_BATCH):
        batch = {
            f"{directory}/{png_name(idx)}": encode_png(image, text)
            for image, idx in zip(maps[start : start + _PUT_BATCH], frame_indices[start : start + _PUT_BATCH])
        }
        try:
            fs.pipe(batch)
        except OSError as exc:
            raise StoreError(
                f"cannot write PNGs under {directory}: {exc}", "check that the output is writable"
            ) from exc
        written.extend(batch.items())
    return written


def write_png_maps(
    out_dir: str,
    video_name: str,
    maps: np.ndarray,
    frame_indices: np.ndarray,
    storage_options: dict | None = None,
    text: dict[str, str] | None = None,
) -> list[str]:
    """Write ``out_dir/<video_name>/%04d.png`` (1-based source frame index, 8-bit grey).

    ``out_dir`` is any fsspec URI. Maps are written at the size given, with ``text`` as PNG
    metadata. Returns the paths.
    """
    fs, root = layout.open_fs(out_dir, storage_options)
    directory = layout.join(root, folder_name(video_name))
    return [path for path, _ in _write_pngs(fs, directory, np.asarray(maps), np.asarray(frame_indices), text)]


class _PngVideo(VideoMaps):
    """One video's PNG folder, written batch by batch; a failed video's folder is deleted."""

    def __init__(self, writer: PngShardWriter, video_id: str, location: str) -> None:
        self.writer = writer
        self.video_id = video_id
        self.location = location
        self.tables: list[pa.Table] = []
        self.written = False

    def append(self, frames: np.ndarray, times: np.ndarray, maps: np.ndarray, stats: pa.Table) -> None:
        w = self.writer
        self.written = True
        written = _write_pngs(w.fs, w._path(self.location), maps, frames, weights_text(w.run_info["weights"]))
        rel = [f"{w.prefix}/{self.location}/{png_name(i)}" for i in frames]
        self.tables.append(
            pa.Table.from_arrays(
                [
                    pa.array([self.video_id] * len(rel), pa.string()),
                    pa.array(frames, pa.int64()),
                    pa.array(times, pa.float64()),
                    pa.array(rel, pa.string()),
                    pa.array([len(data) for _, data in written], pa.int64()),
                    pa.array([layout.sha256_hex(data) for _, data in written], pa.string()),
                ],
                schema=FRAMES_SCHEMA,
            )
        )

    def close(self) -> str | None:
        self.writer._frames.extend(self.tables)
        return self.location

    def discard(self) -> None:
        self.tables = []
        if self.written:
            try:
                self.writer.fs.rm(self.writer._path(self.location), recursive=True)
            except (FileNotFoundError, OSError):
                pass


class PngShardWriter(ShardWriter):
    """Writes ``png/<video>/%04d.png`` per video at store size, and a frames table."""

    format = "png"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._frames: list[pa.Table] = []
        self._folders: set[str] = set()

    def _video_maps(self, video_id: str, source: str, meta: VideoMeta) -> VideoMaps:
        folder = folder_name(video_id)
        base, n = folder, 1
        while folder in self._folders:  # two ids that sanitise to the same name
            n += 1
            folder = f"{base}~{n}"
        self._folders.add(folder)
        return _PngVideo(self, video_id, f"png/{folder}")

    def _finish(self) -> list[FileEntry]:
        table = pa.concat_tables(self._frames) if self._frames else FRAMES_SCHEMA.empty_table()
        data = table_bytes(table)
        layout.put_whole(self.fs, self._path("frames.parquet"), data)
        return [self._entry("frames.parquet", data, rows=table.num_rows)]


def read_maps(
    results: Any, record: CommitRecord, info: dict[str, Any], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One committed video's PNGs, as listed (with sizes) in the shard's ``frames.parquet``."""
    import pyarrow.compute as pc

    frames_table: pa.Table = results._cached(
        f"frames:{record.shard_id}", lambda: results._read_parquet(record, "frames.parquet")
    )
    table = frames_table.filter(pc.equal(frames_table["video_id"], info["video_id"])).sort_by("frame_index")
    paths = [layout.join(results.root, p) for p in table["path"].to_pylist()]
    contents = layout.cat_many(results.fs, paths)
    maps = np.empty((len(paths), *shape), np.uint8)
    expected = zip(table["path"].to_pylist(), table["bytes"].to_pylist(), table["sha256"].to_pylist())
    for i, ((relative, size, digest), data) in enumerate(zip(expected, contents)):
        if not isinstance(data, bytes):
            raise damaged(record, relative, "is missing")
        if len(data) != size or layout.sha256_hex(data) != digest:
            raise damaged(record, relative, "does not match the shard's frames.parquet")
        maps[i] = decode_png(data)
    return table["frame_index"].to_numpy(), table["timestamp"].to_numpy(), maps


def verify_files(results: Any, record: CommitRecord) -> None:
    """The PNGs are listed, with checksums, in frames.parquet rather than in the commit record."""
    table = results._read_parquet(record, "frames.parquet")
    paths = [layout.join(results.root, p) for p in table["path"].to_pylist()]
    expected = zip(paths, table["bytes"].to_pylist(), table["sha256"].to_pylist())
    for (path, size, digest), data in zip(expected, layout.cat_many(results.fs, paths)):
        if not isinstance(data, bytes) or len(data) != size or layout.sha256_hex(data) != digest:
            raise damaged(record, path[len(results.root) :].lstrip("/"), "is missing or does not match frames.parquet")
