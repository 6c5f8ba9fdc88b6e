"""Lance store (pylance): ``OUTPUT/maps.lance`` (a row per map) and ``OUTPUT/videos.lance`` (a row per video).

Lance's workers-write, one-committer pattern: a shard's writer writes its rows as Lance
*fragments* (data files that no table version names yet) and lists them in the attempt's
``lance_fragments.json``, next to ``videos.parquet``, before its commit record. The
driver then appends the fragments of committed shards to both tables
(:func:`append_committed`, after a run and at every ``resume``), so a crash never leaves
half a shard visible: fragments of an uncommitted attempt are never named by a version.
Each table knows which attempts it holds (its ``attempt`` column), so a shard is appended
once however often the driver reconciles, and the rows of an attempt that a redo replaced
are deleted (a new table version) right after the new attempt's rows are appended.

``maps.lance`` columns: ``video_id``, ``frame_index``, ``timestamp``, ``height``, ``width``
(stored size), ``map`` (H*W uint8 bytes, row-major), the per-map statistics
(docs/summaries.md), ``shard_id``, ``attempt``. ``videos.lance`` has the videos table's
columns. A BTREE index on ``video_id`` is built on ``maps.lance`` when the driver appends,
so fetching one video's maps is one indexed lookup (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tased_batch.core.errors import StoreError
from tased_batch.core.records import VideoMeta
from tased_batch.stores import layout
from tased_batch.stores.base import VIDEOS_SCHEMA, ShardWriter, VideoMaps
from tased_batch.stores.commit import CommitRecord, FileEntry
from tased_batch.stores.summaries import FRAME_COLUMNS
from tased_batch.stores.summaries import fields as summary_fields

MAPS_TABLE = "maps.lance"
VIDEOS_TABLE = "videos.lance"
FRAGMENTS_FILE = "lance_fragments.json"

MAPS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("frame_index", pa.int64()),
        ("timestamp", pa.float64()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("map", pa.binary()),
        *summary_fields(FRAME_COLUMNS),
        ("shard_id", pa.string()),
        ("attempt", pa.string()),
    ]
)
FLUSH_BYTES = 64 << 20  # held map bytes written out as another fragment beyond this


def _lance() -> Any:
    try:
        import lance
    except ImportError as exc:
        raise StoreError(
            "--format lance needs pylance", "pip install 'tased-batch[lance]' (or pip install pylance)"
        ) from exc
    return lance


def table_uri(output: str, name: str) -> str:
    return f"{output.rstrip('/')}/{name}"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class _LanceVideo(VideoMaps):
    def __init__(self, writer: LanceShardWriter, video_id: str) -> None:
        self.writer = writer
        self.video_id = video_id
        self.tables: list[pa.Table] = []

    def append(self, frames: np.ndarray, times: np.ndarray, maps: np.ndarray, stats: pa.Table) -> None:
        n, h, w = maps.shape
        self.tables.append(
            pa.Table.from_arrays(
                [
                    pa.array([self.video_id] * n, pa.string()),
                    pa.array(frames, pa.int64()),
                    pa.array(times, pa.float64()),
                    pa.array(np.full(n, h, np.int32)),
                    pa.array(np.full(n, w, np.int32)),
                    pa.array([np.ascontiguousarray(m).tobytes() for m in maps], pa.binary()),
                    *(stats[c.name] for c in FRAME_COLUMNS),
                    pa.array([self.writer.shard_id] * n, pa.string()),
                    pa.array([self.writer.attempt] * n, pa.string()),
                ],
                schema=MAPS_SCHEMA,
            )
        )

    def close(self) -> str | None:
        self.writer._hold(self.tables)
        self.tables = []
        return None

    def discard(self) -> None:
        self.tables = []


class LanceShardWriter(ShardWriter):
    """Writes the shard's rows as uncommitted Lance fragments; the driver appends them once the shard is committed."""

    format = "lance"
    stats_in_maps = False  # also in frame_stats.parquet, so open_results reads them without Lance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _lance()
        self._held: list[pa.Table] = []
        self._held_bytes = 0
        self._maps_fragments: list[str] = []

    def _video_maps(self, video_id: str, source: str, meta: VideoMeta) -> VideoMaps:
        return _LanceVideo(self, video_id)

    def _write(self, table: pa.Table, name: str, schema: pa.Schema) -> list[str]:
        from lance.fragment import write_fragments

        fragments = write_fragments(table, table_uri(self.output, name), schema=schema)
        return [json.dumps(f.to_json()) for f in fragments]

    def _hold(self, tables: list[pa.Table]) -> None:
        self._held.extend(tables)
        self._held_bytes += sum(t.nbytes for t in tables)
        if self._held_bytes >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._held:
            self._maps_fragments += self._write(pa.concat_tables(self._held), MAPS_TABLE, MAPS_SCHEMA)
        self._held, self._held_bytes = [], 0

    def _finish(self) -> list[FileEntry]:
        self._flush()
        videos = self._write(self._videos_table().replace_schema_metadata(None), VIDEOS_TABLE, VIDEOS_SCHEMA)
        data = json.dumps({"maps": self._maps_fragments, "videos": videos}).encode()
        layout.put_whole(self.fs, self._path(FRAGMENTS_FILE), data)
        return [self._entry(FRAGMENTS_FILE, data)]


