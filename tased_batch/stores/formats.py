"""One object per store format: its shard writer, how a video's maps are read back, how its files are verified.

Adding a format is one module with a :class:`~tased_batch.stores.base.ShardWriter`
subclass, a ``read_maps`` function (and ``verify_files`` if its commit record does not list
every data object), plus one line here. Modules are imported on first use (zarr is optional).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tased_batch.stores.base import ShardWriter
    from tased_batch.stores.commit import CommitRecord
    from tased_batch.stores.files import StoreFiles


@dataclass(frozen=True)
class StoreFormat:
    name: str
    module: str
    writer_name: str

    def _module(self) -> ModuleType:
        return importlib.import_module(self.module)

    def writer(self) -> type[ShardWriter]:
        return getattr(self._module(), self.writer_name)

    def read_maps(
        self, results: StoreFiles, record: CommitRecord, info: dict[str, Any], shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(frame indices, timestamps, maps at stored size) of one committed video."""
        return self._module().read_maps(results, record, info, shape)

    def verify_files(self, results: StoreFiles, record: CommitRecord) -> None:
        """Checks beyond the commit record's own file list (e.g. PNGs listed in frames.parquet)."""
        verify = getattr(self._module(), "verify_files", None)
        if verify is not None:
            verify(results, record)


STORE_FORMATS = {
    f.name: f
    for f in (
        StoreFormat("parquet", "tased_batch.stores.parquet", "ParquetShardWriter"),
        StoreFormat("zarr", "tased_batch.stores.zarr_store", "ZarrShardWriter"),
        StoreFormat("png", "tased_batch.stores.png", "PngShardWriter"),
        StoreFormat("webdataset", "tased_batch.stores.webdataset_store", "WebDatasetShardWriter"),
        StoreFormat("lance", "tased_batch.stores.lance_store", "LanceShardWriter"),
        StoreFormat("webdataset-copy", "tased_batch.stores.webdataset_store", "WebDatasetCopyShardWriter"),
    )
}
