"""Bring a video's bytes within reach of a decoder: a local path, a spooled copy, or a stream.

Local files are used in place. Remote objects and tar members are copied into the spool
(:mod:`tased_batch.decode.spool`) when they fit its budget, because decord and seeking
need a file; objects too large (or of unknown size) are streamed through PyAV. Storage
errors become typed :class:`VideoError` s with the same reason codes everywhere.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import fsspec

from tased_batch.core.errors import VideoError
from tased_batch.decode.sources import LANCE_MEMBER, VideoSource, is_remote, is_tar, parse_lance_member, suffix_of
from tased_batch.decode.spool import SPOOL_MAX_ENV, _Spool

_COPY_BLOCK = 8 << 20
T = TypeVar("T")


@dataclass
class Fetched:
    """Where a decoder finds a video; ``release`` deletes what fetching created."""

    path: str | None = None  # a local file (maybe a spooled copy)
    stream: IO[bytes] | None = None  # an object streamed from storage (too large to spool)
    folder: tuple[Any, str] | None = None  # (filesystem, path) of a folder of frame images
    spooled: Path | None = None
    spooled_bytes: int = 0

    @property
    def target(self) -> str | IO[bytes]:
        target = self.path if self.path is not None else self.stream
        assert target is not None, "a frame folder has no file target"
        return target

    def release(self) -> None:
        """Close the stream and delete the spooled copy (idempotent)."""
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        if self.spooled is not None:
            self.spooled.unlink(missing_ok=True)
            _Spool.release(self.spooled_bytes)
            self.spooled = None


def fetch(source: VideoSource, storage_options: dict | None = None, name: str | None = None) -> Fetched:
    """Make ``source`` readable; ``name`` is how errors name the video (default: its display)."""
    name = name or source.display
    options = dict(storage_options or {})
    fetched = Fetched()
    try:
        if not is_remote(source.uri):
            _check_file_type(name, source.uri.removeprefix("file://"))
        if source.member is None and is_tar(source.uri):
            raise VideoError(
                name, "bad-shard", "this tar shard could not be listed", "check that it is a complete tar file"
            )
        if source.member is not None and source.member.startswith(LANCE_MEMBER):
            _spool_lance_cell(name, source, fetched)
        elif source.member is not None:
            _spool_member(name, source, options, fetched)
        elif is_remote(source.uri):
            _remote(name, source.uri, options, fetched)
        else:
            _local(name, source.uri.removeprefix("file://"), fetched)
    except BaseException:
        fetched.release()
        raise
    return fetched


def storage_call(name: str, fn: Callable[[], T]) -> T:
    """Run an fsspec call, turning storage errors into typed video errors."""
    try:
        return fn()
    except FileNotFoundError as e:
        raise VideoError(name, "missing", "object or file not found", "check the URI; it may have been deleted") from e
    except PermissionError as e:
        raise VideoError(
            name,
            "permission",
            "access denied",
            "check the AWS credentials/role in use and the bucket policy",
        ) from e
    except OSError as e:
        raise VideoError(name, "io-error", f"storage error: {e}", "retry later", transient=True) from e


def _check_file_type(name: str, path: str) -> None:
    """Refuse a FIFO, socket or device before opening it: opening a FIFO blocks until a
    writer comes, which would hold the shard for the whole video timeout."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as e:
        raise VideoError(name, "missing", "file not found", "check the path; it may have been moved or deleted") from e
    except PermissionError as e:
        raise VideoError(name, "permission", "permission denied", "check the file's permissions") from e
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    raise VideoError(
        name,
        "not-regular",
        f"not a regular file (a {_file_kind(mode)})",
        "inputs must be regular files or folders; copy the data into a file",
    )


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return "special file"


def _local(name: str, path: str, fetched: Fetched) -> None:
    if os.path.isdir(path):
        fetched.folder = (fsspec.filesystem("file"), path)
        return
    try:
        size = os.stat(path).st_size
        with open(path, "rb"):
            pass
    except FileNotFoundError as e:
        raise VideoError(name, "missing", "file not found", "check the path; it may have been moved or deleted") from e
    except PermissionError as e:
        raise VideoError(name, "permission", "permission denied", "check the file's permissions") from e
    if size == 0:
        raise VideoError(name, "empty-file", "the file is empty (0 bytes)", "download or copy it again")
    fetched.path = path


