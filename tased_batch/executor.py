"""Ray execution: shards handed out dynamically to actors that each hold one TASED-Net.

Ray only schedules; the work is :class:`tased_batch.shards.ShardProcessor`. Faults:
an actor that dies is replaced and its shard redone; a video that was being processed
in two such deaths is recorded as failed (``worker-crash``) instead of being retried
again; a shard that fails ``max_attempts`` times is left pending (the run reports it
could not finish and ``resume`` picks it up).
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tased_batch.config import RunConfig
from tased_batch.plan import Plan
from tased_batch.weights import WeightsInfo

CRASHES_BEFORE_SKIP = 2
TASKS_PER_ACTOR = 2  # one running, one queued, so an actor never idles between shards


@dataclass
class Outcome:
    """What happened to the shards this execution was given."""

    committed: dict[str, dict] = field(default_factory=dict)
    unfinished: dict[str, str] = field(default_factory=dict)  # shard -> last error
    actor_restarts: int = 0


def _start_ray(config: RunConfig) -> bool:
    """Join ``--address`` or start a local Ray; True when this process started it (and must stop it)."""
    import ray

    if ray.is_initialized():
        return False
    if config.address:
        # Only non-secret settings travel; the cluster's own AWS chain (instance or pod roles) supplies credentials.
        from tased_batch.submit import FORWARDED_ENV

        env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
        ray.init(address=config.address, runtime_env={"env_vars": env} if env else None, log_to_driver=False,
                 configure_logging=False)
        return True
    from tased_batch.local_ray import local_cluster_env

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
        per = {"num_gpus": config.gpus_per_actor, "num_cpus": config.cpus_per_actor or 1}
        count = config.actors or max(1, int(gpus // config.gpus_per_actor))
        return count, per, int(per["num_cpus"])
    if config.address:
        import warnings

        warnings.warn("the Ray cluster has no GPUs (yet?): running CPU actors; wait for `ray status` to list GPU workers",
                      stacklevel=2)
    count = config.actors or max(1, int(cpus // (config.cpus_per_actor or 2)))
    per_cpu = config.cpus_per_actor or max(1.0, cpus // count)
    return count, {"num_cpus": per_cpu}, max(1, int(per_cpu))


class _Worker:
    """The actor body: one ShardProcessor, progress pushed to a Ray queue."""

    def __init__(self, config: RunConfig, weights_bytes: bytes, weights: WeightsInfo, info: dict, threads: int, queue) -> None:
        from tased_batch.shards import ShardProcessor

        self.queue = queue
        self.processor = ShardProcessor(config, weights_bytes, weights, info, threads=threads)

    def pid(self) -> int:
        return os.getpid()

    def process(self, shard_id: str, videos: list, skip: dict[str, str]) -> dict:
        def notify(event: dict) -> None:
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
) -> Outcome:
    """Process ``shards`` of ``plan`` on Ray actors; returns what was committed and what was not."""
    import ray
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
    from ray.util.queue import Queue

    started_here = _start_ray(config)
    outcome = Outcome()
    try:
        count, resources, threads = _actor_layout(config)
        count = min(count, max(1, len(shards)))
        worker_cls = ray.remote(max_restarts=0, max_task_retries=0)(_Worker)
        weights_ref = ray.put(weights_bytes)
        queue = Queue(maxsize=100_000)
        reporter.started(actors=count, resources=resources)

        def new_actor():
            return worker_cls.options(**resources).remote(config, weights_ref, weights, info, threads, queue)

        actors = [new_actor() for _ in range(count)]
        todo = deque(shards)
        attempts: dict[str, int] = {s: 0 for s in shards}  # failed tries that count against max_attempts
        dispatched: dict[str, int] = {s: 0 for s in shards}  # every hand-out, a backstop against endless requeues
        in_progress: dict[str, str] = {}  # shard -> video being processed (from progress events)
        crashes: dict[str, int] = {}  # video id -> deaths while it was being processed
        skip: dict[str, dict[str, str]] = {s: {} for s in shards}
        in_flight: dict[Any, tuple[int, str]] = {}
        per_actor = [0] * count

        def dispatch() -> None:
            for i in range(count):
                while todo and per_actor[i] < TASKS_PER_ACTOR:
                    shard = todo.popleft()
                    attempts[shard] += 1
                    dispatched[shard] += 1
                    ref = actors[i].process.remote(shard, plan.videos(shard), dict(skip[shard]))
                    in_flight[ref] = (i, shard)
                    per_actor[i] += 1

        def drain() -> None:
            while True:
                try:
                    events = queue.get_nowait_batch(min(queue.qsize(), 1000))
                except Exception:
                    return
                if not events:
                    return
                for event in events:
                    if event["event"] == "start":
                        in_progress[event["shard"]] = event["video_id"]
                    else:
                        reporter.video(event)

        def give_up_or_retry(shard: str, error: str) -> None:
            if attempts[shard] >= config.max_attempts:
                outcome.unfinished[shard] = error
                reporter.shard_failed(shard, error)
            else:
                todo.append(shard)

        dispatch()
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
            drain()
            for ref in ready:
                if ref not in in_flight:
                    continue  # a task of an actor already replaced below
                i, shard = in_flight.pop(ref)
                per_actor[i] -= 1
                try:
                    record = ray.get(ref)
                except (RayActorError, ActorDiedError, ActorUnavailableError) as e:
                    outcome.actor_restarts += 1
                    reporter.actor_restarted(i, _short(e))
                    ray.kill(actors[i], no_restart=True)
                    actors[i] = new_actor()
                    per_actor[i] = 0
                    lost = [shard] + [s for other, (j, s) in list(in_flight.items()) if j == i and in_flight.pop(other)]
                    for s in lost:
                        suspect = in_progress.pop(s, None)
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
                        give_up_or_retry(s, _short(e))
                except Exception as e:
                    in_progress.pop(shard, None)
                    reporter.shard_retry(shard, _short(e))
                    give_up_or_retry(shard, _short(e))
                else:
                    in_progress.pop(shard, None)
                    outcome.committed[shard] = record
                    reporter.shard_done(shard, record)
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
