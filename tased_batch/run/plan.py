"""Planning and resume state: sources -> shards, the stored config, and what is left to do.

Under OUTPUT the planner keeps ``config.json`` (the run's config and its fingerprint) and
``plan/videos.parquet`` (every video with its shard). A shard is done when its commit
record exists (see :mod:`tased_batch.stores.layout`); everything else is pending. A
re-run or ``resume`` reuses the stored plan, so the same video always lands in the same
shard and nothing is processed twice.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tased_batch.config import RunConfig, differences, fingerprint
from tased_batch.core.errors import ConfigError, OutputFull, StateError, StoreError
from tased_batch.core.secrets import scrub
from tased_batch.decode.sources import VideoSource, is_tar, iter_sources
from tased_batch.stores.index import INDEX_DIR, ShardEntry, ids_digest, scan
from tased_batch.stores.layout import COMMIT_DIR, SHARD_DIR, open_fs, put_whole, remove_run_files

CONFIG_FILE = "config.json"
PLAN_FILE = "plan/videos.parquet"
# config.json's mark that this tool wrote it: --overwrite deletes nothing in a folder without it.
WRITTEN_BY = "tased-batch"
DAMAGED_HINT = (
    "if this folder holds a run of tased-batch, delete that file and run the same command again "
    "(finished shards are kept by their commit records); otherwise choose an OUTPUT folder of its own"
)

PLAN_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("uri", pa.string()),
        ("member", pa.string()),
        ("offset", pa.int64()),
        ("size", pa.int64()),
        ("shard", pa.string()),
    ]
)


def shard_name(index: int) -> str:
    return f"{index:06d}"


@dataclass
class Plan:
    """Every video of the run and the shard it belongs to (videos of a shard are contiguous)."""

    table: pa.Table
    shard_ids: list[str]
    offsets: list[int]  # row where each shard starts; offsets[-1] == number of videos
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {s: i for i, s in enumerate(self.shard_ids)}

    @property
    def n_videos(self) -> int:
        return self.table.num_rows

    def videos(self, shard_id: str) -> list[VideoSource]:
        i = self._index[shard_id]
        rows = self.table.slice(self.offsets[i], self.offsets[i + 1] - self.offsets[i]).to_pylist()
        return [VideoSource(r["video_id"], r["uri"], r["member"], r["offset"], r["size"]) for r in rows]

    def shard_sizes(self) -> dict[str, int]:
        return {s: self.offsets[i + 1] - self.offsets[i] for i, s in enumerate(self.shard_ids)}

    def ids_digests(self) -> dict[str, str]:
        """Each shard's video ids as one digest, to check commit records against the plan."""
        ids = self.table.column("video_id").to_pylist()
        return {s: ids_digest(ids[self.offsets[i] : self.offsets[i + 1]]) for i, s in enumerate(self.shard_ids)}


def _plan_from_table(table: pa.Table) -> Plan:
    """Shard ids and where each starts (a shard's rows are contiguous), without a Python loop per video."""
    import pyarrow.compute as pc

    runs = pc.run_end_encode(table.column("shard").combine_chunks())
    ids = runs.values.to_pylist()
    ends = runs.run_ends.to_pylist()
    return Plan(table, ids, [0, *ends] if ids else [0])


def _tar_shard(config: RunConfig) -> Callable[[VideoSource], str] | None:
    """With ``--format webdataset`` (or ``webdataset-copy``) a shard is one input tar (its output tar is aligned with it)."""
    if not config.format.startswith("webdataset"):
        return None
    from tased_batch.stores.webdataset_store import TarShardIds

    ids = TarShardIds()

    def shard(src: VideoSource) -> str:
        if src.member is None and not is_tar(src.uri):
            raise ConfigError(
                f"--format webdataset writes one tar per input tar, but {src.display} is not in a tar",
                "give tar shards as the input, or use another --format",
            )
        return ids(src.uri)

    return shard


