"""A store's files as its readers reach them: file system, root, committed paths, a small cache.

Each format's ``read_maps`` (and the summary tables' readers) take a :class:`StoreFiles`;
:class:`~tased_batch.stores.reader.Results` is one, so the reader builds on the formats and
never the other way round.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tased_batch.core.errors import StoreError
from tased_batch.stores import layout
from tased_batch.stores.commit import CommitRecord, FileEntry

# Open per-shard readers kept at once (each caches up to 4 Parquet row groups, ~32 MiB).
_CACHED_SHARDS = 4
REPAIR_HINT = "run `tased-batch verify OUTPUT --repair`, then `tased-batch resume OUTPUT` to redo that shard"


def damaged(record: CommitRecord, relative: str, why: str) -> StoreError:
    """The one error every reader raises for a committed file that is not what its record says."""
    return StoreError(f"shard {record.shard_id}: committed file {relative} {why}", REPAIR_HINT)


def check_size(fs: Any, root: str, record: CommitRecord, entry: FileEntry) -> str:
    """The file's full path, once it is there with the size its commit record names (one stat)."""
    path = layout.join(root, entry.path)
    try:
        size = fs.size(path)
    except FileNotFoundError:
        raise damaged(record, entry.path, "is missing") from None
    if size != entry.bytes:
        raise damaged(record, entry.path, f"has {size} bytes, its commit record says {entry.bytes}")
    return path


class StoreFiles:
    """The files under one output URI, read through fsspec the same way on disk and object stores."""

    def __init__(self, uri: str, storage_options: dict | None = None) -> None:
        self.uri = uri
        self.storage_options = storage_options
        self.fs, self.root = layout.open_fs(uri, storage_options)
        self._cache: OrderedDict[str, Any] = OrderedDict()

    def _file(self, record: CommitRecord, name: str) -> str:
        """A committed file's path, checked to be there at its recorded size."""
        entry = record.file(name)
        if entry is None:
            raise StoreError(f"commit record of shard {record.shard_id} names no {name}", REPAIR_HINT)
        return check_size(self.fs, self.root, record, entry)

    def _read_parquet(self, record: CommitRecord, name: str) -> pa.Table:
        path = self._file(record, name)
        try:
            return pq.ParquetFile(io.BytesIO(self.fs.cat_file(path))).read()  # read_table would import pandas
        except FileNotFoundError:
            raise damaged(record, path[len(self.root) :].lstrip("/"), "is missing") from None
        except (OSError, pa.ArrowException) as exc:
            raise damaged(record, path[len(self.root) :].lstrip("/"), f"cannot be read ({exc})") from None

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
