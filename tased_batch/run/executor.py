"""Ray execution: shards handed out dynamically to actors that each hold one TASED-Net.

Ray only schedules; the work is :class:`tased_batch.run.shards.ShardProcessor`. Faults:
an actor that dies is replaced and its shard redone; a video that was being processed
in two such deaths is recorded as failed (``worker-crash``) instead of being retried
again; a shard that fails ``max_attempts`` times is left pending (the run reports it
could not finish and ``resume`` picks it up); a failed shard waits (exponential backoff with
jitter) before it is handed out again.

Deadlines: a video whose actor shows no progress (no maps) for its deadline
(``--video-timeout``, else 900 s or longer for big files) gets its actor killed and
replaced, and is recorded failed (``timeout``); a long video that keeps delivering maps is
never cut off. When nothing progresses for ``--stall-timeout`` seconds the run stops
(exit 4, ``resume`` later).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tased_batch.config import RunConfig
from tased_batch.core.backoff import SHARD_BASE, SHARD_CAP, backoff_delay
from tased_batch.core.errors import ConfigError
from tased_batch.decode.sources import VideoSource
from tased_batch.model.weights import WeightsInfo
from tased_batch.run.plan import Plan
from tased_batch.run.runrecords import (
    ActorEvent,
    InternalError,
    ShardCommitted,
    StageTimes,
    VideoProgress,
    VideoStarted,
    skip_text,
)

CRASHES_BEFORE_SKIP = 2
TASKS_PER_ACTOR = 2  # one running, one queued, so an actor never idles between shards
# Without --video-timeout, a video's actor may go this long without progress, longer for big files (bytes / rate).
DEFAULT_VIDEO_TIMEOUT = 900.0
SLOWEST_BYTES_PER_SECOND = 50_000.0
_clock = time.monotonic  # replaced in tests


def video_deadline(config: RunConfig, source: VideoSource) -> float:
    """Seconds a video's actor may go without progress before it is replaced and the video recorded ``timeout``."""
    if config.video_timeout:
        return float(config.video_timeout)
    return max(DEFAULT_VIDEO_TIMEOUT, (source.size or 0) / SLOWEST_BYTES_PER_SECOND)


class VideoClocks:
    """Which video each shard's actor is on, and how long since that actor last showed progress.

    The clock of a shard restarts when a video starts and whenever its actor delivers maps
    (:class:`~tased_batch.run.runrecords.VideoProgress`), so a long video on a slow device is never
    cut off while it progresses; an open, read or decode that hangs shows no progress at all.
    """

    def __init__(self, limit: Callable[[str, str], float]) -> None:
        self._limit = limit  # (shard, video id) -> seconds without progress allowed
        self.current: dict[str, str] = {}  # shard -> video being processed
        self._since: dict[str, float] = {}  # shard -> start of the video or its last progress

    def started(self, shard: str, video_id: str, now: float) -> None:
        self.current[shard] = video_id
        self._since[shard] = now

    def progressed(self, shard: str, now: float) -> None:
        if shard in self._since:
            self._since[shard] = now

    def stop(self, shard: str) -> str | None:
        """Forget the shard (finished, lost or timed out); returns the video it was on."""
        self._since.pop(shard, None)
        return self.current.pop(shard, None)

    def running(self, now: float) -> bool:
        """Some video is within its deadline (progress even without events)."""
        return any(now - t <= self._limit(s, self.current[s]) for s, t in self._since.items() if s in self.current)

    def overdue(self, shards: list[str], now: float) -> tuple[str, str, float, float] | None:
        """The first of ``shards`` whose video is past its deadline: (shard, video, seconds idle, limit)."""
        for shard in shards:
            video = self.current.get(shard)
            if video is None or shard not in self._since:
                continue
            limit = self._limit(shard, video)
            if now - self._since[shard] > limit:
                return shard, video, now - self._since[shard], limit
        return None


def is_local_uri(uri: str) -> bool:
    from fsspec.core import split_protocol

    return split_protocol(uri)[0] in (None, "file", "local")


def check_shared_paths(config: RunConfig, nodes: int) -> None:
    """On a cluster of several nodes a local path means each node reads and writes its own disk."""
    if nodes <= 1 or config.shared_fs:
        return
    local = [
        f"{name} {uri!r}" for name, uri in (("INPUT", config.input), ("OUTPUT", config.output)) if is_local_uri(uri)
    ]
    if local:
        raise ConfigError(
            f"the Ray cluster has {nodes} nodes but {' and '.join(local)} is a local path: each node would read and "
            "write its own disk, and commit records would scatter across machines",
            "use shared storage (s3://...), or pass --shared-fs if the path is on a file system every node mounts",
        )


@dataclass
class Outcome:
    """What happened to the shards this execution was given."""

    committed: dict[str, ShardCommitted] = field(default_factory=dict)
    unfinished: dict[str, str] = field(default_factory=dict)  # shard -> last error
    actor_restarts: int = 0
    stalled: str | None = None
    internal_errors: list[InternalError] = field(default_factory=list)


