"""What the driver shows while a run goes: a rich progress display, JSON lines, or nothing.

Every reporter receives the same typed events from the executor; the final summary and the
JSON run report are built from the commit records, not from these events. Ids, paths and
errors are user-derived text: they are printed as plain text, never as rich markup, and
scrubbed of secrets.
"""

from __future__ import annotations

import json
import sys
import time

from tased_batch.core.secrets import plain, scrub
from tased_batch.run.runrecords import (
    ActorRestarted,
    Note,
    ProgressEvent,
    RunStarted,
    ShardCommitted,
    ShardFailed,
    ShardRetry,
    StageTimes,
    Stalled,
    VideoFinished,
    VideoTimeout,
    event_to_dict,
)
from tased_batch.run.timing import TimeBook


class Reporter:
    """Counts events; subclasses decide how to show them."""

    def __init__(self, total_shards: int, total_videos: int) -> None:
        self.total_shards = total_shards
        self.total_videos = total_videos
        self.shards_done = 0
        # Committed shards' counts, and the videos of attempts still running by shard and id: a
        # redone video (shard retried, actor replaced) replaces its earlier count instead of adding one.
        self._committed = {"videos": 0, "failed": 0, "frames": 0}
        self._open: dict[str, dict[str, tuple[int, bool]]] = {}
        self.start = time.monotonic()
        self.book = TimeBook()  # stage clocks per actor and per minute, progress per minute

    @property
    def videos_done(self) -> int:
        return self._committed["videos"] + sum(len(v) for v in self._open.values())

    @property
    def videos_failed(self) -> int:
        return self._committed["failed"] + sum(failed for v in self._open.values() for _, failed in v.values())

    @property
    def frames(self) -> int:
        """Maps made so far, in committed shards and in the attempts running now (the display's count)."""
        return self._committed["frames"] + sum(n for v in self._open.values() for n, _ in v.values())

    @property
    def frames_committed(self) -> int:
        """Maps of the shards this run committed: the run report's ``frames_this_run``."""
        return self._committed["frames"]

    @property
    def fps(self) -> float:
        return self.frames_committed / max(time.monotonic() - self.start, 1e-9)

    def started(self, actors: int, resources: dict) -> None:
        self.emit(RunStarted(actors, resources))

    def video(self, event: VideoFinished) -> None:
        self._open.setdefault(event.shard, {})[event.video_id] = (int(event.frames), event.status != "ok")
        self.book.video(int(event.frames), event.status != "ok", time.monotonic() - self.start)
        self.emit(event)

    def stage_times(self, event: StageTimes) -> None:
        self.book.add(event, time.monotonic() - self.start)
        self.emit(event)

    def shard_done(self, done: ShardCommitted) -> None:
        self._open.pop(done.shard, None)
        self.shards_done += 1
        self._committed["videos"] += done.record.n_videos
        self._committed["failed"] += done.record.n_failed
        self._committed["frames"] += done.record.n_maps
        self.emit(done)

    def shard_retry(self, shard: str, error: str) -> None:
        self._open.pop(shard, None)  # that attempt's maps are not committed
        self.emit(ShardRetry(shard, error))

    def shard_failed(self, shard: str, error: str) -> None:
        self._open.pop(shard, None)
        self.emit(ShardFailed(shard, error))

    def actor_restarted(self, index: int, error: str) -> None:
        self.emit(ActorRestarted(index, error))

    def video_timeout(self, shard: str, video_id: str, seconds: float) -> None:
        self.emit(VideoTimeout(shard, video_id, seconds))

    def stalled(self, message: str) -> None:
        self.emit(Stalled(message))

    def note(self, message: str) -> None:
        """A line for the operator (lease waits and takeovers)."""
        self.emit(Note(message))

    def emit(self, event: ProgressEvent) -> None:
        """Show one event (no-op here)."""

    def close(self) -> None:
        """Stop any live display."""


class QuietReporter(Reporter):
    pass


class JsonLinesReporter(Reporter):
    """One JSON object per line on stdout, with running totals, for batch systems' logs."""

    def emit(self, event: ProgressEvent) -> None:
        line = {
            "time": round(time.time(), 3),
            **event_to_dict(event),
            "totals": {
                "shards_done": self.shards_done,
                "shards_total": self.total_shards,
                "videos_done": self.videos_done,
                "videos_failed": self.videos_failed,
                "videos_total": self.total_videos,
                "frames": self.frames,
                "fps": round(self.fps, 2),
            },
        }
        sys.stdout.write(json.dumps(scrub(line), default=str) + "\n")
        sys.stdout.flush()


class RichReporter(Reporter):
    """A live progress bar: shards, videos, frames, frames/s, ETA, failures so far."""

    def __init__(self, total_shards: int, total_videos: int) -> None:
        super().__init__(total_shards, total_videos)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("videos"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
        )
        self.task = self.progress.add_task("", total=total_videos, info="")
        self.progress.start()

    def emit(self, event: ProgressEvent) -> None:
        from rich.text import Text

        line: str | None = None
        if isinstance(event, VideoFinished) and event.status != "ok":
            line = f"{event.video_id}: {event.reason}: {event.error}"
        elif isinstance(event, (ShardRetry, ShardFailed)):
            line = f"{event.shard}: {event.error}"
        elif isinstance(event, ActorRestarted):
            line = f"{event.actor}: {event.error}"
        elif isinstance(event, VideoTimeout):
            line = f"{event.video_id}: no result after {event.seconds:.1f} s"
        elif isinstance(event, Stalled):
            line = f"run: {event.error}"
        elif isinstance(event, Note):
            self.console.print(plain(event.message))
        if line is not None:
            label = "failed" if isinstance(event, VideoFinished) else event.event.replace("_", " ")
            self.console.print(Text.assemble((label, "yellow"), " ", plain(line)))
        info = (
            f"shards {self.shards_done}/{self.total_shards} · {self.frames:,} frames · "
            f"{self.fps:.1f}/s · {self.videos_failed} failed"
        )
        self.progress.update(self.task, completed=self.videos_done, info=info)

    def close(self) -> None:
        self.progress.stop()


def make_reporter(mode: str, total_shards: int, total_videos: int) -> Reporter:
    return {"rich": RichReporter, "jsonl": JsonLinesReporter, "quiet": QuietReporter}[mode](total_shards, total_videos)
