"""Process one shard: its videos -> stream producer -> engine -> per-video sinks -> commit. No Ray here.

A Ray actor holds one :class:`ShardProcessor` (one loaded TASED-Net) and calls
:meth:`ShardProcessor.process` for each shard it is given. A producer (by default
:func:`tased_batch.run.pipeline.serial_streams`; any callable from sources to stream events)
decodes ahead; the engine batches windows across videos; each batch of maps goes to its
video's sink at once (in a background thread), so memory does not grow with video length.
Segments of a long video are put back in order: a later segment's maps wait, at store
size, until the earlier segments are done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tased_batch.config import RunConfig
from tased_batch.core.backoff import STORAGE_BASE, STORAGE_CAP, STORAGE_RETRIES, backoff_delay
from tased_batch.core.clocks import StageClock
from tased_batch.decode.sources import VideoSource
from tased_batch.decode.streams import StreamEnd, StreamEvent, StreamFailed, StreamStart
from tased_batch.engine.engine import Engine, MapStats
from tased_batch.engine.streams import MapBatch, StreamDone
from tased_batch.model.weights import WeightsInfo, model_from_payload
from tased_batch.options import ModelOptions
from tased_batch.run.pipeline import (
    BackgroundWriter,
    StreamProducer,
    bound_heap_growth,
    default_device,
    meta_of,
    serial_streams,
)
from tased_batch.run.runrecords import (
    ActorEvent,
    ShardCommitted,
    StageTimes,
    StorageUnavailable,
    VideoFinished,
    VideoProgress,
    VideoStarted,
    split_skip,
)
from tased_batch.stores import open_shard_writer
from tased_batch.stores.base import ShardWriter, VideoSink
from tased_batch.stores.resample import resize_maps
from tased_batch.stores.summaries import frame_stats, frame_stats_numpy, has_frame_stats

if TYPE_CHECKING:
    from tased_batch.decode.feed import DecoderPool

TRANSIENT_REASONS = ("io-error",)
_sleep = time.sleep  # replaced in tests, so that minutes of backoff take no time

Progress = Callable[[ActorEvent], None]


def run_info(config: RunConfig, weights: WeightsInfo, config_fingerprint: str) -> dict[str, Any]:
    """What every shard records about the run that made it (a random stand-in is visible here)."""
    return {"config_fingerprint": config_fingerprint, "weights": weights.to_dict(), **config.run_info_fields()}


def engine_for(options: ModelOptions, model: torch.nn.Module, device: str, map_stats: MapStats | None = None) -> Engine:
    """The engine the model options ask for (shared by the Ray actors and the Ray Data plugin).

    ``map_stats``: per-batch statistics of the model-size maps on the device (the shard
    processor passes :func:`tased_batch.stores.summaries.frame_stats`)."""
    return Engine(
        model,
        device=device,
        batch_size=options.batch_size,
        precision=options.precision,
        first_windows=options.first_windows,
        map_stats=map_stats,
        reuse=options.reuse,
    )


def decode_workers(setting: int | str, device: str, cpus: int | None) -> int:
    """Decode worker processes per model: ``auto`` is the actor's CPUs less one on a GPU, and none on
    the CPU, where the model is orders of magnitude slower than one decoding thread (decoding
    then runs in a background thread of the actor, as :func:`serial_streams` does)."""
    if setting != "auto":
        return int(setting)
    if not device.startswith("cuda"):
        return 0
    from tased_batch.decode.feed import auto_workers

    return auto_workers(cpus)


SINK_QUEUE = 16  # sink operations (batches of maps) waiting for the writer thread
PROGRESS_EVERY = 2.0  # seconds between VideoProgress events of an actor (the executor's deadlines restart on them)


class _Calls:
    """A "sink" for :class:`BackgroundWriter` whose items are calls: store work runs in its thread, in order.

    Their time is the ``write`` stage (encoding and uploading maps)."""

    def __init__(self, clock: StageClock) -> None:
        self.clock = clock

    def write(self, call: Callable[[], None]) -> None:
        with self.clock.time("write"):
            call()


# One batch for a sink: frame indices, timestamps, maps, and the engine's per-map statistics (extras).
_Item = tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]


@dataclass
class _Video:
    """One video of a pass: its sink, its segments' progress, later segments' maps held back."""

    source: VideoSource
    sink: VideoSink
    start: StreamStart | None = None
    segments: int = 1
    current: int = 0  # the segment whose maps go straight to the sink
    done: set[int] = field(default_factory=set)
    held: dict[int, list[_Item]] = field(default_factory=dict)
    maps: int = 0
    finished: bool = False
    announced: bool = False  # its "start" event was sent (the executor's deadline clock runs from it)


class ShardProcessor:
    """One loaded model that turns shards of videos into committed store shards."""

    def __init__(
        self,
        config: RunConfig,
        weights_bytes: bytes,
        weights: WeightsInfo,
        info: dict[str, Any],
        *,
        device: str | None = None,
        threads: int | None = None,
        producer: StreamProducer | None = None,
        fence: str | None = None,
    ) -> None:
        if threads:
            torch.set_num_threads(int(threads))
        device = device or default_device()
        model = model_from_payload(weights_bytes, weights, device)
        self._setup(
            config,
            engine_for(config.model, model, device, map_stats=frame_stats),
            info,
            producer,
            cpus=threads,
            fence=fence,
        )

    @classmethod
    def with_engine(
        cls,
        config: RunConfig,
        engine: Engine,
        info: dict[str, Any],
        *,
        producer: StreamProducer | None = None,
        fence: str | None = None,
    ) -> ShardProcessor:
        """A processor around an engine built elsewhere (benchmarks with a stand-in model, tests)."""
        processor = cls.__new__(cls)
        processor._setup(config, engine, info, producer, fence=fence)
        return processor

    def _setup(
        self,
        config: RunConfig,
        engine: Engine,
        info: dict[str, Any],
        producer: StreamProducer | None,
        cpus: int | None = None,
        fence: str | None = None,
    ) -> None:
        bound_heap_growth()  # a processor lives as long as its actor: keep its heap from creeping
        self.config = config
        self.engine = engine
        self.device = str(engine.device)
        self.options = config.sampling.decode_options()
        self.info = info
        self.fence = fence  # the run's lease token: commits stop once another driver holds the output
        self.cpus = cpus
        self.decode_workers = decode_workers(config.decode_workers, self.device, cpus)
        self.producer: StreamProducer = producer or (self._feed if self.decode_workers else self._serial)
        self._pool: DecoderPool | None = None  # decode workers kept between shards (started on first use)
        self.clock = engine.clock  # one clock: the engine's forward and post-processing, the rest added here
        self.actor = 0  # which actor of the run this is (set by the executor's actor)
        self._mark = time.perf_counter()  # wall clock of the last StageTimes sent
        self._frames = 0  # maps since then

    def _serial(self, sources: Sequence[VideoSource]) -> Any:
        return serial_streams(
            sources, self.config.model_size, self.options, self.config.storage_options, clock=self.clock
        )

    def _feed(self, sources: Sequence[VideoSource]) -> Any:
        """Several decode worker processes (long videos in segments, a deadline per video) feed the engine.

        The workers outlive the shard (a pool), so the next shard starts decoding at once."""
        from tased_batch.decode.feed import DecodeFeed, DecoderPool

        if self._pool is None:
            self._pool = DecoderPool()
        opts = self.options
        return iter(
            DecodeFeed(
                sources,
                self.config.model_size,
                decoder=opts.decoder,
                resize=opts.resize,
                fps=opts.fps,
                every=opts.every,
                output_fps=opts.output_fps,
                storage_options=self.config.storage_options,
                workers=self.decode_workers,
                cpus=self.cpus,
                chunk=opts.chunk,
                max_frame_pixels=opts.max_frame_pixels,
                video_timeout=self.config.video_timeout,
                pool=self._pool,
                clock=self.clock,
            )
        )

    def close(self) -> None:
        """Stop the idle decode workers (they also die with this process)."""
        if self._pool is not None:
            self._pool.close()

    def process(
        self,
        shard_id: str,
        videos: list[VideoSource],
        *,
        skip: dict[str, str] | None = None,
        progress: Progress | None = None,
    ) -> ShardCommitted:
        """Write and commit one shard; ``skip`` maps video ids to a reason to record instead of decoding.

        Returns the commit record and how long the shard took. Any exception leaves the shard uncommitted
        (its partial attempt is aborted) so that it is redone.
        """
        skip = skip or {}
        notify = progress or (lambda event: None)
        started = self._mark = time.perf_counter()
        self.clock.take()  # time between shards is not this shard's
        writer = open_shard_writer(
            self.config.output,
            shard_id,
            format=self.config.format,
            store_size=self.config.store_shape,
            model_size=self.config.model_size,
            run_info=self.info,
            storage_options=self.config.storage_options,
            crop=self.config.crop,
            fence=self.fence,
        )
        background = BackgroundWriter(_Calls(self.clock), depth=SINK_QUEUE)
        try:
            sinks = {source.video_id: writer.open_video(source.video_id, source.display) for source in videos}
            todo = []
            for source in videos:
                if source.video_id in skip:
                    notify(VideoStarted(shard_id, source.video_id))
                    self._finish(
                        background, notify, shard_id, sinks[source.video_id], *split_skip(skip[source.video_id])
                    )
                else:
                    todo.append(source)
            for attempt in range(STORAGE_RETRIES + 1):  # later passes redo videos that met a transient error
                if not todo:
                    break
                if attempt:  # backoff in minutes: an object store's SlowDown burst lasts that long
                    _sleep(backoff_delay(attempt, base=STORAGE_BASE, cap=STORAGE_CAP))
                todo = self._pass(todo, sinks, writer, background, notify, shard_id, last=attempt == STORAGE_RETRIES)
            with self.clock.time("write_wait"):
                background.close()
            with self.clock.time("commit"):
                record = writer.commit()
        except BaseException:
            try:
                background.close()
            except BaseException:
                pass  # the first error is the one raised below
            try:
                writer.abort()
            except Exception:
                pass
            raise
        finally:
            self.stage_times(notify, wait=True)
        return ShardCommitted(shard_id, record, time.perf_counter() - started)

    def stage_times(self, notify: Progress, wait: bool = False) -> None:
        """Send the stage seconds since the last call (``wait``: with the device's pending timings)."""
        now = time.perf_counter()
        stages = self.clock.take(wait=wait)
        notify(StageTimes(self.actor, now - self._mark, stages, self._frames, self.decode_workers, self.cpus))
        self._mark, self._frames = now, 0

    def _submit(self, background: BackgroundWriter, call: Callable[[], None]) -> None:
        """Hand store work to the writer thread; time blocked here is the model waiting for the writer."""
        with self.clock.time("write_wait"):
            background.submit(call)

    def _finish(
        self,
        background: BackgroundWriter,
        notify: Progress,
        shard_id: str,
        sink: VideoSink,
        reason: str | None,
        error: str | None,
        maps: int = 0,
        trace: str | None = None,
    ) -> None:
        """Close (``reason`` None) or fail a video's sink, and say so (``trace``: for the run report)."""
        self._submit(background, sink.close if reason is None else (lambda: sink.fail(reason, error or "")))
        notify(
            VideoFinished(
                shard=shard_id,
                video_id=sink.video_id,
                status="ok" if reason is None else "failed",
                frames=maps,
                reason=reason,
                error=error,
                source=sink.source,
                traceback=trace,
            )
        )

    def _pass(
        self,
        todo: list[VideoSource],
        sinks: dict[str, VideoSink],
        writer: ShardWriter,
        background: BackgroundWriter,
        notify: Progress,
        shard_id: str,
        last: bool,
    ) -> list[VideoSource]:
        """Run ``todo`` through the producer and the engine into their sinks; return the videos to retry."""
        videos = [_Video(source, sinks[source.video_id]) for source in todo]
        by_key: dict[int, tuple[_Video, int]] = {}
        retry: list[VideoSource] = []
        last_beat = time.monotonic()

        def begin(video: _Video) -> None:
            if not video.announced and not video.finished:
                video.announced = True
                notify(VideoStarted(shard_id, video.source.video_id))

        def begin_next() -> None:
            """The producer opens videos in order: the next one is being opened now. Announcing it before
            its StreamStart arrives lets the executor's deadline catch an open that never returns."""
            upcoming = next((v for v in videos if not v.announced and not v.finished), None)
            if upcoming is not None:
                begin(upcoming)

        def watched(events: Any) -> Any:
            begin_next()
            for event in self.clock.timed(events, "feed"):
                if isinstance(event, StreamStart):
                    video = next(v for v in videos if v.source.video_id == event.video_id)
                    begin(video)
                    if video.start is None:
                        video.start, video.segments = event, event.segments
                        video.sink.meta = meta_of(event)
                    by_key[event.key] = (video, event.segment)
                elif isinstance(event, (StreamEnd, StreamFailed)):
                    begin_next()
                yield event

        def append(video: _Video, item: _Item) -> None:
            self._submit(background, lambda: video.sink.append(*item))

        def done(video: _Video, segment: int, out: StreamDone) -> None:
            if not out.ok:
                video.finished = True
                if out.reason in TRANSIENT_REASONS:
                    if last:  # storage outlasted the retries: the shard stays pending, never a committed io-error
                        raise StorageUnavailable(f"{video.source.video_id}: {out.error}")
                    retry.append(video.source)
                    self._submit(background, video.sink.restart)
                else:
                    self._finish(
                        background,
                        notify,
                        shard_id,
                        video.sink,
                        out.reason or "internal-error",
                        out.error,
                        trace=out.trace,
                    )
                return
            video.done.add(segment)
            while video.current in video.done:
                video.current += 1
                for item in video.held.pop(video.current, []):
                    append(video, item)
            if video.current >= video.segments:
                video.finished = True
                self._finish(background, notify, shard_id, video.sink, None, None, video.maps)

        events: StreamEvent | Any = self.producer(todo)
        try:
            for out in self.engine.run_streams(watched(events)):
                video, segment = by_key.get(out.key) or (videos[out.key], 0)  # a lone failure: key = index in todo
                if video.finished:
                    continue
                if isinstance(out, MapBatch):
                    assert video.start is not None  # maps only come after the stream's start
                    sampling = video.start.sampling
                    item = (sampling.sequence[out.positions], out.positions / sampling.fps, out.maps, out.extras)
                    video.maps += len(out.positions)
                    self._frames += len(out.positions)
                    if time.monotonic() - last_beat >= PROGRESS_EVERY:  # the executor's deadline restarts
                        last_beat = time.monotonic()
                        notify(VideoProgress(shard_id, video.source.video_id, video.maps))
                        self.stage_times(notify)
                    if segment == video.current:
                        append(video, item)
                    else:  # a later segment finished first: hold its maps, small, until its turn
                        # (with their statistics, which must come from the maps at model size)
                        with self.clock.time("post"):
                            stats = out.extras if has_frame_stats(out.extras) else frame_stats_numpy(out.maps)
                            small = resize_maps(out.maps, writer.store_size)
                        video.held.setdefault(segment, []).append((*item[:2], small, stats))
                else:
                    begin(video)
                    done(video, segment, out)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        for video in videos:
            if not video.finished:  # the producer stopped before this video was complete
                begin(video)
                error = f"{video.source.display}: the decoder delivered only part of the video"
                self._finish(background, notify, shard_id, video.sink, "truncated", error)
        return retry