def _start_ray(config: RunConfig) -> bool:
    """Join ``--address`` or start a local Ray; True when this process started it (and must stop it)."""
    import ray

    if ray.is_initialized():
        return False
    if config.address:
        # Only non-secret settings travel; the cluster's own AWS chain (instance or pod roles) supplies credentials.
        from tased_batch.run.submit import FORWARDED_ENV

        env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
        ray.init(
            address=config.address,
            runtime_env={"env_vars": env} if env else None,
            log_to_driver=False,
            configure_logging=False,
        )
        return True
    from tased_batch.run.local_ray import local_cluster_env

    local_cluster_env()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)  # workers inherit this environment
    return True


def _actor_layout(config: RunConfig) -> tuple[int, dict[str, float], int]:
    """(number of actors, Ray resources per actor, torch threads per actor)."""
    import ray

    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    cpus = float(resources.get("CPU", 1))
    if gpus > 0:
        count = config.actors or max(1, int(gpus // config.gpus_per_actor))
        # the CPUs feed the GPUs: each actor gets its share for its decode workers (issue 11)
        per = {"num_gpus": config.gpus_per_actor, "num_cpus": config.cpus_per_actor or max(1.0, cpus // count)}
        return count, per, int(per["num_cpus"])
    if config.address:
        import warnings

        warnings.warn(
            "the Ray cluster has no GPUs (yet?): running CPU actors; wait for `ray status` to list GPU workers",
            stacklevel=2,
        )
    count = config.actors or max(1, int(cpus // (config.cpus_per_actor or 2)))
    per_cpu = config.cpus_per_actor or max(1.0, cpus // count)
    return count, {"num_cpus": per_cpu}, max(1, int(per_cpu))


class _Worker:
    """The actor body: one ShardProcessor, progress pushed to a Ray queue."""

    def __init__(
        self,
        config: RunConfig,
        weights_bytes: bytes,
        weights: WeightsInfo,
        info: dict,
        threads: int,
        queue,
        fence: str | None,
        index: int = 0,
    ) -> None:
        from tased_batch.run.shards import ShardProcessor

        self.queue = queue
        self.processor = ShardProcessor(config, weights_bytes, weights, info, threads=threads, fence=fence)
        self.processor.actor = index  # its stage times are this actor's

    def pid(self) -> int:
        return os.getpid()

    def process(self, shard_id: str, videos: list, skip: dict[str, str]) -> ShardCommitted:
        def notify(event: ActorEvent) -> None:
            try:
                self.queue.put_nowait(event)
            except Exception:
                pass  # progress is best effort; the commit record is the truth

        return self.processor.process(shard_id, videos, skip=skip, progress=notify)


def execute(
    config: RunConfig,
    plan: Plan,
    shards: list[str],
    weights_bytes: bytes,
    weights: WeightsInfo,
    info: dict[str, Any],
    reporter,
    *,
    tick: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    fence: str | None = None,
) -> Outcome:
    """Process ``shards`` of ``plan`` on Ray actors; returns what was committed and what was not.

    ``tick`` is called on every turn of the loop (the job checks its lease and folds the index);
    ``fence`` is the lease's token: an actor commits a shard only while the lease is still this run's.
    """
    import ray
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
    from ray.util.queue import Queue

    started_here = _start_ray(config)
    outcome = Outcome()
    try:
        check_shared_paths(config, len([n for n in ray.nodes() if n.get("Alive")]))
        count, resources, threads = _actor_layout(config)
        count = min(count, max(1, len(shards)))
        worker_cls = ray.remote(max_restarts=0, max_task_retries=0)(_Worker)
        weights_ref = ray.put(weights_bytes)
        queue = Queue(maxsize=100_000)
        reporter.started(actors=count, resources=resources)

        def new_actor(index: int):
            return worker_cls.options(**resources).remote(
                config, weights_ref, weights, info, threads, queue, fence, index
            )

        actors = [new_actor(i) for i in range(count)]
        todo = deque(shards)
        attempts: dict[str, int] = {s: 0 for s in shards}  # failed tries that count against max_attempts
        dispatched: dict[str, int] = {s: 0 for s in shards}  # every hand-out, a backstop against endless requeues
        clocks = VideoClocks(lambda shard, video: video_deadline(config, sources[shard][video]))
        crashes: dict[str, int] = {}  # video id -> deaths while it was being processed
        skip: dict[str, dict[str, str]] = {s: {} for s in shards}
        in_flight: dict[Any, tuple[int, str]] = {}
        waiting: list[tuple[float, str]] = []  # (not before, shard): failed shards backing off
        sources: dict[str, dict[str, VideoSource]] = {}
        per_actor = [0] * count
        last_progress = _clock()

        def dispatch() -> None:
            now = _clock()
            for ready_at, shard in sorted(waiting):
                if ready_at <= now:
                    waiting.remove((ready_at, shard))
                    todo.append(shard)
            for i in range(count):
                while todo and per_actor[i] < TASKS_PER_ACTOR:
                    shard = todo.popleft()
                    attempts[shard] += 1
                    dispatched[shard] += 1
                    videos = plan.videos(shard)
                    sources[shard] = {v.video_id: v for v in videos}
                    ref = actors[i].process.remote(shard, videos, dict(skip[shard]))
                    in_flight[ref] = (i, shard)
                    per_actor[i] += 1

        def drain() -> None:
            nonlocal last_progress
            while True:
                try:
                    events = queue.get_nowait_batch(min(queue.qsize(), 1000))
                except Exception:
                    return
                if not events:
                    return
                last_progress = _clock()
                for event in events:
                    if isinstance(event, VideoStarted):
                        clocks.started(event.shard, event.video_id, last_progress)
                        continue
                    if isinstance(event, VideoProgress):
                        clocks.progressed(event.shard, last_progress)
                        continue
                    if isinstance(event, StageTimes):
                        reporter.stage_times(event)
                        continue
                    if event.traceback:
                        outcome.internal_errors.append(
                            InternalError(event.shard, event.video_id, event.error, event.traceback)
                        )
                    reporter.video(event)

        def give_up_or_retry(shard: str, error: str, *, backoff: bool = False) -> None:
            if attempts[shard] >= config.max_attempts:
                outcome.unfinished[shard] = error
                reporter.shard_failed(shard, error)
            elif backoff:
                waiting.append((_clock() + backoff_delay(attempts[shard], base=SHARD_BASE, cap=SHARD_CAP), shard))
            else:
                todo.append(shard)

        def replace_actor(i: int) -> list[str]:
            """Kill actor ``i``, start a new one; the shards it held (running one first)."""
            outcome.actor_restarts += 1
            ray.kill(actors[i], no_restart=True)
            actors[i] = new_actor(i)
            per_actor[i] = 0
            return [s for ref, (j, s) in list(in_flight.items()) if j == i and in_flight.pop(ref)]

        def requeue_lost(lost: list[str], error: str, running: str | None = None) -> None:
            for s in lost:
                suspect = clocks.stop(s)
                if s == running:
                    todo.appendleft(s)  # its hung video is skipped now: not the shard's fault
                    attempts[s] -= 1
                    continue
                if suspect is None and dispatched[s] < 2 * config.max_attempts:
                    attempts[s] -= 1  # queued behind the crash, never started: requeue as it was
                    todo.appendleft(s)
                    continue
                if suspect is not None:
                    crashes[suspect] = crashes.get(suspect, 0) + 1
                    if crashes[suspect] >= CRASHES_BEFORE_SKIP:
                        skip[s][suspect] = (
                            f"the worker died {crashes[suspect]} times while processing this video "
                            "(out of memory or a decoder crash); check the file or give actors more memory"
                        )
                give_up_or_retry(s, error)

        def check_deadlines() -> bool:
            """Replace the actor whose current video is past its deadline; True when one was."""
            late = clocks.overdue([shard for _, shard in list(in_flight.values())], _clock())
            if late is None:
                return False
            shard, video, idle, limit = late
            i = next(i for i, s in in_flight.values() if s == shard)
            skip[shard][video] = skip_text(
                "timeout",
                f"no progress for {limit:.0f} s (a hung read or decoder); the worker was replaced; "
                "raise --video-timeout if the video is just slow to start",
            )
            reporter.video_timeout(shard, video, idle)
            clocks.stop(shard)
            requeue_lost(replace_actor(i), "video timeout", running=shard)
            return True

        dispatch()
        while in_flight or waiting:
            if tick is not None:
                tick()
            if not in_flight:
                sleep(min(1.0, max(0.0, min(w[0] for w in waiting) - _clock())))
                dispatch()
                continue
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
            drain()
            if ready:
                last_progress = _clock()
            elif (
                config.stall_timeout
                and _clock() - last_progress > config.stall_timeout
                and not clocks.running(_clock())
            ):
                running = ", ".join(f"{s}: {v}" for s, v in sorted(clocks.current.items())) or "none started"
                outcome.stalled = (
                    f"no progress for {config.stall_timeout:.0f} s with {len(in_flight)} shard(s) handed "
                    f"out (videos in progress: {running}); stopped so that `resume` can continue "
                    "(check the cluster's resources with `ray status`)"
                )
                reporter.stalled(outcome.stalled)
                for _, shard in in_flight.values():
                    outcome.unfinished[shard] = "stalled"
                break
            if check_deadlines():
                dispatch()
                continue
            for ref in ready:
                if ref not in in_flight:
                    continue  # a task of an actor already replaced below
                i, shard = in_flight.pop(ref)
                per_actor[i] -= 1
                try:
                    done: ShardCommitted = ray.get(ref)
                except (RayActorError, ActorDiedError, ActorUnavailableError) as e:
                    reporter.actor_restarted(i, _short(e))
                    requeue_lost([shard] + replace_actor(i), _short(e))
                except Exception as e:
                    clocks.stop(shard)
                    reporter.shard_retry(shard, _short(e))
                    give_up_or_retry(shard, _short(e), backoff=True)
                else:
                    clocks.stop(shard)
                    outcome.committed[shard] = done
                    reporter.shard_done(done)
            dispatch()
        drain()
        for actor in actors:
            ray.kill(actor)
    finally:
        if started_here:
            ray.shutdown()
    return outcome


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[-1] if text else type(error).__name__)[:300]
