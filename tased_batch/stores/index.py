"""A compact index of an output's commit records, so that metadata cost does not grow per shard.

``OUTPUT/_index/shards.parquet`` has one row per committed shard (its counts, its attempt,
its record as compact JSON and the listing tag the record had when it was folded);
``OUTPUT/_index/videos-<generation>.parquet`` is every indexed shard's video table, one
file. Readers (``status``, resume planning, ``open_results``) take one listing of
``_commits/``, read the index, and read only the records that are new or changed since the
index was written (their listing tag differs). The driver folds new records in from time to
time and at the end of a run; each fold writes a new videos file and then replaces
``shards.parquet`` whole (the switch is one atomic write), so a reader sees an old or a new
index, never a mix. A missing or damaged index only makes reading slower.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tased_batch.core.errors import StoreError
from tased_batch.stores import layout
from tased_batch.stores.commit import CommitRecord, FailureEntry

INDEX_DIR = "_index"
SHARDS_FILE = f"{INDEX_DIR}/shards.parquet"
RECORDS_PER_READ = 5000  # commit records fetched (concurrently) per batch
INDEX_VERSION = 2  # 2: attempt folder and failures are columns; readers that need neither skip the records

SHARDS_SCHEMA = pa.schema(
    [
        ("shard_id", pa.string()),
        ("tag", pa.string()),
        ("config_fingerprint", pa.string()),
        ("ids_digest", pa.string()),
        ("attempt_prefix", pa.string()),
        ("n_videos", pa.int64()),
        ("n_ok", pa.int64()),
        ("n_failed", pa.int64()),
        ("n_maps", pa.int64()),
        ("failures", pa.string()),
        ("record", pa.string()),
    ]
)


def ids_digest(video_ids: list[str]) -> str:
    """One short digest of a shard's video ids in order, to compare a record with the plan."""
    return hashlib.sha256("\x00".join(video_ids).encode()).hexdigest()[:24]


@dataclass
class ShardEntry:
    """One committed shard as the index and the records describe it (its record parsed on demand)."""

    shard_id: str
    tag: str
    config_fingerprint: str
    ids_digest: str
    attempt_prefix: str
    n_videos: int
    n_ok: int
    n_failed: int
    n_maps: int
    failures_json: str  # the record's failures as a JSON list ("[]" for most shards)
    record_json: str
    _record: CommitRecord | None = field(default=None, repr=False)
    _load: Callable[[], str] | None = field(default=None, repr=False)  # the JSON from the index, read on demand

    @property
    def record(self) -> CommitRecord:
        """The whole record, parsed on first use (an entry holds only its compact JSON until then)."""
        if self._record is None:
            self._record = CommitRecord.from_json(self.compact_json(), f"{SHARDS_FILE} (shard {self.shard_id})")
        return self._record

    @property
    def failures(self) -> tuple[FailureEntry, ...]:
        """The shard's failed videos, without parsing (or even reading) its whole record."""
        if not self.n_failed:
            return ()
        return tuple(FailureEntry.from_dict(f) for f in json.loads(self.failures_json))

    def compact_json(self) -> str:
        """The record as one line of JSON, as the index stores it."""
        if not self.record_json and self._load is not None:
            self.record_json = self._load()
        return self.record_json

    @classmethod
    def from_record(cls, record: CommitRecord, tag: str, data: bytes) -> ShardEntry:
        """An entry of a record read as ``data``: it keeps those bytes, not the parsed objects, so a
        scan of tens of thousands of fresh records stays small; only a fold makes them compact JSON."""
        return cls(
            shard_id=record.shard_id,
            tag=tag,
            config_fingerprint=record.config_fingerprint,
            ids_digest=ids_digest(list(record.video_ids)),
            attempt_prefix=record.attempt_prefix,
            n_videos=record.n_videos,
            n_ok=record.n_ok,
            n_failed=record.n_failed,
            n_maps=record.n_maps,
            failures_json=json.dumps([f.to_dict() for f in record.failures], separators=(",", ":")),
            record_json="",
            _load=functools.partial(_compact, data),
        )


def _compact(data: bytes) -> str:
    return json.dumps(json.loads(data), separators=(",", ":"))


@dataclass
class Commits:
    """Every commit record of an output: from the index where unchanged, read fresh otherwise."""

    entries: dict[str, ShardEntry]
    indexed_videos: pa.Table | None  # the index's video rows (of shards still in ``indexed``)
    indexed: set[str]  # shards whose entry (and video rows) come from the index
    fresh: set[str]  # shards whose record was read now (not in the index or changed since)


