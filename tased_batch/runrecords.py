"""Typed records of a run: progress events, per-video failures of any kind, the run report.

Each record has one serialisation (``to_dict`` / ``from_dict``); the executor turns the
actors' event dicts into these at the boundary, the reporters show them, and the job
writes the report from :class:`RunReport`. Everything user-derived in them passes through
:func:`tased_batch.secrets.scrub` before it is written or printed.
"""

from __future__ import annotations

import traceback as tb
from dataclasses import asdict, dataclass, field
from typing import Any

from tased_batch.errors import TasedError
from tased_batch.records import VideoResult
from tased_batch.secrets import scrub, scrub_text

# Reasons the executor records for a video it will not hand to an actor again.
SKIP_REASONS = ("worker-crash", "timeout")


class StorageUnavailable(TasedError):
    """Storage errors outlasted the retries: the shard is left pending (never a committed failure)."""


def internal_error(video_id: str, source: str, exc: BaseException) -> tuple[VideoResult, str]:
    """Any exception while processing one video, as its failure (``internal-error``) and the traceback."""
    message = scrub_text(f"{type(exc).__name__}: {exc}")[:2000]
    trace = scrub_text("".join(tb.format_exception(type(exc), exc, exc.__traceback__)))[-20000:]
    result = VideoResult.failed(
        video_id,
        source,
        "internal-error",
        f"{message} (a bug or an input tased-batch cannot handle; see the run report's traceback)",
    )
    return result, trace


def skip_text(reason: str, message: str) -> str:
    """A skip entry the executor sends to an actor: ``"<reason>: <message>"``."""
    return f"{reason}: {message}"


def split_skip(text: str) -> tuple[str, str]:
    """``(reason, message)`` of a skip entry; entries without a known reason are worker crashes."""
    reason, sep, message = text.partition(": ")
    if sep and reason in SKIP_REASONS:
        return reason, message
    return "worker-crash", text


@dataclass
class VideoStarted:
    """An actor began a video of a shard (the executor's deadline clock starts here)."""

    shard: str
    video_id: str
    event: str = "start"


@dataclass
class VideoFinished:
    """One video's outcome as the actor saw it (the commit record is the truth)."""

    shard: str
    video_id: str
    status: str
    frames: int = 0
    reason: str | None = None
    error: str | None = None
    source: str | None = None
    traceback: str | None = None
    event: str = "video"


ProgressEvent = VideoStarted | VideoFinished


def event_from_dict(data: dict[str, Any]) -> ProgressEvent:
    """The one parser of the actors' progress events."""
    if data.get("event") == "start":
        return VideoStarted(shard=str(data["shard"]), video_id=str(data["video_id"]))
    return VideoFinished(
        shard=str(data["shard"]),
        video_id=str(data["video_id"]),
        status=str(data.get("status")),
        frames=int(data.get("frames") or 0),
        reason=data.get("reason"),
        error=data.get("error"),
        source=data.get("source"),
        traceback=data.get("traceback"),
    )


def event_to_dict(event: ProgressEvent) -> dict[str, Any]:
    """The one serialisation of a progress event (JSON log lines); tracebacks stay in the report."""
    data = asdict(event)
    data.pop("traceback", None)
    return scrub(data)


@dataclass
class InternalError:
    """A video that raised an unexpected exception, with its traceback (for the run report)."""

    shard: str
    video_id: str
    error: str | None
    traceback: str


@dataclass
class RunReport:
    """``reports/run-*.json`` and the final summary line: one record, one serialisation."""

    output: str
    started: str
    seconds: float
    weights: dict[str, Any]
    config_fingerprint: str
    shards_run: int
    frames_this_run: int
    frames_per_second: float
    actor_restarts: int
    unfinished_shards: dict[str, str]
    orphan_attempts_removed: int
    summary: dict[str, Any]
    exit_code: int
    stalled: str | None = None
    lease: dict[str, Any] = field(default_factory=dict)
    internal_errors: list[InternalError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        summary = data.pop("summary")
        exit_code = data.pop("exit_code")
        return scrub({**data, **summary, "exit_code": exit_code})
