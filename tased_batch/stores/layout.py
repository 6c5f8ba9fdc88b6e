"""Where things live in an output, and the commit records that make a shard exist.

Layout of an output URI (local path or any fsspec URI such as ``s3://bucket/run``)::

    OUTPUT/
      config.json, plan/...                    (the planner's, not written here)
      shards/<shard_id>/<attempt>/...          one folder per attempt of a shard
      _commits/<shard_id>.json                 commit record: the shard exists

Object stores have no atomic rename, so a shard is published by writing its commit record
last, in a single PUT (locally: a temporary file and ``os.replace``). Every attempt writes
under a fresh ``<attempt>`` name, so a redo never mixes with a half-written earlier attempt,
and readers open only the files that a commit record names. An attempt folder without a
commit record pointing at it is garbage: invisible to readers, and removable with
:func:`remove_orphans`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterable

import fsspec
from fsspec.core import url_to_fs

from tased_batch.core.errors import OutputFull, StoreError
from tased_batch.stores.commit import CommitRecord

COMMIT_DIR = "_commits"
SHARD_DIR = "shards"

_SHARD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The names this tool gives: attempt folders (see new_attempt_id) and its temporary files.
_ATTEMPT = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}$")
_TEMP = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


def check_shard_id(shard_id: str) -> str:
    """Shard ids become object names, so keep them to a portable character set."""
    if not isinstance(shard_id, str) or not _SHARD_ID.match(shard_id):
        raise StoreError(
            f"invalid shard id {shard_id!r}",
            "use 1-128 characters from A-Z a-z 0-9 . _ - , starting with a letter or digit",
        )
    return shard_id


def new_attempt_id() -> str:
    """A unique, time-sortable name for one attempt at writing a shard."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:12]