def _list_records(fs: Any, root: str) -> dict[str, str]:
    """``{shard_id: tag}`` for every commit record, in one listing (tag changes when a record is replaced)."""
    directory = layout.join(root, layout.COMMIT_DIR)
    found: dict[str, str] = {}
    if layout.is_local(fs):
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    if entry.name.endswith(".json") and not entry.name.startswith("."):
                        st = entry.stat()
                        found[entry.name[:-5]] = f"{st.st_mtime_ns}:{st.st_size}"
        except FileNotFoundError:
            pass
        return found
    try:
        fs.invalidate_cache(directory)
        infos = fs.ls(directory, detail=True)
    except FileNotFoundError:
        return found
    for info in infos:
        name = info["name"].rsplit("/", 1)[-1]
        if name.endswith(".json"):
            tag = info.get("ETag") or info.get("mtime") or info.get("LastModified") or ""
            found[name[:-5]] = f"{tag}:{info.get('size')}"
    return found


def _read_index(fs: Any, root: str) -> tuple[pa.Table, str, pq.ParquetFile] | None:
    """The shards table without its ``record`` column (read on demand from the returned file)."""
    try:
        data = fs.cat_file(layout.join(root, SHARDS_FILE))
        file = pq.ParquetFile(io.BytesIO(data))
        meta = file.schema_arrow.metadata or {}
        if meta.get(b"tased_batch.index_version") != str(INDEX_VERSION).encode():
            return None
        table = file.read(columns=[n for n in SHARDS_SCHEMA.names if n != "record"])
    except FileNotFoundError:
        return None
    except Exception:  # a damaged index only costs speed: fall back to the records
        return None
    return table, meta.get(b"tased_batch.videos", b"").decode(), file


class _LazyRecords:
    """The index's ``record`` column, read once, when the first entry's whole record is asked for."""

    def __init__(self, file: pq.ParquetFile, rows: list[int]) -> None:
        self._file, self._rows = file, rows
        self._column: pa.ChunkedArray | None = None

    def get(self, i: int) -> str:
        if self._column is None:
            column = self._file.read(columns=["record"]).column("record")
            self._column = column.take(pa.array(self._rows, pa.int64()))
        return str(self._column[i].as_py())


def scan(fs: Any, root: str, *, with_videos: bool = False) -> Commits:
    """Every commit record of the output, reading only those newer than the index."""
    listing = _list_records(fs, root)
    entries: dict[str, ShardEntry] = {}
    indexed: set[str] = set()
    videos: pa.Table | None = None
    found = _read_index(fs, root)
    if found is not None:
        table, videos_name, file = found
        tags = table.column("tag").to_pylist()
        ids = table.column("shard_id").to_pylist()
        keep = [i for i, (s, t) in enumerate(zip(ids, tags)) if listing.get(s) == t]
        if keep:
            rows = table.take(pa.array(keep, pa.int64())).to_pylist()
            records = _LazyRecords(file, keep)  # a record is read, and parsed, only when asked for
            for i, row in enumerate(rows):
                load: Callable[[], str] = functools.partial(records.get, i)
                failures = row.pop("failures")
                entries[row["shard_id"]] = ShardEntry(**row, failures_json=failures, record_json="", _load=load)
            indexed = set(entries)
        if with_videos and indexed:
            try:
                videos = pq.ParquetFile(io.BytesIO(fs.cat_file(layout.join(root, INDEX_DIR, videos_name)))).read()
            except (FileNotFoundError, OSError, pa.ArrowInvalid):
                videos, indexed = None, set()  # replaced by a concurrent fold: read the records instead
                entries = {}
            else:
                if len(indexed) < len(ids):
                    import pyarrow.compute as pc

                    videos = videos.filter(pc.is_in(videos["shard_id"], pa.array(sorted(indexed), pa.string())))
    fresh = sorted(s for s in listing if s not in indexed)
    for first in range(0, len(fresh), RECORDS_PER_READ):  # bounded: the bytes of one batch at a time
        batch = fresh[first : first + RECORDS_PER_READ]
        paths = [layout.commit_path(root, s) for s in batch]
        for shard_id, path, data in zip(batch, paths, layout.cat_many(fs, paths)):
            if isinstance(data, FileNotFoundError):
                continue
            if isinstance(data, Exception):
                raise StoreError(f"cannot read commit record {path}: {data}")
            record = CommitRecord.from_json(data, path)
            entries[record.shard_id] = ShardEntry.from_record(record, listing[shard_id], data)
    return Commits(entries, videos, indexed, set(fresh) & set(entries))