def _spool_path(fetched: Fetched, name: str) -> Path:
    fetched.spooled = _Spool.directory() / f"{uuid.uuid4().hex}{suffix_of(name) or '.bin'}"
    return fetched.spooled


def _remote(name: str, uri: str, options: dict, fetched: Fetched) -> None:
    fs, path = fsspec.core.url_to_fs(uri, **options)
    info = storage_call(name, lambda: fs.info(path))
    if info.get("type") == "directory":
        fetched.folder = (fs, path)
        return
    size = info.get("size")  # None: the server does not say (some HTTP servers)
    if size == 0:
        raise VideoError(name, "empty-file", "the object is empty (0 bytes)", "upload it again")
    if size is not None and _Spool.reserve(int(size)):
        fetched.spooled_bytes = int(size)
        dest = _spool_path(fetched, path)

        def copy() -> None:
            with fs.open(path, "rb", block_size=_COPY_BLOCK) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, _COPY_BLOCK)

        storage_call(name, copy)
        fetched.path = str(dest)
        return
    # Too large for the spool, or of unknown size: stream it through PyAV (decord needs a path).
    fetched.stream = storage_call(name, lambda: fs.open(path, "rb", block_size=_COPY_BLOCK))


def _spool_lance_cell(name: str, src: VideoSource, fetched: Fetched) -> None:
    """Copy one video's bytes out of a Lance table (the planned version and row) into the spool."""
    import lance

    version, row, column = parse_lance_member(str(src.member))

    def read() -> bytes:
        cell = lance.dataset(src.uri, version=version).take([row], columns=[column])[column][0].as_py()
        return bytes(cell or b"")

    try:
        data = storage_call(name, read)
    except (ValueError, IndexError, OSError) as e:
        raise VideoError(name, "missing", f"cannot read row {row} of the Lance table: {e}", "check the table") from e
    if not data:
        raise VideoError(name, "empty-file", f"the {column!r} cell is empty", "fill or remove that row")
    if not _Spool.reserve(len(data)):
        raise VideoError(
            name, "too-large", f"a video of {len(data)} bytes exceeds the spool budget", f"raise {SPOOL_MAX_ENV}"
        )
    fetched.spooled_bytes = len(data)
    dest = _spool_path(fetched, ".mp4")
    dest.write_bytes(data)
    fetched.path = str(dest)


def _spool_member(name: str, src: VideoSource, options: dict, fetched: Fetched) -> None:
    """Copy a tar member into the spool (byte range when its offset is known)."""
    assert src.member is not None
    member = src.member
    fs, path = fsspec.core.url_to_fs(src.uri, **options) if is_remote(src.uri) else (fsspec.filesystem("file"), src.uri)
    size = src.size
    if size == 0:
        raise VideoError(name, "empty-file", "the tar member is empty (0 bytes)", "rebuild the shard")
    if size is not None and not _Spool.reserve(size):
        raise VideoError(
            name,
            "too-large",
            f"tar member of {size} bytes exceeds the spool budget",
            f"raise {SPOOL_MAX_ENV} or free disk space in {_Spool.root()}",
        )
    fetched.spooled_bytes = size or 0
    dest = _spool_path(fetched, member)

    def copy() -> None:
        with fs.open(path, "rb", block_size=_COPY_BLOCK) as f, open(dest, "wb") as out:
            if src.offset is not None and size is not None and suffix_of(src.uri) == ".tar":
                f.seek(src.offset)
                remaining = size
                while remaining:
                    block = f.read(min(_COPY_BLOCK, remaining))
                    if not block:
                        raise EOFError("the shard ends inside this member")
                    out.write(block)
                    remaining -= len(block)
                return
            with tarfile.open(fileobj=f, mode="r|*") as archive:
                for entry in archive:
                    # Same-named members are told apart by where they start (when listed).
                    if entry.name == member and src.offset in (None, entry.offset_data):
                        data = archive.extractfile(entry)
                        assert data is not None
                        shutil.copyfileobj(data, out, _COPY_BLOCK)
                        return
            raise FileNotFoundError(f"no member {member!r} in the shard")

    try:
        storage_call(name, copy)
    except (EOFError, tarfile.TarError) as e:
        raise VideoError(name, "truncated", f"cannot read the member from the shard: {e}", "rebuild the shard") from e
    if dest.stat().st_size == 0:
        raise VideoError(name, "empty-file", "the tar member is empty (0 bytes)", "rebuild the shard")
    fetched.path = str(dest)
