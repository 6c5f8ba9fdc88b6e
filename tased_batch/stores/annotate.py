"""Add a finished store's per-video summaries to the user's own clip table, keyed by id.

Columns are versioned by the weights that made the maps, ``saliency_tased_<8 hex of the
weights' sha256>_<summary>`` (e.g. ``saliency_tased_1a2b3c4d_focus``), so the columns of
other weights or models sit side by side. A Lance table gets them in place as a new table
version (Lance's ``merge`` adds columns without rewriting the existing ones; the old
version stays readable); a Parquet table gets a joined copy, its rows in their order.
Rows are matched only by id: an id without a committed video gets nulls and is counted.
A table that already holds these columns is left as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tased_batch.core.errors import ConfigError, StoreError
from tased_batch.stores.reader import open_results
from tased_batch.stores.summaries import VIDEO_COLUMNS

PREFIX = "saliency_tased"
_KEY = "__tased_video_id"
_ROW = "__tased_row"


@dataclass(frozen=True)
class AnnotateResult:
    """What ``annotate`` did: where, which columns, how many rows matched or did not."""

    table: str
    written: str | None  # the table written (Lance: the same table; Parquet: the copy); None: nothing changed
    columns: tuple[str, ...]
    rows: int
    matched: int
    unmatched: int
    version: int | None = None  # the Lance table's new version


def column_names(weights_sha256: str) -> dict[str, str]:
    """Summary column -> its versioned name in the user's table."""
    return {c.name: f"{PREFIX}_{weights_sha256[:8]}_{c.name}" for c in VIDEO_COLUMNS}


def _summaries(output: str, storage_options: dict | None) -> tuple[pa.Table, dict[str, str]]:
    videos = open_results(output, storage_options).videos()
    shas = sorted(set(videos["weights_sha256"].to_pylist()))
    if len(shas) != 1:
        raise StoreError(f"{output} holds maps of {len(shas)} sets of weights", "annotate from a store of one run")
    names = column_names(shas[0])
    keep = videos.filter(pc.equal(videos["status"], "ok"))
    table = pa.table({_KEY: keep["video_id"], **{names[c]: keep[c] for c in names}})
    return table, names


def _check_ids(table_path: str, schema: pa.Schema, id_col: str) -> None:
    if id_col not in schema.names:
        raise ConfigError(
            f"{table_path} has no column {id_col!r}", f"pass --id-col with one of: {', '.join(schema.names[:12])}"
        )


def _counts(ids: pa.ChunkedArray, known: pa.Array) -> tuple[int, int]:
    matched = int(pc.sum(pc.is_in(pc.cast(ids, pa.string()), value_set=known)).as_py() or 0)
    return matched, len(ids) - matched


def annotate(
    table: str, output: str, id_col: str, *, out: str | None = None, storage_options: dict | None = None
) -> AnnotateResult:
    """Add the summaries of ``output`` to ``table`` (``.lance``: in place; ``.parquet``: a copy at ``out``)."""
    summaries, names = _summaries(output, storage_options)
    new = tuple(names.values())
    known = summaries[_KEY].combine_chunks()
    if table.rstrip("/").endswith(".lance"):
        return _annotate_lance(table, id_col, summaries, new, known)
    if table.endswith(".parquet"):
        return _annotate_parquet(table, id_col, summaries, new, known, out)
    raise ConfigError(f"cannot annotate {table}", "give a Lance table (.lance) or a Parquet file (.parquet)")


def _annotate_lance(
    table: str, id_col: str, summaries: pa.Table, new: tuple[str, ...], known: pa.Array
) -> AnnotateResult:
    try:
        import lance
    except ImportError as exc:
        raise ConfigError("annotating a Lance table needs pylance", "pip install 'tased-batch[lance]'") from exc
    try:
        dataset = lance.dataset(table)
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise ConfigError(f"cannot open Lance table {table}: {exc}", "check the path") from exc
    _check_ids(table, dataset.schema, id_col)
    ids = dataset.to_table(columns=[id_col])[id_col]
    matched, unmatched = _counts(ids, known)
    if all(name in dataset.schema.names for name in new):
        return AnnotateResult(table, None, new, len(ids), matched, unmatched, dataset.version)
    id_type = dataset.schema.field(id_col).type
    right = summaries.set_column(0, _KEY, pc.cast(summaries[_KEY], id_type)) if id_type != pa.string() else summaries
    dataset.merge(right, left_on=id_col, right_on=_KEY)
    dataset = lance.dataset(table)
    extra = [n for n in dataset.schema.names if n == _KEY]
    if extra:
        dataset.drop_columns(extra)
        dataset = lance.dataset(table)
    return AnnotateResult(table, table, new, len(ids), matched, unmatched, dataset.version)


def _annotate_parquet(
    table: str, id_col: str, summaries: pa.Table, new: tuple[str, ...], known: pa.Array, out: str | None
) -> AnnotateResult:
    if "://" in table:
        raise ConfigError(f"{table}: Parquet tables are annotated from local disk", "download it, or use a Lance table")
    try:
        data = pq.read_table(table)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ConfigError(f"cannot read Parquet table {table}: {exc}", "check the path") from exc
    _check_ids(table, data.schema, id_col)
    matched, unmatched = _counts(data[id_col], known)
    if all(name in data.schema.names for name in new):
        return AnnotateResult(table, None, new, data.num_rows, matched, unmatched)
    target = out or f"{table[: -len('.parquet')]}.saliency.parquet"
    if "://" in target:
        raise ConfigError(f"cannot write the joined copy to {target}", "give --out a local path (then copy it up)")
    if os.path.abspath(target) == os.path.abspath(table):
        raise ConfigError(
            f"--out {target} is the input table", "the Parquet table is never rewritten; pick another path"
        )
    keyed = data.append_column(_ROW, pa.array(range(data.num_rows), pa.int64()))
    keyed = keyed.append_column(_KEY, pc.cast(data[id_col], pa.string()))
    joined = keyed.join(summaries, keys=_KEY, join_type="left outer").sort_by(_ROW)
    joined = joined.drop_columns([_ROW, _KEY]).select([*data.schema.names, *new])
    joined = joined.replace_schema_metadata(data.schema.metadata)
    tmp = f"{target}.tmp-{os.getpid()}"
    pq.write_table(joined, tmp, compression="zstd")
    os.replace(tmp, target)
    return AnnotateResult(table, target, new, data.num_rows, matched, unmatched)
