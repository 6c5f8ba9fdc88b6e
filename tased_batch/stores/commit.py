"""The commit record of a shard: the one typed record that makes an attempt's files count.

A shard's writer builds a :class:`CommitRecord` and publishes it as
``OUTPUT/_commits/<shard>.json`` as its last write; every reader (``status``, resume
planning, the index, ``open_results``) parses it back through :meth:`CommitRecord.from_json`.
``to_dict`` / ``from_dict`` are its one serialisation, so a field is added in one place and
a record of another tool or version is refused with the file named, never half-read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tased_batch.core.errors import StoreError

COMMIT_VERSION = 1


@dataclass(frozen=True)
class FileEntry:
    """One data file of an attempt: its path relative to the output, size and checksum."""

    path: str
    bytes: int
    sha256: str
    rows: int | None = None  # tables only

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "bytes": self.bytes, "sha256": self.sha256}
        if self.rows is not None:
            data["rows"] = self.rows
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileEntry:
        rows = data.get("rows")
        return cls(str(data["path"]), int(data["bytes"]), str(data["sha256"]), None if rows is None else int(rows))


@dataclass(frozen=True)
class FailureEntry:
    """A video of the shard that has no maps, and why (the same as its row in the video table)."""

    video_id: str
    source: str
    reason: str | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"video_id": self.video_id, "source": self.source, "reason": self.reason, "error": self.error}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FailureEntry:
        return cls(str(data["video_id"]), str(data.get("source") or ""), data.get("reason"), data.get("error"))


@dataclass(frozen=True)
class CommitRecord:
    """What a committed attempt of a shard holds and which run made it."""

    shard_id: str
    attempt: str
    attempt_prefix: str  # the attempt's folder, relative to the output
    format: str
    created: str
    tased_batch_version: str
    config_fingerprint: str
    weights: dict[str, Any]  # sha256, kind, uri (scrubbed) of the weights that made the maps
    run_info: dict[str, Any]  # the run's settings, as derived from the option schema
    model_size: tuple[int, int]
    store_size: tuple[int, int]
    video_ids: tuple[str, ...]  # in the shard's order
    n_ok: int
    n_failed: int
    n_maps: int
    failures: tuple[FailureEntry, ...]
    files: tuple[FileEntry, ...]
    resample: dict[str, str] = field(default_factory=lambda: {"store": "area", "read": "bilinear"})
    version: int = COMMIT_VERSION

    @property
    def n_videos(self) -> int:
        return len(self.video_ids)

    def file(self, name: str) -> FileEntry | None:
        """The listed file ``name`` of this attempt (relative to its folder), if any."""
        wanted = f"{self.attempt_prefix}/{name}"
        return next((f for f in self.files if f.path == wanted), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "shard_id": self.shard_id,
            "attempt": self.attempt,
            "attempt_prefix": self.attempt_prefix,
            "format": self.format,
            "created": self.created,
            "tased_batch_version": self.tased_batch_version,
            "config_fingerprint": self.config_fingerprint,
            "weights": self.weights,
            "run_info": self.run_info,
            "model_size": list(self.model_size),
            "store_size": list(self.store_size),
            "resample": self.resample,
            "video_ids": list(self.video_ids),
            "n_videos": self.n_videos,
            "n_ok": self.n_ok,
            "n_failed": self.n_failed,
            "n_maps": self.n_maps,
            "failures": [f.to_dict() for f in self.failures],
            "files": [f.to_dict() for f in self.files],
        }

    def to_json(self, *, compact: bool = False) -> str:
        if compact:
            return json.dumps(self.to_dict(), separators=(",", ":"))
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> CommitRecord:
        """Parse a record; anything that is not a whole v1 record is a StoreError naming ``where``."""
        if not isinstance(data, dict) or data.get("version") != COMMIT_VERSION or "files" not in data:
            raise StoreError(
                f"commit record {where} is not a tased-batch v{COMMIT_VERSION} record",
                "was this output written by another tool or version?",
            )
        try:
            video_ids = tuple(str(v) for v in data["video_ids"])
            if int(data.get("n_videos", len(video_ids))) != len(video_ids):
                raise ValueError("n_videos differs from the number of video ids")
            return cls(
                shard_id=str(data["shard_id"]),
                attempt=str(data["attempt"]),
                attempt_prefix=str(data["attempt_prefix"]),
                format=str(data["format"]),
                created=str(data.get("created", "")),
                tased_batch_version=str(data.get("tased_batch_version", "")),
                config_fingerprint=str(data["config_fingerprint"]),
                weights=dict(data.get("weights") or {}),
                run_info=dict(data.get("run_info") or {}),
                model_size=_size(data["model_size"]),
                store_size=_size(data["store_size"]),
                video_ids=video_ids,
                n_ok=int(data["n_ok"]),
                n_failed=int(data["n_failed"]),
                n_maps=int(data["n_maps"]),
                failures=tuple(FailureEntry.from_dict(f) for f in data.get("failures", [])),
                files=tuple(FileEntry.from_dict(f) for f in data["files"]),
                resample=dict(data.get("resample") or {"store": "area", "read": "bilinear"}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(
                f"commit record {where} is damaged ({type(exc).__name__}: {exc})", "delete it to redo that shard"
            ) from exc

    @classmethod
    def from_json(cls, data: bytes | str, where: str) -> CommitRecord:
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise StoreError(f"commit record {where} is not valid JSON", "delete it to redo that shard") from exc
        return cls.from_dict(parsed, where)


def _size(value: Any) -> tuple[int, int]:
    height, width = value
    return int(height), int(width)