def _dataset(uri: str) -> Any | None:
    try:
        return _lance().dataset(uri)
    except (ValueError, FileNotFoundError, OSError):
        return None


def _attempts_in(dataset: Any | None) -> set[str]:
    if dataset is None:
        return set()
    column = dataset.to_table(columns=["attempt"])["attempt"]
    return set(pc.unique(column).to_pylist())


def append_committed(output: str, records: dict[str, CommitRecord], storage_options: dict | None = None) -> int:
    """Make both tables hold exactly the committed attempts' rows; returns the shards appended now.

    The driver's one-committer step: idempotent, so a crash at any point is repaired by the next call.
    """
    lance = _lance()
    from lance.fragment import FragmentMetadata

    fs, root = layout.open_fs(output, storage_options)
    live = {r.attempt: r for r in records.values() if r.format == "lance"}
    appended: set[str] = set()
    for name, schema in ((MAPS_TABLE, MAPS_SCHEMA), (VIDEOS_TABLE, VIDEOS_SCHEMA)):
        uri = table_uri(output, name)
        dataset = _dataset(uri)
        present = _attempts_in(dataset)
        missing = sorted(a for a in live if a not in present)
        fragments = []
        for attempt in missing:
            record = live[attempt]
            listed = json.loads(fs.cat_file(layout.join(root, record.attempt_prefix, FRAGMENTS_FILE)))
            fragments += [FragmentMetadata.from_json(f) for f in listed["maps" if name == MAPS_TABLE else "videos"]]
        if fragments or (dataset is None and missing):
            if dataset is None:
                operation = lance.LanceOperation.Overwrite(schema, fragments)
                dataset = lance.LanceDataset.commit(uri, operation)
            else:
                operation = lance.LanceOperation.Append(fragments)
                dataset = lance.LanceDataset.commit(uri, operation, read_version=dataset.version)
            appended.update(missing)
        stale = sorted(present - set(live))
        if stale and dataset is not None:
            dataset.delete(f"attempt IN ({', '.join(_quote(a) for a in stale)})")
        if name == MAPS_TABLE and dataset is not None and (fragments or stale) and dataset.count_rows():
            dataset.create_scalar_index("video_id", index_type="BTREE", replace=True)
    return len({live[a].shard_id for a in appended})


def read_maps(
    results: Any, record: CommitRecord, info: dict[str, Any], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One committed video's rows from ``maps.lance`` (by its id and the shard's committed attempt)."""
    if not info["n_maps"]:
        return np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros((0, *shape), np.uint8)
    dataset = results._cached("lance:maps", lambda: _dataset(table_uri(results.uri, MAPS_TABLE)))
    where = f"video_id = {_quote(info['video_id'])} AND attempt = {_quote(record.attempt)}"
    table = None if dataset is None else dataset.to_table(columns=["frame_index", "timestamp", "map"], filter=where)
    if table is None or table.num_rows != info["n_maps"]:
        raise StoreError(
            f"shard {record.shard_id} is committed but its rows are not in {MAPS_TABLE} yet",
            f"run `tased-batch resume {results.uri}` to append them",
        )
    table = table.sort_by("frame_index")
    maps = np.frombuffer(b"".join(table["map"].to_pylist()), np.uint8).reshape(table.num_rows, *shape)
    return table["frame_index"].to_numpy(), table["timestamp"].to_numpy(), maps
