"""One video end to end: decode -> engine -> a :class:`VideoResult`. Used by `predict` and the Ray actors.

Bad input never escapes as an exception: a :class:`VideoError` becomes a failed result
that carries the reason, so a batch goes on and the failure is recorded.

Nothing waits on I/O: frames are decoded in a background thread that keeps a few chunks
ready (:func:`prefetch`), and :class:`BackgroundWriter` stores finished videos in another
while the next one computes. Decoders and torch release the GIL in their native code.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from tased_batch.decode import open_video, sample_frames
from tased_batch.engine import Engine
from tased_batch.errors import VideoError
from tased_batch.records import VideoResult
from tased_batch.sources import VideoSource


T = TypeVar("T")
_DONE = object()
PREFETCH_CHUNKS = 2  # decoded chunks kept ready: one being consumed, one arriving


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
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
    def write(self, result: VideoResult) -> None: ...


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

    def submit(self, result: VideoResult) -> None:
        self._raise()
        self._queue.put(result)

    def close(self) -> None:
        """Wait until everything submitted is written; raise the first write error."""
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        self._raise()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class DecodeOptions:
    """How frames are read and sampled; part of a run's config fingerprint."""

    decoder: str = "auto"
    resize: str = "decoder"
    fps: float | None = None
    every: int | None = None
    output_fps: float | None = None
    chunk: int = 64


def predict_video(
    source: VideoSource | str,
    engine: Engine,
    *,
    size: tuple[int, int],
    options: DecodeOptions | None = None,
    storage_options: dict | None = None,
) -> VideoResult:
    """Compute the maps of one video; failures come back as a failed :class:`VideoResult`."""
    opts = options or DecodeOptions()
    reader = open_video(source, size, decoder=opts.decoder, resize=opts.resize, storage_options=storage_options)
    video_id, uri = reader.source.video_id, reader.source.display
    meta: dict = {}
    try:
        with reader:
            info = reader.info
            meta = dict(n_frames=info.n_frames, fps=info.fps, width=info.width, height=info.height, duration=info.duration)
            sampling = sample_frames(info, fps=opts.fps, every=opts.every, output_fps=opts.output_fps)
            if len(sampling.targets) == 0:
                raise VideoError(uri, "no-frames", "the video has no frames to compute maps for", "check the file")
            positions, maps = [], []
            chunks = prefetch(reader.iter_frames(sampling.sequence, opts.chunk), PREFETCH_CHUNKS)
            try:
                for pos, batch in engine.run(chunks, sampling.targets):
                    positions.append(pos)
                    maps.append(batch)
            finally:
                chunks.close()  # stop the decoding thread before the reader closes
    except VideoError as e:
        return VideoResult.failed(video_id, uri, e.reason, str(e), **meta)
    positions = np.concatenate(positions)
    if not np.array_equal(positions, sampling.targets):
        return VideoResult.failed(
            video_id, uri, "truncated",
            f"{uri}: only {len(positions)} of {len(sampling.targets)} maps could be computed",
            **meta,
        )
    return VideoResult(
        video_id=video_id,
        source=uri,
        frame_indices=sampling.target_frames(),
        timestamps=sampling.target_times(),
        maps=np.concatenate(maps),
        **meta,
    )
