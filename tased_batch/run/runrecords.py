"""Typed records of a run: progress events, per-video failures of any kind, the run report.

Each record has one serialisation (:func:`event_to_dict`, ``RunReport.to_dict``): actors
put :data:`ActorEvent` records on the progress queue and return :class:`ShardCommitted`,
the executor hands every event to the reporter, and the job writes the report from
:class:`RunReport`. Everything user-derived in them passes through
:func:`tased_batch.core.secrets.scrub` before it is written or printed.
"""

from __future__ import annotations

import traceback as tb
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from tased_batch.core.errors import TasedError
from tased_batch.core.records import VideoResult
from tased_batch.core.secrets import scrub, scrub_text
from tased_batch.stores.commit import CommitRecord

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


@dataclass(frozen=True)
class VideoStarted:
    """An actor began a video of a shard (the executor's deadline clock starts here)."""

    shard: str
    video_id: str
    event: ClassVar[str] = "start"


@dataclass(frozen=True)
class VideoProgress:
    """An actor delivered maps of a shard's video (at most every few seconds): it is not hung."""

    shard: str
    video_id: str
    maps: int
    event: ClassVar[str] = "progress"


@dataclass(frozen=True)
class VideoFinished:
    """One video's outcome as the actor saw it (the commit record is the truth)."""

    shard: str
    video_id: str
    status: str
    frames: int = 0
    reason: str | None = None
    error: str | None = None
    source: str | None = None
    traceback: str | None = None  # for the run report only; never in progress lines
    event: ClassVar[str] = "video"


@dataclass(frozen=True)
class StageTimes:
    """Seconds per stage (see :data:`tased_batch.core.clocks.STAGES`) an actor spent in ``seconds`` of wall time.

    Sent every few seconds and at the end of each shard; the driver sums them per actor and
    per minute and judges which stage limits (:mod:`tased_batch.run.timing`)."""

    actor: int
    seconds: float
    stages: dict[str, float]
    frames: int
    decode_workers: int
    cpus: int | None = None
    event: ClassVar[str] = "stages"

    def to_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "seconds": round(self.seconds, 4),
            "stages": {k: round(v, 4) for k, v in self.stages.items()},
            "frames": self.frames,
            "decode_workers": self.decode_workers,
            "cpus": self.cpus,
        }


@dataclass(frozen=True)
class RunStarted:
    """The driver has its actors."""

    actors: int
    resources: dict[str, Any]
    event: ClassVar[str] = "started"


@dataclass(frozen=True)
class ShardCommitted:
    """A shard's commit record landed (what the actor returns to the driver)."""

    shard: str
    record: CommitRecord
    seconds: float
    event: ClassVar[str] = "shard"

    def to_dict(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "videos": self.record.n_videos,
            "failed": self.record.n_failed,
            "maps": self.record.n_maps,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class ShardRetry:
    """A shard's attempt raised; it is handed out again after a backoff."""

    shard: str
    error: str
    event: ClassVar[str] = "shard_retry"


@dataclass(frozen=True)
class ShardFailed:
    """A shard used up its attempts this run; it stays pending for ``resume``."""

    shard: str
    error: str
    event: ClassVar[str] = "shard_failed"


@dataclass(frozen=True)
class ActorRestarted:
    """An actor died (or was killed past a deadline) and was replaced."""

    actor: int
    error: str
    event: ClassVar[str] = "actor_restarted"


@dataclass(frozen=True)
class VideoTimeout:
    """A video ran past its deadline; its actor is replaced and the video recorded ``timeout``."""

    shard: str
    video_id: str
    seconds: float
    event: ClassVar[str] = "video_timeout"

    def to_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, "video_id": self.video_id, "seconds": round(self.seconds, 1)}


@dataclass(frozen=True)
class Stalled:
    """Nothing progressed for ``--stall-timeout``: the run stops (exit 4)."""

    error: str
    event: ClassVar[str] = "stalled"


@dataclass(frozen=True)
class Note:
    """A line for the operator (lease waits and takeovers)."""

    message: str
    event: ClassVar[str] = "note"


ActorEvent = VideoStarted | VideoProgress | VideoFinished | StageTimes
ProgressEvent = (
    VideoStarted
    | VideoProgress
    | VideoFinished
    | StageTimes
    | RunStarted
    | ShardCommitted
    | ShardRetry
    | ShardFailed
    | ActorRestarted
    | VideoTimeout
    | Stalled
    | Note
)


def event_to_dict(event: ProgressEvent) -> dict[str, Any]:
    """The one serialisation of a progress event (JSON log lines); tracebacks stay in the report."""
    own = getattr(event, "to_dict", None)
    data = own() if own is not None else asdict(event)
    data.pop("traceback", None)
    return scrub({"event": event.event, **data})


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
    time: dict[str, Any] = field(default_factory=dict)  # the run's verdict (tased_batch.run.timing)
    actors: dict[str, Any] = field(default_factory=dict)  # each actor's verdict
    timeline: list[dict[str, Any]] = field(default_factory=list)  # per minute and actor: stages, frames, videos
    attempt: dict[str, Any] = field(default_factory=dict)  # which run of this output: first, resume, ...

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        summary = data.pop("summary")
        exit_code = data.pop("exit_code")
        return scrub({**data, **summary, "exit_code": exit_code})