def open_fs(output: str, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and root path for an output URI (no trailing slash)."""
    try:
        fs, root = url_to_fs(output, **(storage_options or {}))
    except (ValueError, ImportError) as exc:
        raise StoreError(f"cannot open output {output!r}: {exc}", "check the URI scheme and storage options") from exc
    return fs, root.rstrip("/") or root


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def join(*parts: str) -> str:
    return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts) if p)


def commit_path(root: str, shard_id: str) -> str:
    return join(root, COMMIT_DIR, f"{shard_id}.json")


def attempt_prefix(shard_id: str, attempt: str) -> str:
    """Attempt folder relative to the output root (commit records store relative paths)."""
    return f"{SHARD_DIR}/{shard_id}/{attempt}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cat_many(fs: fsspec.AbstractFileSystem, paths: list[str]) -> list[bytes | Exception]:
    """Whole contents of many files, concurrently on object stores. Unlike ``fs.cat`` it
    never expands glob characters, which video ids may hold (``clip [1080p]``)."""
    if not paths:
        return []
    return list(fs.cat_ranges(list(paths), None, None, on_error="return"))


def put_whole(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write one object whole: a single PUT (or completed multipart upload) on object
    stores; a temporary file renamed into place on local disk, so a crash or a full disk
    never leaves a truncated (or 0-byte) object under the final name. Every state file of
    a run (config, plan, reports, index, commit records, the lease's replacements) is
    written through here."""
    tmp = None
    try:
        if is_local(fs):
            directory = os.path.dirname(path)
            os.makedirs(directory, exist_ok=True)
            tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            tmp = None
        else:
            fs.pipe_file(path, data)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputFull(
                f"cannot write {path}: the storage is full ({exc.strerror})",
                "free space (or raise the quota) and run the same command again; nothing was half-written",
            ) from exc
        raise StoreError(f"cannot write {path}: {exc}", "check that the output is writable") from exc
    finally:
        if tmp is not None:
            try:
                os.remove(tmp)
            except OSError:
                pass


def write_commit(fs: fsspec.AbstractFileSystem, root: str, record: CommitRecord) -> None:
    """Publish a shard: the last write of an attempt. Replaces an earlier record."""
    put_whole(fs, commit_path(root, record.shard_id), record.to_json().encode())


def remove_commit(fs: fsspec.AbstractFileSystem, root: str, shard_id: str) -> None:
    """Withdraw a shard's commit record (its files become orphans, removed by the next cleanup)."""
    try:
        fs.rm_file(commit_path(root, check_shard_id(shard_id)))
    except FileNotFoundError:
        pass


def read_commit(output: str, shard_id: str, storage_options: dict | None = None) -> CommitRecord | None:
    """The commit record of one shard, or None if the shard is not committed."""
    fs, root = open_fs(output, storage_options)
    path = commit_path(root, check_shard_id(shard_id))
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        return None
    return CommitRecord.from_json(data, path)


def committed_shards(output: str, storage_options: dict | None = None) -> dict[str, CommitRecord]:
    """All committed shards of an output: ``{shard_id: commit record}`` (empty if none)."""
    fs, root = open_fs(output, storage_options)
    return list_commits(fs, root)


def list_commits(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, CommitRecord]:
    """:func:`committed_shards` on an open filesystem (fresh listing, no cache)."""
    directory = join(root, COMMIT_DIR)
    try:
        fs.invalidate_cache(directory)
        paths = [p for p in fs.ls(directory, detail=False) if p.endswith(".json")]
    except FileNotFoundError:
        return {}
    records: dict[str, CommitRecord] = {}
    for path, data in sorted(zip(paths, cat_many(fs, paths))):
        if isinstance(data, Exception):
            if isinstance(data, FileNotFoundError):
                continue
            raise StoreError(f"cannot read commit record {path}: {data}")
        record = CommitRecord.from_json(data, path)
        records[record.shard_id] = record
    return records


def is_attempt_name(name: str) -> bool:
    """Whether a folder name is one this tool gives an attempt (:func:`new_attempt_id`)."""
    return bool(_ATTEMPT.match(name))


def _real_dir(path: str) -> bool:
    """A directory that is not a symlink (deletion never goes through a link)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _attempt_folders(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, list[str]]:
    """Every attempt folder under ``shards/``: ``{relative prefix: its files}`` on object
    stores, ``{relative prefix: []}`` locally. Only names of this tool's forms count
    (``shards/<shard id>/<attempt id>``); locally, symlinks are never followed or listed."""
    base = join(root, SHARD_DIR)
    attempts: dict[str, list[str]] = {}
    if is_local(fs):
        if not _real_dir(base):
            return {}
        with os.scandir(base) as shards:
            for shard in shards:
                if not (_SHARD_ID.match(shard.name) and shard.is_dir(follow_symlinks=False)):
                    continue
                with os.scandir(shard.path) as entries:
                    for entry in entries:
                        if is_attempt_name(entry.name) and entry.is_dir(follow_symlinks=False):
                            attempts[f"{SHARD_DIR}/{shard.name}/{entry.name}"] = []
        return attempts
    try:
        fs.invalidate_cache(base)
        files = fs.find(base)
    except FileNotFoundError:
        return {}
    for path in files:
        parts = path[len(root) :].strip("/").split("/")
        if len(parts) >= 4 and _SHARD_ID.match(parts[1]) and is_attempt_name(parts[2]):
            attempts.setdefault("/".join(parts[:3]), []).append(path)
    return attempts


def _remove_attempts(fs: fsspec.AbstractFileSystem, root: str, attempts: dict[str, list[str]]) -> None:
    for prefix, files in sorted(attempts.items()):
        if files:
            fs.rm(files)
        else:
            path = join(root, prefix)
            if _real_dir(path):
                shutil.rmtree(path)  # removes links inside as links, never their targets
                try:
                    os.rmdir(os.path.dirname(path))  # the shard's folder, once it holds no attempt
                except OSError:
                    pass


def _remove_named(fs: fsspec.AbstractFileSystem, directory: str, ours: Iterable[re.Pattern[str]]) -> None:
    """Delete the plain files directly in ``directory`` whose names match one of ``ours``
    (never a symlink, never a folder), then the folder itself if that left it empty."""
    patterns = [*ours, _TEMP]
    if is_local(fs):
        if not _real_dir(directory):
            return
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False) and any(p.match(entry.name) for p in patterns):
                    os.remove(entry.path)
        try:
            os.rmdir(directory)
        except OSError:
            pass  # something that is not ours stays, and so does its folder
        return
    try:
        fs.invalidate_cache(directory)
        names = fs.ls(directory, detail=True)
    except FileNotFoundError:
        return
    doomed = [
        e["name"]
        for e in names
        if e.get("type") == "file" and any(p.match(e["name"].rsplit("/", 1)[-1]) for p in patterns)
    ]
    if doomed:
        fs.rm(doomed)


def remove_run_files(fs: fsspec.AbstractFileSystem, root: str, relative: str) -> None:
    """Delete what this tool wrote under ``root/relative`` and nothing else: one helper for
    ``--overwrite`` (the caller has checked that ``config.json`` is this tool's).

    ``_commits``: ``<shard id>.json``; ``shards``: attempt folders ``<shard id>/<attempt id>``;
    ``reports``: ``run-*.json``; ``plan``: ``videos.parquet``; ``_index``: its Parquet files;
    a file name (``config.json``): that file, if it is a plain file. Symlinks are never
    followed, and a user's file with another name stays where it is.
    """
    path = join(root, relative)
    patterns = _RUN_FILES.get(relative)
    if relative == SHARD_DIR:
        _remove_attempts(fs, root, _attempt_folders(fs, root))
        if is_local(fs):
            try:
                os.rmdir(path)
            except OSError:
                pass
    elif patterns is not None:
        _remove_named(fs, path, patterns)
    elif is_local(fs):
        if os.path.isfile(path) and not os.path.islink(path):
            os.remove(path)
    elif fs.isfile(path):
        fs.rm_file(path)


_RUN_FILES: dict[str, tuple[re.Pattern[str], ...]] = {
    COMMIT_DIR: (re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.json$"),),
    "reports": (re.compile(r"^run-[0-9]{8}T[0-9]{6}Z(-[0-9a-f]+)?\.json$"),),
    "plan": (re.compile(r"^videos\.parquet$"),),
    "_index": (re.compile(r"^shards\.parquet$"), re.compile(r"^videos-[0-9A-Za-z_-]+\.parquet$")),
}


def remove_orphans(
    output: str,
    storage_options: dict | None = None,
    *,
    live: set[str] | None = None,
    before: str | None = None,
) -> list[str]:
    """Delete attempt folders that no commit record names (crashed or superseded attempts).

    ``live``: the attempt prefixes to keep (default: those the commit records name).
    ``before``: only remove attempts started before this time (``%Y%m%dT%H%M%SZ``, the
    lease's start), so that attempts a live writer may still be writing are never touched.
    Without it, only safe when no writer is running on this output. One listing of the
    shard folders (two directory levels locally; one recursive listing on object stores).
    Only folders named as this tool names attempts are candidates, and symlinks are never
    followed. Returns the removed folders, relative to the output.
    """
    fs, root = open_fs(output, storage_options)
    if live is None:
        live = {rec.attempt_prefix for rec in list_commits(fs, root).values()}
    doomed = {
        prefix: files
        for prefix, files in _attempt_folders(fs, root).items()
        if prefix not in live and (before is None or prefix.rsplit("/", 1)[-1][:16] < before)
    }
    _remove_attempts(fs, root, doomed)
    return sorted(doomed)
