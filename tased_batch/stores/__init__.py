"""Result stores: Parquet, Zarr and PNG shard writers, commit records, and the reader.

Writers: :func:`open_shard_writer` returns a :class:`ShardWriter` for one attempt of one
shard; ``write`` each :class:`~tased_batch.core.records.VideoResult`, then ``commit``. Nothing
is visible until the commit record is written (see :mod:`tased_batch.stores.layout`).
Readers: :func:`tased_batch.open_results`. Formats and layout: ``docs/stores.md``.
"""

from __future__ import annotations

from typing import Any

from tased_batch.core.errors import StoreError
from tased_batch.stores.base import DEFAULT_STORE_FACTOR, ShardWriter, default_store_size
from tased_batch.stores.formats import STORE_FORMATS
from tased_batch.stores.layout import committed_shards, read_commit, remove_orphans
from tased_batch.stores.resample import parse_size

FORMATS = tuple(STORE_FORMATS)

__all__ = [
    "DEFAULT_STORE_FACTOR",
    "FORMATS",
    "ShardWriter",
    "committed_shards",
    "default_store_size",
    "open_shard_writer",
    "parse_size",
    "read_commit",
    "remove_orphans",
]


def open_shard_writer(
    output: str,
    shard_id: str,
    *,
    format: str = "parquet",
    store_size: tuple[int, int] | None = None,
    model_size: tuple[int, int],
    run_info: dict[str, Any],
    storage_options: dict | None = None,
    crop: str | None = None,
    fence: str | None = None,
) -> ShardWriter:
    """A writer for a fresh attempt of ``shard_id`` under ``output`` (any fsspec URI).

    ``store_size`` None means :func:`default_store_size` of ``model_size``. ``run_info``
    needs ``config_fingerprint`` and ``weights`` (``sha256``, ``kind``, ``uri``); it is
    recorded in the data and in the commit record. ``crop`` (an aspect ratio such as
    ``"9:16"``) adds a crop track per video (docs/summaries.md). ``fence``: the token of
    the output's lease the run holds; the commit is refused once another driver holds it.
    """
    if format not in STORE_FORMATS:
        raise StoreError(f"unknown output format {format!r}", f"use one of {', '.join(FORMATS)}")
    return STORE_FORMATS[format].writer()(
        output,
        shard_id,
        store_size=store_size,
        model_size=model_size,
        run_info=run_info,
        storage_options=storage_options,
        crop=crop,
        fence=fence,
    )