def build_plan(config: RunConfig) -> Plan:
    """List the sources (streaming) and cut them into shards of ``shard_size`` videos (or one per input tar)."""
    by_tar = _tar_shard(config)
    batch = 100_000
    columns: dict[str, list] = {name: [] for name in PLAN_SCHEMA.names}
    tables: list[pa.Table] = []
    count = 0
    for src in iter_sources(
        config.input,
        url_col=config.url_col,
        id_col=config.id_col,
        storage_options=config.storage_options,
        bytes_col=config.bytes_col,
    ):
        columns["video_id"].append(src.video_id)
        columns["uri"].append(src.uri)
        columns["member"].append(src.member)
        columns["offset"].append(src.offset)
        columns["size"].append(src.size)
        columns["shard"].append(shard_name(count // config.shard_size) if by_tar is None else by_tar(src))
        count += 1
        if len(columns["video_id"]) >= batch:
            tables.append(pa.table(columns, schema=PLAN_SCHEMA))
            columns = {name: [] for name in PLAN_SCHEMA.names}
    tables.append(pa.table(columns, schema=PLAN_SCHEMA))
    table = pa.concat_tables(tables)
    if table.num_rows == 0:
        raise ConfigError(f"no videos found in {config.input}", "check the path, the glob or the manifest's URL column")
    return _plan_from_table(table)


def public_config(config: RunConfig) -> dict[str, Any]:
    """The config as stored under OUTPUT: credentials (at any depth, in URLs too) are never written."""
    return scrub(config.to_dict())


@dataclass
class RunState:
    """Which shards are done and which are pending, from the commit records checked against the run.

    A record counts only when its config fingerprint is the run's and its video ids are the
    plan's for that shard; any other record is ``stale`` (its shard is pending).
    """

    plan: Plan
    entries: dict[str, ShardEntry] = field(default_factory=dict)
    fingerprint: str | None = None
    records: dict[str, ShardEntry] = field(init=False)
    stale: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        digests = self.plan.ids_digests()
        self.records, self.stale = {}, {}
        for shard_id, entry in self.entries.items():
            if shard_id not in digests:
                self.stale[shard_id] = "the plan has no such shard"
            elif self.fingerprint is not None and entry.config_fingerprint != self.fingerprint:
                self.stale[shard_id] = (
                    f"written with config {entry.config_fingerprint}, this run's is {self.fingerprint}"
                )
            elif entry.ids_digest != digests[shard_id]:
                self.stale[shard_id] = "its video ids are not the plan's videos of this shard"
            else:
                self.records[shard_id] = entry

    @property
    def unplanned(self) -> list[str]:
        """Records of shards the plan does not have (it was rebuilt from a changed input): no
        run will ever redo them, so the run withdraws them."""
        return sorted(s for s in self.stale if s not in self.plan._index)

    @property
    def done(self) -> list[str]:
        return [s for s in self.plan.shard_ids if s in self.records]

    @property
    def pending(self) -> list[str]:
        return [s for s in self.plan.shard_ids if s not in self.records]

    def with_failures(self) -> list[str]:
        return [s for s in self.done if self.records[s].n_failed > 0]

    def summary(self) -> dict[str, Any]:
        done = self.done
        sizes = self.plan.shard_sizes()
        failures = [f for s in done for f in self.records[s].failures]
        n_failed = sum(self.records[s].n_failed for s in done)
        n_ok = sum(self.records[s].n_ok for s in done)
        by_reason: dict[str, int] = {}
        for f in failures:
            by_reason[f.reason or "unknown"] = by_reason.get(f.reason or "unknown", 0) + 1
        return {
            "shards": {
                "total": len(self.plan.shard_ids),
                "done": len(done),
                "pending": len(self.plan.shard_ids) - len(done),
            },
            "videos": {
                "total": self.plan.n_videos,
                "done": n_ok,
                "failed": n_failed,
                "pending": sum(sizes[s] for s in self.pending),
            },
            "frames_done": int(sum(self.records[s].n_maps for s in done)),
            "failures": [f.to_dict() for f in failures],
            "failures_by_reason": by_reason,
            "stale_records": [{"shard": s, "reason": why} for s, why in sorted(self.stale.items())],
        }


class Output:
    """The planner's view of an output URI: its stored config, plan and commit records."""

    def __init__(self, uri: str, storage_options: dict | None = None) -> None:
        self.uri = uri
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = open_fs(uri, self.storage_options)

    def _path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def stored_config(self) -> dict[str, Any] | None:
        """The run's ``config.json`` (None: there is none), checked to be this tool's and whole.

        Raises :class:`StateError` naming the file when it is damaged or another program's.
        """
        path = self._path(CONFIG_FILE)
        try:
            with self.fs.open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            data = b""
        return check_stored_config(data, path)

    def load_plan(self) -> Plan | None:
        path = self._path(PLAN_FILE)
        try:
            with self.fs.open(path, "rb") as f:
                table = pq.ParquetFile(f).read()  # read_table would import pyarrow.dataset and pandas
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowException) as exc:
            raise StateError(f"{path} is damaged ({exc})", DAMAGED_HINT) from exc
        if table.schema.names != PLAN_SCHEMA.names:
            raise StateError(f"{path} is not a plan of tased-batch (columns {table.schema.names})", DAMAGED_HINT)
        try:
            table = table.cast(PLAN_SCHEMA)
        except (pa.ArrowException, ValueError) as exc:
            raise StateError(f"{path} is damaged (wrongly typed columns: {exc})", DAMAGED_HINT) from exc
        return _plan_from_table(table)

    def save(self, config: RunConfig, fields: dict[str, Any], plan: Plan) -> None:
        """Write the plan, then the config that points at it (the config marks a usable plan).

        Signed URLs in the plan are stored scrubbed; a later run re-lists the input for them.
        """
        import io

        table = plan.table
        uris = table.column("uri").to_pylist()
        clean = [scrub(u) if isinstance(u, str) else u for u in uris]
        redacted = clean != uris
        if redacted:
            table = table.set_column(table.schema.get_field_index("uri"), "uri", pa.array(clean, pa.string()))
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        put_whole(self.fs, self._path(PLAN_FILE), buffer.getvalue())
        record = {
            "written_by": WRITTEN_BY,
            "config": public_config(config),
            "fingerprint": fingerprint(fields),
            "fingerprint_fields": fields,
            "n_videos": plan.n_videos,
            "n_shards": len(plan.shard_ids),
            "plan_redacted": redacted,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        put_whole(self.fs, self._path(CONFIG_FILE), json.dumps(record, indent=2).encode())

    def state(self, plan: Plan, config_fingerprint: str | None = None) -> RunState:
        """Done and pending shards; records of another config or another plan do not count."""
        if config_fingerprint is None:
            stored = self.stored_config() or {}
            config_fingerprint = stored.get("fingerprint")
        return RunState(plan, scan(self.fs, self.root).entries, config_fingerprint)

    def check_writable(self) -> None:
        probe = self._path(f"_probe-{uuid.uuid4().hex[:8]}")
        try:
            self.fs.makedirs(self.root, exist_ok=True)
            put_whole(self.fs, probe, b"ok")
            self.fs.rm(probe)
        except OutputFull:
            raise
        except Exception as e:
            raise StoreError(
                f"output {self.uri} is not writable: {e}", "check the path, permissions or credentials"
            ) from e

    def clear(self) -> None:
        """Remove a previous run (``--overwrite``): its commit records and index first, config last.

        In that order an interrupted clear leaves no record that a new config could count, and
        the old config.json still asks for ``--overwrite``, so running it again finishes the job.
        Only what this tool wrote goes (:func:`~tased_batch.stores.layout.remove_run_files`):
        a user's files under ``reports/`` or ``plan/`` stay, and symlinks are never followed.
        """
        if self.stored_config() is None:
            raise StateError(
                f"{self.uri} holds no run of tased-batch (no config.json), so --overwrite deletes nothing there",
                "run without --overwrite",
            )
        for relative in (INDEX_DIR, COMMIT_DIR, SHARD_DIR, "reports", "plan", CONFIG_FILE):
            remove_run_files(self.fs, self.root, relative)


def check_stored_config(data: bytes, path: str) -> dict[str, Any]:
    """``config.json``'s content if it is a whole config of this tool, else a one-line :class:`StateError`.

    Configs of earlier versions carry no ``written_by`` mark; they are recognised by their fields.
    """
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        why = "it is empty" if not data.strip() else f"not JSON: {exc}"
        raise StateError(f"{path} is damaged or not tased-batch's ({why})", DAMAGED_HINT) from None
    if not isinstance(record, dict) or (record.get("written_by") != WRITTEN_BY and "fingerprint_fields" not in record):
        raise StateError(f"{path} was not written by tased-batch", "choose an OUTPUT folder of its own")
    expected = {"config": dict, "fingerprint": str, "fingerprint_fields": dict}
    wrong = [k for k, kind in expected.items() if not isinstance(record.get(k), kind)]
    if wrong:
        raise StateError(f"{path} is damaged (missing or wrongly typed: {', '.join(wrong)})", DAMAGED_HINT)
    return record


def check_apart(input_uri: str, output_uri: str, storage_options: dict | None = None) -> None:
    """Refuse an OUTPUT equal to INPUT or inside it: a later listing would take the run's own
    files for videos, and ``--overwrite`` would delete files the run is reading."""
    from fsspec.core import url_to_fs

    try:
        in_fs, in_path = url_to_fs(input_uri, **(storage_options or {}))
        out_fs, out_path = url_to_fs(output_uri, **(storage_options or {}))
    except (ValueError, ImportError):
        return  # the listing and the store report a bad URI themselves
    if in_fs.protocol != out_fs.protocol:
        return
    parts = in_path.rstrip("/").split("/")
    glob = next((i for i, p in enumerate(parts) if any(c in p for c in "*[")), None)
    base = "/".join(parts[:glob]) if glob is not None else in_path.rstrip("/")
    from tased_batch.stores.layout import is_local

    if is_local(out_fs):
        import os

        if glob is None and not os.path.isdir(base) and os.path.realpath(base) != os.path.realpath(out_path):
            return  # a manifest or a tar file: only the file itself is read
        base, out_path = os.path.realpath(base or "/"), os.path.realpath(out_path)
    elif glob is None and not in_fs.isdir(base) and base != out_path.rstrip("/"):
        return
    base, out_path = base.rstrip("/"), out_path.rstrip("/")
    if out_path == base or out_path.startswith(base + "/"):
        where = "is the input" if out_path == base else "is inside the input"
        raise ConfigError(
            f"OUTPUT {output_uri} {where} {input_uri}",
            "write to a folder outside the input (a second run would list the first run's files as videos)",
        )


def prepare(config: RunConfig, weights_sha256: str, *, persist: bool = True) -> tuple[Output, Plan, dict[str, Any]]:
    """Plan a run or pick up the stored plan; refuse a changed config unless ``overwrite``.

    Returns the output, the plan and the fingerprinted fields.
    """
    check_apart(config.input, config.output, config.storage_options)
    output = Output(config.output, config.storage_options)
    fields = scrub(config.fingerprint_fields(weights_sha256))
    stored = output.stored_config()
    if stored is not None and not config.overwrite:
        diff = differences(stored.get("fingerprint_fields", {}), fields)
        if diff:
            raise ConfigError(
                f"{config.output} holds a run with a different config: " + "; ".join(diff),
                "rerun with the original options, write to a new OUTPUT, or pass --overwrite to start over",
            )
        plan = output.load_plan()
        if plan is not None and stored.get("plan_redacted"):
            plan = _relist(config, plan)
        if plan is not None:
            return output, plan, fields
    plan = build_plan(config)
    if persist:
        if config.overwrite and stored is not None:
            output.clear()
        output.save(config, fields, plan)
    return output, plan, fields


def _relist(config: RunConfig, stored: Plan) -> Plan:
    """The stored plan had signed URLs (stored scrubbed): list the input again for them."""
    fresh = build_plan(config)
    same = fresh.table.column("video_id").equals(stored.table.column("video_id")) and fresh.table.column(
        "shard"
    ).equals(stored.table.column("shard"))
    if not same:
        raise ConfigError(
            f"{config.input} lists other videos than the stored plan of {config.output}",
            "rerun with the original input, or pass --overwrite to start over",
        )
    return fresh