def read_videos_tables(fs: Any, root: str, entries: list[ShardEntry], batch: int = 2000) -> list[pa.Table]:
    """The ``videos.parquet`` of each shard, with today's columns (null where a shard predates them).

    Fetched concurrently and parsed in threads (Parquet decoding releases the GIL), ``batch``
    shards at a time, each batch joined into one table: tens of thousands of small tables (and
    all their bytes at once) would cost far more memory than their rows.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tased_batch.stores.base import VIDEOS_SCHEMA
    from tased_batch.stores.summaries import conform

    def parse(item: tuple[ShardEntry, str, bytes | Exception]) -> pa.Table:
        entry, path, data = item
        if isinstance(data, Exception):
            raise StoreError(
                f"committed file {path} of shard {entry.shard_id} cannot be read: {data}", "redo that shard"
            )
        return conform(pq.ParquetFile(io.BytesIO(data)).read(use_threads=False), VIDEOS_SCHEMA)

    tables = []
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1), "tased-index") as pool:
        for first in range(0, len(entries), batch):
            part = entries[first : first + batch]
            paths = [layout.join(root, e.attempt_prefix, "videos.parquet") for e in part]
            chunk = list(pool.map(parse, zip(part, paths, layout.cat_many(fs, paths))))
            tables.append(pa.concat_tables(chunk).combine_chunks())  # one buffer per column, not one per shard
    return tables


def write_index(fs: Any, root: str, entries: dict[str, ShardEntry], videos: pa.Table) -> None:
    """Write ``videos`` (rows of exactly ``entries``' shards) and then the shards table that names it."""
    from tased_batch.stores.base import table_bytes

    name = f"videos-{uuid.uuid4().hex[:12]}.parquet"
    layout.put_whole(fs, layout.join(root, INDEX_DIR, name), table_bytes(videos))
    ordered = [entries[s] for s in sorted(entries)]
    table = pa.table(
        {
            "shard_id": [e.shard_id for e in ordered],
            "tag": [e.tag for e in ordered],
            "config_fingerprint": [e.config_fingerprint for e in ordered],
            "ids_digest": [e.ids_digest for e in ordered],
            "attempt_prefix": [e.attempt_prefix for e in ordered],
            "n_videos": [e.n_videos for e in ordered],
            "n_ok": [e.n_ok for e in ordered],
            "n_failed": [e.n_failed for e in ordered],
            "n_maps": [e.n_maps for e in ordered],
            "failures": [e.failures_json for e in ordered],
            "record": [e.compact_json() for e in ordered],
        },
        schema=SHARDS_SCHEMA,
    ).replace_schema_metadata(
        {b"tased_batch.index_version": str(INDEX_VERSION).encode(), b"tased_batch.videos": name.encode()}
    )
    layout.put_whole(fs, layout.join(root, SHARDS_FILE), table_bytes(table))
    try:  # the videos files of earlier folds (and of older index versions) are no longer named
        fs.invalidate_cache(layout.join(root, INDEX_DIR))
        for path in fs.ls(layout.join(root, INDEX_DIR), detail=False):
            base = path.rstrip("/").rsplit("/", 1)[-1]
            if base.startswith("videos-") and base.endswith(".parquet") and base != name:
                fs.rm_file(path)
    except (FileNotFoundError, OSError):
        pass


def fold(fs: Any, root: str) -> Commits:
    """Fold every record into the index (only new ones are read); returns the folded view.

    Only the driver that holds the output's lease calls this.
    """
    commits = scan(fs, root, with_videos=True)
    if not commits.fresh and commits.indexed == set(commits.entries) and found_index(fs, root):
        return commits
    fresh = [commits.entries[s] for s in sorted(commits.fresh)]
    from tased_batch.stores.base import VIDEOS_SCHEMA
    from tased_batch.stores.summaries import conform

    indexed = [conform(commits.indexed_videos, VIDEOS_SCHEMA)] if commits.indexed_videos is not None else []
    tables = indexed + read_videos_tables(fs, root, fresh)  # an index written by an older version gains the columns

    videos = pa.concat_tables(tables) if tables else VIDEOS_SCHEMA.empty_table()
    write_index(fs, root, commits.entries, videos)
    return Commits(commits.entries, videos, set(commits.entries), set())


def found_index(fs: Any, root: str) -> bool:
    return _read_index(fs, root) is not None
