"""Decode -> engine plumbing: the in-process stream producer, one-video prediction, background threads.

:func:`serial_streams` decodes videos one after another in a background thread and yields
the stream events of :mod:`tased_batch.decode.streams` (one stream per video); the shard
processor takes any producer of that shape (e.g. a pool of decode workers).
:func:`predict_video` is one video end to end, for `predict` and the Ray Data plugin.

Bad input never escapes as an exception: a video's failure (any exception while reading
it) becomes a :class:`~tased_batch.decode.streams.StreamFailed` and then a failed result that
carries the reason, so a batch goes on and the failure is recorded.

Nothing waits on I/O: frames are decoded in a background thread that keeps a few chunks
ready (:func:`prefetch`), and :class:`BackgroundWriter` does the store's work in another.
Decoders and torch release the GIL in their native code.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from tased_batch.core.clocks import StageClock
from tased_batch.core.errors import ConfigError, VideoError
from tased_batch.core.records import VideoMeta, VideoResult
from tased_batch.decode import open_video, sample_frames
from tased_batch.decode.options import DecodeOptions
from tased_batch.decode.sources import VideoSource
from tased_batch.decode.streams import FrameChunk, StreamEnd, StreamEvent, StreamFailed, StreamStart
from tased_batch.engine.engine import Engine
from tased_batch.engine.streams import MapBatch

T = TypeVar("T")
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
HEAP_MMAP_THRESHOLD = 256 << 10  # blocks from this size up are mmapped, and unmapped when freed
_DONE = object()
PREFETCH_CHUNKS = 2  # decoded chunks kept ready: one being consumed, one arriving


def prefetch(items: Iterable[T], depth: int = 2) -> Generator[T, None, None]:
    """Iterate ``items`` in a background thread, keeping up to ``depth`` of them ready.

    Exceptions raised while producing are re-raised here, in order. Closing the iterator
    early (or an error in the consumer) stops the thread at its next item.
    """
    ready: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as e:  # handed to the consumer, raised there
            put((_DONE, e))
            return
        put((_DONE, None))

    thread = threading.Thread(target=produce, name="tased-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


class ResultSink(Protocol):
    def write(self, item: Any) -> None: ...


class BackgroundWriter:
    """Writes results to a store writer in a background thread, in submission order.

    ``submit`` returns at once unless ``depth`` results are already waiting (that bounds
    memory); ``close`` waits for the queue to drain. A write error is raised by the next
    ``submit`` or by ``close``, and nothing after it is written.
    """

    def __init__(self, sink: ResultSink, depth: int = 2) -> None:
        self.sink = sink
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="tased-writer", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            result = self._queue.get()
            if result is _DONE:
                return
            if self._error is None:
                try:
                    self.sink.write(result)
                except BaseException as e:
                    self._error = e

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, result: Any) -> None:
        self._raise()
        self._queue.put(result)

    def close(self) -> None:
        """Wait until everything submitted is written; raise the first write error."""
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        self._raise()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bound_heap_growth() -> bool:
    """Serve large host buffers (frame chunks, windows) from mmap, so that freeing them returns the memory (glibc only).

    glibc raises its mmap threshold each time a large block is freed; later buffers then come
    from the heap, where small long-lived objects (maps on their way to the store, rows held
    by a sink) pin the freed space and the RSS of a long run grows with what it has computed
    (benchmarks/memory_flat.py: a control keeping 18 MB of maps peaked at 6.2 GB, 0.4 GB with
    a fixed threshold). A fixed threshold stops that. Process-wide; returns whether it applied.
    """
    import ctypes

    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def as_source(source: VideoSource | str) -> VideoSource:
    """A path or URI as a :class:`VideoSource` (id from its file name), as ``predict`` names videos."""
    return source if isinstance(source, VideoSource) else open_video(source, (32, 32)).source


def meta_of(start: StreamStart) -> VideoMeta:
    info = start.info
    return VideoMeta(info.n_frames, info.fps, info.width, info.height, info.duration)


def _video_events(
    key: int, source: VideoSource, size: tuple[int, int], opts: DecodeOptions, storage_options: dict | None
) -> Iterator[StreamEvent]:
    """One video as one stream; whatever goes wrong reading it becomes its StreamFailed."""
    reader = open_video(
        source,
        size,
        decoder=opts.decoder,
        resize=opts.resize,
        storage_options=storage_options,
        max_frame_pixels=opts.max_frame_pixels,
    )
    uri = reader.source.display
    try:
        with reader:
            info = reader.info
            sampling = sample_frames(info, fps=opts.fps, every=opts.every, output_fps=opts.output_fps)
            if len(sampling.targets) == 0:
                raise VideoError(uri, "no-frames", "the video has no frames to compute maps for", "check the file")
            n = len(sampling.sequence)
            yield StreamStart(key, reader.source.video_id, uri, info, sampling, sampling.targets, 0, n)
            position = 0
            for chunk in reader.iter_frames(sampling.sequence, opts.chunk):
                yield FrameChunk(key, position, chunk)
                position += len(chunk)
            yield StreamEnd(key)
    except VideoError as e:
        yield StreamFailed(key, e.reason, str(e))
    except ConfigError:
        raise  # bad options are the run's problem, not this video's
    except Exception as e:  # any other failure stays this video's: the shard goes on
        from tased_batch.run.runrecords import internal_error

        failed, trace = internal_error(source.video_id, uri, e)
        yield StreamFailed(key, "internal-error", f"{uri}: {failed.error}", trace)


def serial_streams(
    sources: Sequence[VideoSource | str],
    size: tuple[int, int],
    options: DecodeOptions | None = None,
    storage_options: dict | None = None,
    clock: StageClock | None = None,
) -> Generator[StreamEvent, None, None]:
    """Stream events of ``sources``, decoded one after another in a background thread.

    Stream ``key`` is the video's index in ``sources``; one stream per video, never split.
    ``clock``: receives the decoding thread's seconds (``decode``, fetching included).
    """
    opts = options or DecodeOptions()

    def produce() -> Iterator[StreamEvent]:
        for key, source in enumerate(sources):
            events = _video_events(key, as_source(source), size, opts, storage_options)
            yield from events if clock is None else clock.timed(events, "decode")

    return prefetch(produce(), PREFETCH_CHUNKS)


StreamProducer = Callable[[Sequence[VideoSource]], Iterable[StreamEvent]]


def predict_video(
    source: VideoSource | str,
    engine: Engine,
    *,
    size: tuple[int, int],
    options: DecodeOptions | None = None,
    storage_options: dict | None = None,
) -> VideoResult:
    """Compute the maps of one video; failures come back as a failed :class:`VideoResult`."""
    video = as_source(source)
    start: StreamStart | None = None
    positions, maps = [], []

    def watched(events: Iterable[StreamEvent]) -> Iterator[StreamEvent]:
        nonlocal start
        for event in events:
            if isinstance(event, StreamStart):
                start = event
            yield event

    events = serial_streams([video], size, options, storage_options)
    try:
        for out in engine.run_streams(watched(events)):
            if isinstance(out, MapBatch):
                positions.append(out.positions)
                maps.append(out.maps)
            elif not out.ok:
                meta = {} if start is None else vars(meta_of(start))
                return VideoResult.failed(video.video_id, video.display, out.reason or "error", out.error or "", **meta)
    finally:
        events.close()  # stop the decoding thread
    assert start is not None
    sampling = start.sampling
    return VideoResult(
        video_id=video.video_id,
        source=video.display,
        frame_indices=sampling.target_frames(),
        timestamps=sampling.target_times(),
        maps=np.concatenate(maps),
        **vars(meta_of(start)),
    )
