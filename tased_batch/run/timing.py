"""Where the time went: the actors' stage clocks summed per actor and per minute, and a verdict.

A verdict names the stage that limits (``model``, ``decode``, ``write`` or ``storage``), the
model's busy fraction (forward time over the actor's wall time) and one setting to change.
The actor's wall time splits into time the model waited for frames (``feed``: decoding or
fetching limits), time it waited for the writer's queue (``write_wait``: writing limits),
commits (``storage``) and the rest, which is the model's own work (forward,
post-processing, moving frames to the device): the largest share is the limit. When the
model waited for frames and fetching took longer than decoding, the object store is what
limits (``storage``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tased_batch.run.runrecords import StageTimes

LIMITS = ("model", "decode", "write", "storage")
MINUTE = 60.0


@dataclass(frozen=True)
class TimeVerdict:
    """Which stage limits, how busy the model was, and what to change."""

    limit: str
    model_busy: float
    stages: dict[str, float]
    advice: str
    seconds: float = 0.0  # actor wall time judged

    def to_dict(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "model_busy": round(self.model_busy, 4),
            "stages": {k: round(v, 3) for k, v in sorted(self.stages.items())},
            "advice": self.advice,
            "seconds": round(self.seconds, 3),
        }


def judge(stages: dict[str, float], wall: float, decode_workers: int, cpus: int | None) -> TimeVerdict:
    """The verdict on ``stages`` seconds (summed over actors) in ``wall`` actor-seconds."""
    get = stages.get
    wall = max(wall, get("feed", 0.0) + get("model", 0.0) + get("post", 0.0) + get("write_wait", 0.0), 1e-9)
    waited = get("feed", 0.0)
    storage_feed = waited if get("fetch", 0.0) > get("decode", 0.0) else 0.0
    shares = {
        "decode": waited - storage_feed,
        "write": get("write_wait", 0.0),
        "storage": get("commit", 0.0) + storage_feed,
    }
    shares["model"] = max(0.0, wall - waited - shares["write"] - get("commit", 0.0))
    limit = max(LIMITS, key=lambda name: shares[name])
    busy = min(1.0, get("model", 0.0) / wall)
    return TimeVerdict(
        limit, busy, dict(stages), _advice(limit, shares[limit] / wall, busy, decode_workers, cpus), wall
    )


def _advice(limit: str, share: float, busy: float, workers: int, cpus: int | None) -> str:
    if limit == "decode":
        idle = max(0, (cpus or 0) - 1 - workers)
        more = max(2, workers * 2) if not idle else min(workers + idle, max(2, workers * 2))
        where = f"; the actor has {idle} idle CPU(s)" if idle else ""
        return (
            f"decoding limits: the model waited for frames {share:.0%} of the time with {workers} decode "
            f"worker(s) per actor{where}: try `--decode-workers {more}`"
            + ("" if idle or cpus is None else " and more CPUs per actor (`--cpus-per-actor`)")
        )
    if limit == "write":
        return (
            f"writing limits: the model waited for the writer {share:.0%} of the time: try a smaller "
            "`--store-size` (fewer bytes to encode and upload) or another `--format`"
        )
    if limit == "storage":
        return (
            f"storage limits: fetching videos and committing shards took {share:.0%} of the time: run next to the "
            "object store (same region), or use larger shards (`--shard-size`) so that fewer commits are made"
        )
    return (
        f"the model limits (busy {busy:.0%} of the time): this is the device's pace; try `--precision bf16` "
        "(or fp16) on a GPU, or more actors (`--actors`, one per GPU)"
    )


@dataclass
class _Actor:
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    frames: int = 0
    decode_workers: int = 0
    cpus: int | None = None


def _add(into: dict[str, float], stages: dict[str, float]) -> None:
    for name, value in stages.items():
        into[name] = into.get(name, 0.0) + value


class TimeBook:
    """Sums :class:`StageTimes` per actor and per minute of the run (``now``: seconds since its start)."""

    def __init__(self) -> None:
        self.actors: dict[int, _Actor] = {}
        self.minutes: dict[tuple[int, int], _Actor] = {}  # (minute, actor) -> that minute's sums
        self.progress: dict[int, dict[str, int]] = {}  # minute -> frames and videos finished in it

    def add(self, event: StageTimes, now: float) -> None:
        for book in (self.actors.setdefault(event.actor, _Actor()), self._minute(event.actor, now)):
            book.seconds += event.seconds
            book.frames += event.frames
            book.decode_workers, book.cpus = event.decode_workers, event.cpus
            _add(book.stages, event.stages)

    def video(self, frames: int, failed: bool, now: float) -> None:
        entry = self.progress.setdefault(int(now // MINUTE), {"frames": 0, "videos": 0, "failed": 0})
        entry["frames"] += frames
        entry["videos"] += 1
        entry["failed"] += int(failed)

    def _minute(self, actor: int, now: float) -> _Actor:
        return self.minutes.setdefault((int(now // MINUTE), actor), _Actor())

    def verdicts(self) -> dict[str, TimeVerdict]:
        """Each actor's verdict, by actor index (as text, the JSON key)."""
        return {str(i): judge(a.stages, a.seconds, a.decode_workers, a.cpus) for i, a in sorted(self.actors.items())}

    def verdict(self) -> TimeVerdict | None:
        """The run's verdict over all actors (None before any stage times arrived)."""
        if not self.actors:
            return None
        total: dict[str, float] = {}
        for actor in self.actors.values():
            _add(total, actor.stages)
        first = next(iter(self.actors.values()))
        wall = sum(a.seconds for a in self.actors.values())
        return judge(total, wall, first.decode_workers, first.cpus)

    def timeline(self) -> list[dict[str, Any]]:
        """Per minute and actor: stage seconds and frames; per minute: frames and videos finished."""
        rows: list[dict[str, Any]] = [
            {
                "minute": minute,
                "actor": actor,
                "seconds": round(book.seconds, 3),
                "frames": book.frames,
                "stages": {k: round(v, 3) for k, v in sorted(book.stages.items())},
            }
            for (minute, actor), book in sorted(self.minutes.items())
        ]
        rows += [{"minute": m, "actor": None, **p} for m, p in sorted(self.progress.items())]
        return rows
