"""The decode stage: several decoders feeding one consumer (a model actor) with bounded chunks.

:class:`DecodeFeed` turns video sources into :mod:`tased_batch.decode.streams` events: per stream
one :class:`StreamStart`, :class:`FrameChunk` s in position order, then :class:`StreamEnd`
or :class:`StreamFailed`; streams of different videos (and segments of one long video)
interleave. Design, after cosmos-curate and NeMo Curator's decode pools:

* ``workers`` decode processes, one stream at a time each, one decoding thread each by
  default. They are started with ``subprocess`` (fork + exec: nothing of the consumer's
  torch, CUDA or decord state is inherited, and no ``__main__`` is re-imported), die with
  the consumer (``PR_SET_PDEATHSIG`` plus a parent watchdog: Ray SIGKILLs actors), and are
  replaced after ``max_videos_per_worker`` videos so a leaking decoder cannot grow.
* Each worker has its own pipe to the consumer; a chunk's raw bytes cross it once each
  way (no pickling of frames). A worker blocks while its pipe is full, so when the
  consumer is slower than decoding nothing grows: at most about two chunks per worker are
  alive (one being decoded, one in the pipe). A killed worker corrupts only its own pipe.
* Long videos are split into segments of ``segment`` target positions; a segment delivers
  frames ``first..last-1`` (31 frames of history before its first target, 31 after its
  last in the head windows), so its windows are exactly those of the whole video. Videos
  shorter than 63 positions are never split; nor are videos PyAV decodes (it cannot seek).
* Objects in a store (and tar members) are fetched ``prefetch`` videos ahead in threads of
  the consumer, into the spool, so the decoders never wait on the network; every segment
  of a long object reads the same spooled copy, removed when its last segment is done.
* A deadline per video (``video_timeout``, default derived from its length); a worker past
  it is killed and replaced, and its stream fails with reason ``timeout``. Time the worker
  spends blocked because the consumer is not reading does not count.
* ``workers=0`` decodes in a background thread of the consumer (``predict``, tests); GPU
  decoding (torchcodec on CUDA) also runs in threads of the consumer, since CUDA tensors
  cannot cross processes cheaply.

A video that cannot even be opened still gets a :class:`StreamStart` (with ``n_frames`` 0
and no targets) before its :class:`StreamFailed`, so every stream names its video.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import os
import pickle
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait

import numpy as np

from tased_batch.core.clocks import StageClock
from tased_batch.core.errors import ConfigError, VideoError
from tased_batch.decode.backend import BACKENDS
from tased_batch.decode.fetch import Fetched, fetch
from tased_batch.decode.options import MAX_FRAME_PIXELS
from tased_batch.decode.reader import VideoReader, open_video, resolve_device, source_of
from tased_batch.decode.sampling import Sampling, VideoInfo, sample_frames
from tased_batch.decode.sources import VideoSource, is_remote
from tased_batch.decode.streams import FrameChunk, StreamEnd, StreamEvent, StreamFailed, StreamStart

HISTORY = 31  # frames a window reaches back (or, for the first 31 targets, forward): TASED-Net's 32 - 1
MIN_SPLIT = 2 * HISTORY + 1  # shorter sequences are never split (their head windows span them)
OPEN_SECONDS = 120.0  # default deadline to open and probe a video
MIN_DECODE_FPS = 10.0  # default deadline: decoding slower than this is a hang
MAX_AUTO_WORKERS = 8


def auto_workers(cpus: int | None = None) -> int:
    """Decode workers for one consumer: the CPUs it may use (affinity, or ``cpus``) less one for itself."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_AUTO_WORKERS, int(cpus) - 1))


def window_span(targets: np.ndarray, length: int) -> tuple[int, int]:
    """Positions ``first..last-1`` that the windows of sorted ``targets`` read, in a sequence of ``length``.

    Target ``i >= 31`` reads ``i-31..i``; a head target ``i < 31`` reads ``i..i+31``
    (wrapping around sequences shorter than 32, which are therefore read whole).
    """
    lo, hi = int(targets[0]), int(targets[-1])
    if length < MIN_SPLIT:
        return 0, length
    first = lo - HISTORY if lo >= HISTORY else 0
    last = max(hi, min(HISTORY - 1, hi) + HISTORY) + 1 if lo < HISTORY else hi + 1
    return first, min(length, last)


def plan_segments(sampling: Sampling, segment: int) -> list[tuple[np.ndarray, int, int]]:
    """Split a video's positions into about equal runs of about ``segment``: (targets, first, last) each.

    Runs without targets are dropped; videos up to 1.5 segments long stay whole.
    """
    length = len(sampling.sequence)
    targets = sampling.targets
    if length < MIN_SPLIT or length <= segment * 1.5:
        return [(targets, 0, length)]
    edges = np.linspace(0, length, max(1, round(length / segment)) + 1).round().astype(np.int64)
    out = []
    for lo, hi in itertools.pairwise(edges):
        part = targets[(targets >= lo) & (targets < hi)]
        if len(part):
            first, last = window_span(part, length)
            out.append((part, first, last))
    return out


@dataclass(frozen=True)
class FeedOptions:
    """How every video of a feed is decoded (sent to each worker once)."""

    size: tuple[int, int]
    decoder: str = "auto"
    resize: str = "decoder"
    fps: float | None = None
    every: int | None = None
    output_fps: float | None = None
    storage_options: dict = field(default_factory=dict)
    threads: int = 1
    chunk: int = 64
    segment: int = 1024
    device: str = "cpu"
    max_frame_pixels: int = MAX_FRAME_PIXELS


@dataclass(frozen=True)
class Segment:
    """A part of a video already probed by the worker that planned it."""

    index: int
    count: int
    info: VideoInfo
    sampling: Sampling
    targets: np.ndarray
    first: int
    last: int


@dataclass(frozen=True)
class Task:
    """One stream to decode: a whole video (``segment`` None: probe, then maybe split) or a segment."""

    key: int
    video_id: str
    source: VideoSource  # where the worker reads (a spooled copy for prefetched objects)
    display: str  # how the video is named (its original URI)
    segment: Segment | None = None


# ---------------------------------------------------------------------------------------
# What a decoder does with one task (the same in a worker process and in a thread).

Emit = Callable[[tuple], None]


def run_task(task: Task, opts: FeedOptions, emit: Emit) -> float:
    """Decode one task, emitting ("plan"|"start"|"chunk"|"end"|"failed", ...) messages; never raises.

    Returns the seconds spent decoding (not waiting for the consumer): the run's stage clocks."""
    started = False
    began = time.perf_counter()
    waited = 0.0

    def send(message: tuple) -> None:
        nonlocal waited
        at = time.perf_counter()
        emit(message)
        waited += time.perf_counter() - at

    def start(
        info: VideoInfo, sampling: Sampling, targets: np.ndarray, first: int, last: int, seg: int, segs: int
    ) -> None:
        nonlocal started
        started = True
        send(
            (
                "start",
                StreamStart(task.key, task.video_id, task.display, info, sampling, targets, first, last, seg, segs),
            )
        )

    try:
        reader = VideoReader(
            task.source,
            opts.size,
            decoder=opts.decoder,
            resize=opts.resize,
            storage_options=opts.storage_options,
            threads=opts.threads,
            device=opts.device,
            display=task.display,
            max_frame_pixels=opts.max_frame_pixels,
        )
        with reader:
            info = reader.info
            seg = task.segment
            if seg is None:
                sampling = sample_frames(info, fps=opts.fps, every=opts.every, output_fps=opts.output_fps)
                if len(sampling.targets) == 0:
                    raise VideoError(
                        task.display, "no-frames", "the video has no frames to compute maps for", "check the file"
                    )
                parts = plan_segments(sampling, opts.segment) if reader.backend != "pyav" else []
                if len(parts) > 1:
                    send(
                        (
                            "plan",
                            task.key,
                            [Segment(i, len(parts), info, sampling, *p) for i, p in enumerate(parts)][1:],
                        )
                    )
                    targets, first, last = parts[0]
                else:
                    targets, first, last = sampling.targets, 0, len(sampling.sequence)
                start(info, sampling, targets, first, last, 0, max(1, len(parts)))
            else:
                if info.n_frames != seg.info.n_frames:
                    raise VideoError(task.display, "decode-error", "the video changed between its segments", "retry it")
                sampling = seg.sampling
                start(seg.info, sampling, seg.targets, seg.first, seg.last, seg.index, seg.count)
                first, last = seg.first, seg.last
            position = first
            for frames in reader.iter_frames(sampling.sequence[first:last], opts.chunk):
                send(("chunk", task.key, position, frames))
                position += len(frames)
        send(("end", task.key))
    except VideoError as e:
        if not started:
            start(_NO_INFO, _NO_SAMPLING, _EMPTY, 0, 0, 0, 1)
        send(("failed", task.key, e.reason, str(e)))
    except Exception as e:  # noqa: BLE001 - any failure of one video is that video's failure record
        if not started:
            start(_NO_INFO, _NO_SAMPLING, _EMPTY, 0, 0, 0, 1)
        send(("failed", task.key, "decode-error", f"{task.display}: {type(e).__name__}: {e}"))
    return time.perf_counter() - began - waited


_EMPTY = np.zeros(0, np.int64)
_NO_INFO = VideoInfo(0, 0.0, 0, 0, 0.0)
_NO_SAMPLING = Sampling(_EMPTY, _EMPTY, 0.0)


# ---------------------------------------------------------------------------------------
# Decoders: worker processes, or threads of the consumer.


class _Decoder:
    """One decoder (process or thread) and the tasks handed to it, oldest (the one running) first."""

    def __init__(self, ident: int) -> None:
        self.ident = ident
        self.tasks: collections.deque[Task] = collections.deque()
        self.since = 0.0  # the feed's busy clock when the running task began
        self.limit = 0.0  # seconds of that clock the running task may take
        self.given = 0  # tasks handed to it in its life
        self.retiring = False

    def send(self, task: Task | None) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError


SLOTS = 2  # chunk slots of shared memory per worker: one being filled, one being copied out
SHM_DIR = "/dev/shm"


def _ring_file(slot_bytes: int) -> str | None:
    """A fresh file in shared memory (tmpfs) for a worker's chunk slots; None where there is no room."""
    if not os.path.isdir(SHM_DIR) or shutil.disk_usage(SHM_DIR).free < 4 * SLOTS * slot_bytes:
        return None
    _sweep_rings()
    fd, path = tempfile.mkstemp(prefix=f"tased-feed-{os.getpid()}-", dir=SHM_DIR)
    try:
        os.ftruncate(fd, SLOTS * slot_bytes)
    finally:
        os.close(fd)
    return path


def _sweep_rings() -> None:
    """Remove ring files of consumers that died before their workers mapped them (normally the worker unlinks it)."""
    for name in os.listdir(SHM_DIR):
        parts = name.split("-")
        if len(parts) < 4 or parts[:2] != ["tased", "feed"] or not parts[2].isdigit():
            continue
        try:
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(SHM_DIR, name))
        except PermissionError:
            pass


class _ProcessDecoder(_Decoder):
    """A worker process. Frames come through a ring of shared-memory slots (copied out here,
    then the slot is handed back), or as raw bytes through the result pipe where /dev/shm is
    too small; benchmarks/feed_transport.py measured the ring ~2.8x cheaper."""

    def __init__(self, ident: int, opts: FeedOptions) -> None:
        super().__init__(ident)
        self.opts = opts
        slot_bytes = opts.chunk * opts.size[0] * opts.size[1] * 3
        self.ring_path = _ring_file(slot_bytes)
        self.ring: np.ndarray | None = None
        if self.ring_path is not None:
            self.ring = np.memmap(self.ring_path, np.uint8, "r+", shape=(SLOTS, opts.chunk, *opts.size, 3))
        task_read, task_write = os.pipe()
        result_read, result_write = os.pipe()
        cmd = [
            sys.executable,
            "-m",
            "tased_batch.decode.feed_worker",
            str(task_read),
            str(result_write),
            str(os.getpid()),
            self.ring_path or "",
        ]
        try:
            self.proc = subprocess.Popen(cmd, pass_fds=(task_read, result_write), close_fds=True)
        finally:
            os.close(task_read)
            os.close(result_write)
        self.tasks_conn = Connection(task_write, readable=False)
        self.conn = Connection(result_read, writable=False)
        self.tasks_conn.send_bytes(pickle.dumps(opts))

    def send(self, task: Task | None) -> None:
        self.tasks_conn.send_bytes(pickle.dumps(task))

    def receive(self) -> tuple:
        message = pickle.loads(self.conn.recv_bytes())
        if message[0] == "chunk":
            _, key, start, shape, dtype = message
            frames = np.empty(shape, dtype)
            self.conn.recv_bytes_into(frames.data.cast("B"))
            return ("chunk", key, start, frames)
        if message[0] == "slot":
            _, key, start, slot, count = message
            assert self.ring is not None
            frames = np.array(self.ring[slot, :count])
            with contextlib.suppress(OSError):  # a retiring worker may have exited: its pipe tells if it died
                self.tasks_conn.send_bytes(pickle.dumps(("free", slot)))
            return ("chunk", key, start, frames)
        return message

    def idle(self) -> bool:
        """Alive, with no task and not retiring: fit to serve another feed."""
        return not self.tasks and not self.retiring and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for conn in (self.conn, self.tasks_conn):
            conn.close()
        self.ring = None
        if self.ring_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.ring_path)
            self.ring_path = None


class _ThreadDecoder(_Decoder):
    def __init__(self, ident: int, opts: FeedOptions, out: queue.Queue) -> None:
        super().__init__(ident)
        self._inbox: queue.Queue = queue.Queue()
        self._dead = threading.Event()
        self._opts, self._out = opts, out
        self.thread = threading.Thread(target=self._loop, name=f"tased-decode-{ident}", daemon=True)
        self.thread.start()

    def _emit(self, message: tuple) -> None:
        while not self._dead.is_set():
            try:
                self._out.put((self.ident, message), timeout=0.1)
                return
            except queue.Full:
                continue
        raise SystemExit  # abandoned: stop decoding for a feed that no longer listens

    def _loop(self) -> None:
        try:
            while True:
                task = self._inbox.get()
                if task is None or self._dead.is_set():
                    return
                self._emit(("done", task.key, run_task(task, self._opts, self._emit)))
        except SystemExit:
            return

    def send(self, task: Task | None) -> None:
        self._inbox.put(task)

    def kill(self) -> None:
        """A thread cannot be stopped: it is abandoned, and whatever it emits later is ignored."""
        self._dead.set()
        self._inbox.put(None)


class DecoderPool:
    """Idle decode worker processes kept between feeds, so that each shard does not pay their start-up.

    A worker process takes ~0.3-0.6 s to start (Python, numpy, the decoders): per shard of short
    clips that is model time lost on every shard. A :class:`ShardProcessor` owns one pool and
    hands it to each shard's :class:`DecodeFeed`; a feed takes idle workers of its options from
    the pool and, when it closes, gives back those that finished every task (busy ones are
    killed as before). Workers still die with their consumer and are still recycled after
    ``max_videos_per_worker`` videos, counted across feeds.
    """

    def __init__(self) -> None:
        self._idle: list[_ProcessDecoder] = []

    def __len__(self) -> int:
        return len(self._idle)

    def take(self, opts: FeedOptions) -> _ProcessDecoder | None:
        """An idle, live worker started with ``opts``; None when there is none."""
        while self._idle:
            dec = self._idle.pop()
            if dec.opts == opts and dec.proc.poll() is None:
                return dec
            dec.kill()
        return None

    def give(self, dec: _ProcessDecoder) -> None:
        self._idle.append(dec)

    def close(self) -> None:
        """Stop every idle worker."""
        while self._idle:
            self._idle.pop().kill()


# ---------------------------------------------------------------------------------------


class DecodeFeed:
    """Decode ``sources`` with several decoders into one stream of :mod:`tased_batch.decode.streams` events.

    Iterate it once (``for event in feed``); ``close()`` (or leaving a ``with`` block, or
    closing the iterator) stops and reaps every decoder, and removes spooled copies.
    Options: ``size`` (H, W) model size; ``decoder``/``resize``/``fps``/``every``/
    ``output_fps`` as :func:`tased_batch.decode.open_video` and
    :func:`~tased_batch.decode.sample_frames`; ``workers`` decode processes (``"auto"``:
    :func:`auto_workers` of ``cpus``; 0: one thread in this process); ``decoder_threads``
    per decoder (0: the decoder's own choice); ``chunk`` frames per :class:`FrameChunk`;
    ``segment`` target positions per segment of a long video; ``prefetch`` store objects
    fetched ahead; ``max_videos_per_worker`` before a worker is replaced;
    ``video_timeout`` seconds per stream (None: 120 s plus 0.1 s per frame); ``device``
    where torchcodec decodes (None: the GPU for ``auto``/``torchcodec`` when there is one,
    then decoders are threads of this process); ``first_key`` the first stream key;
    ``pool`` a :class:`DecoderPool` whose idle workers this feed uses and gets back;
    ``clock`` receives the decoders' decode seconds and the fetch seconds.
    """

    def __init__(
        self,
        sources: Iterable[VideoSource | str],
        size: tuple[int, int],
        *,
        decoder: str = "auto",
        resize: str = "decoder",
        fps: float | None = None,
        every: int | None = None,
        output_fps: float | None = None,
        storage_options: dict | None = None,
        workers: int | str = "auto",
        decoder_threads: int = 1,
        cpus: int | None = None,
        chunk: int = 64,
        segment: int = 1024,
        prefetch: int = 2,
        max_videos_per_worker: int = 200,
        video_timeout: float | None = None,
        device: str | None = None,
        first_key: int = 0,
        pool: DecoderPool | None = None,
        clock: StageClock | None = None,
        max_frame_pixels: int = MAX_FRAME_PIXELS,
    ) -> None:
        open_video("validate.mp4", size, decoder=decoder, resize=resize)  # option errors now, not per video
        sample_frames(VideoInfo(1, 30.0, 1, 1, 1 / 30), fps=fps, every=every, output_fps=output_fps)
        if segment < MIN_SPLIT:
            raise ConfigError(f"segments must hold at least {MIN_SPLIT} positions, got {segment}")
        if video_timeout is not None and not video_timeout > 0:
            raise ConfigError(f"--video-timeout must be positive, got {video_timeout}")
        resolved = resolve_device(decoder, device)
        gpu = resolved.startswith("cuda") and (
            decoder == "torchcodec" or (decoder == "auto" and BACKENDS["torchcodec"].unavailable() is None)
        )
        if workers == "auto":
            count = auto_workers(cpus)
        elif isinstance(workers, int) and workers >= 0:
            count = workers
        else:
            raise ConfigError(f"--decode-workers must be a number >= 0 or auto, got {workers!r}")
        self.workers = count
        self.in_process = count == 0 or gpu
        self.options = FeedOptions(
            size=(int(size[0]), int(size[1])),
            decoder=decoder,
            resize=resize,
            fps=fps,
            every=every,
            output_fps=output_fps,
            storage_options=dict(storage_options or {}),
            threads=int(decoder_threads),
            chunk=max(1, int(chunk)),
            segment=int(segment),
            device=resolved if gpu else "cpu",
            max_frame_pixels=int(max_frame_pixels),
        )
        self.prefetch = max(0, int(prefetch))
        self.max_videos_per_worker = max(1, int(max_videos_per_worker))
        self.video_timeout = video_timeout
        self._workers_pool = pool
        self.peak_buffered = 0  # most chunks ever decoded and not yet handed to the consumer (in this process)
        self._sources = iter(sources)
        self._keys = itertools.count(first_key)
        self._decoders: list[_Decoder] = []
        self._idents = itertools.count()
        self._started_count = 0
        self._ready: collections.deque[Task] = collections.deque()  # segments first, then fetched videos
        self._fetching: collections.deque[tuple[VideoSource, concurrent.futures.Future | None]] = collections.deque()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._fetched: dict[str, tuple[Fetched, int]] = {}  # video_id -> (spooled copy, tasks still using it)
        self._events: collections.deque[StreamEvent] = collections.deque()
        self._started: set[int] = set()  # streams started and not yet ended or failed
        self._out: queue.Queue = queue.Queue(maxsize=2 * max(1, count))
        self._busy = 0.0  # seconds spent waiting for decoders: the clock deadlines are measured on
        self.clock = clock or StageClock()  # decode and fetch seconds (the run's stage clocks)
        self._closed = False
        self._iterating = False

    # -- public --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[StreamEvent]:
        if self._iterating:
            raise RuntimeError("a DecodeFeed is iterated once")
        self._iterating = True
        try:
            yield from self._run()
        finally:
            self.close()

    def __enter__(self) -> DecodeFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every decoder (killing workers that are still busy) and delete spooled copies."""
        if self._closed:
            return
        self._closed = True
        for dec in self._decoders:
            pool = self._workers_pool
            if pool is not None and isinstance(dec, _ProcessDecoder) and dec.idle():
                pool.give(dec)
            else:
                dec.kill()
        self._decoders.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for _, future in self._fetching:
            if future is not None:
                future.add_done_callback(_release_result)
        for fetched, _ in self._fetched.values():
            fetched.release()
        self._fetched.clear()

    @property
    def decoders_started(self) -> int:
        """Decoders started so far (more than ``workers`` once some were recycled or replaced)."""
        return self._started_count

    def worker_pids(self) -> list[int]:
        """Process ids of the live decode workers (empty when decoding in threads)."""
        return [d.proc.pid for d in self._decoders if isinstance(d, _ProcessDecoder)]

    # -- scheduling ----------------------------------------------------------------------

    def _run(self) -> Iterator[StreamEvent]:
        size = max(1, self.workers)
        for _ in range(size):
            self._start_decoder()
        while True:
            self._feed_decoders()
            while self._events:
                yield self._events.popleft()
            if not any(dec.tasks for dec in self._decoders) and not self._ready and not self._fetching:
                return
            self._receive()

    def _start_decoder(self) -> _Decoder:
        ident = next(self._idents)
        self._started_count += 1
        dec: _Decoder
        if self.in_process:
            dec = _ThreadDecoder(ident, self.options, self._out)
        else:
            pooled = self._workers_pool.take(self.options) if self._workers_pool is not None else None
            if pooled is not None:
                pooled.ident, pooled.since, pooled.limit = ident, self._busy, 0.0
            dec = pooled or _ProcessDecoder(ident, self.options)
        self._decoders.append(dec)
        return dec

    def _next_task(self) -> Task | None:
        """The next stream to decode: a planned segment, else the next fetched video; None if none is ready."""
        while True:
            self._fill_prefetch()
            if self._ready:
                return self._ready.popleft()
            if not self._fetching or not (self._fetching[0][1] is None or self._fetching[0][1].done()):
                return None
            source, future = self._fetching.popleft()
            task = self._fetched_task(source, future)
            if task is not None:
                return task

    def _fill_prefetch(self) -> None:
        while len(self._fetching) < self.prefetch + 1:
            try:
                item = next(self._sources)
            except StopIteration:
                return
            source = item if isinstance(item, VideoSource) else source_of(item)
            future = None
            if is_remote(source.uri) or source.member is not None:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(max(1, self.prefetch), "tased-fetch")
                future = self._pool.submit(self._fetch, source)
            self._fetching.append((source, future))

    def _fetch(self, source: VideoSource) -> Fetched:
        with self.clock.time("fetch"):
            return fetch(source, self.options.storage_options)

    def _fetched_task(self, source: VideoSource, future: concurrent.futures.Future | None) -> Task | None:
        key = next(self._keys)
        if future is None:
            return Task(key, source.video_id, source, source.display)
        try:
            fetched: Fetched = future.result()
        except VideoError as e:
            self._fail_unopened(key, source, e.reason, str(e))
            return None
        except Exception as e:  # noqa: BLE001 - a storage failure of one video is that video's record
            self._fail_unopened(key, source, "io-error", f"{source.display}: {type(e).__name__}: {e}")
            return None
        if fetched.path is None:  # a folder of frames, or an object streamed: the worker reads it itself
            fetched.release()
            return Task(key, source.video_id, source, source.display)
        self._fetched[source.video_id] = (fetched, 1)
        return Task(key, source.video_id, VideoSource(source.video_id, fetched.path), source.display)

    def _fail_unopened(self, key: int, source: VideoSource, reason: str, error: str) -> None:
        self._events.append(StreamStart(key, source.video_id, source.display, _NO_INFO, _NO_SAMPLING, _EMPTY, 0, 0))
        self._events.append(StreamFailed(key, reason, error))

    def _feed_decoders(self) -> None:
        """Keep two tasks with every decoder (one running, one queued), and replace retired ones."""
        for dec in list(self._decoders):
            while not dec.retiring and len(dec.tasks) < 2:
                task = self._next_task()
                if task is None:
                    break
                if not dec.tasks:
                    dec.since, dec.limit = self._busy, self._open_limit()
                dec.tasks.append(task)
                dec.send(task)
                dec.given += 1
                if dec.given >= self.max_videos_per_worker:
                    dec.retiring = True
                    dec.send(None)
                    self._start_decoder()  # the successor starts up while this one finishes

    def _open_limit(self) -> float:
        return self.video_timeout if self.video_timeout is not None else OPEN_SECONDS

    def _receive(self) -> None:
        """Wait for the next messages from decoders, enforcing deadlines while waiting."""
        began = time.monotonic()
        messages: list[tuple[_Decoder | None, tuple]] = []
        if self.in_process:
            try:
                ident, message = self._out.get(timeout=0.2)
                messages.append((self._by_ident(ident), message))
                while True:
                    ident, message = self._out.get_nowait()
                    messages.append((self._by_ident(ident), message))
            except queue.Empty:
                pass
            self.peak_buffered = max(self.peak_buffered, self._out.qsize() + sum(m[1][0] == "chunk" for m in messages))
        else:
            procs = [d for d in self._decoders if isinstance(d, _ProcessDecoder)]
            ready = wait([d.conn for d in procs], 0.2)
            for dec in procs:
                if dec.conn in ready:
                    try:
                        messages.append((dec, dec.receive()))
                    except (EOFError, OSError):
                        messages.append((dec, ("died",)))
            self.peak_buffered = max(self.peak_buffered, sum(m[1][0] == "chunk" for m in messages))
        self._busy += time.monotonic() - began
        for source, message in messages:
            if source is not None and source in self._decoders:
                self._handle(source, message)
        self._check_deadlines()

    def _by_ident(self, ident: int) -> _Decoder | None:
        return next((d for d in self._decoders if d.ident == ident), None)

    def _handle(self, dec: _Decoder, message: tuple) -> None:
        kind = message[0]
        if kind == "chunk":
            _, key, start, frames = message
            self._events.append(FrameChunk(key, start, frames))
        elif kind == "start":
            event: StreamStart = message[1]
            self._events.append(event)
            self._started.add(event.key)
            frames = event.last - event.first
            if self.video_timeout is None:
                dec.limit = (self._busy - dec.since) + OPEN_SECONDS + frames / MIN_DECODE_FPS
        elif kind == "end":
            self._events.append(StreamEnd(message[1]))
            self._started.discard(message[1])
        elif kind == "failed":
            _, key, reason, error = message
            self._events.append(StreamFailed(key, reason, error))
            self._started.discard(key)
        elif kind == "plan":
            _, key, segments = message
            task = next(t for t in dec.tasks if t.key == key)
            planned = [replace(task, key=next(self._keys), segment=s) for s in segments]
            self._ready.extendleft(reversed(planned))
            if task.video_id in self._fetched:
                fetched, users = self._fetched[task.video_id]
                self._fetched[task.video_id] = (fetched, users + len(planned))
        elif kind == "done":
            self.clock.add("decode", message[2])
            self._finish(dec, message[1])
        elif kind == "died":
            self._lose(dec, "decode-error", "the decoder process died ({why}); the video may crash the decoder")

    def _finish(self, dec: _Decoder, key: int) -> None:
        task = dec.tasks.popleft()
        assert task.key == key, (task.key, key)
        self._release(task)
        dec.since, dec.limit = self._busy, self._open_limit()
        if dec.retiring and not dec.tasks:
            dec.kill()
            self._decoders.remove(dec)

    def _release(self, task: Task) -> None:
        entry = self._fetched.get(task.video_id)
        if entry is None or task.source.uri != entry[0].path:
            return
        fetched, users = entry
        if users <= 1:
            fetched.release()
            del self._fetched[task.video_id]
        else:
            self._fetched[task.video_id] = (fetched, users - 1)

    def _check_deadlines(self) -> None:
        for dec in list(self._decoders):
            if dec.tasks and self._busy - dec.since > dec.limit:
                seconds = self._busy - dec.since
                self._lose(
                    dec,
                    "timeout",
                    f"no result after {seconds:.0f} s (deadline {dec.limit:.0f} s); its decoder was stopped",
                )
            elif isinstance(dec, _ProcessDecoder) and dec.proc.poll() is not None and not dec.retiring:
                self._lose(dec, "decode-error", "the decoder process died ({why}); the video may crash the decoder")

    def _lose(self, dec: _Decoder, reason: str, what: str) -> None:
        """A decoder is gone (killed at its deadline, or crashed): fail its running stream, requeue the rest."""
        dec.kill()
        if dec in self._decoders:
            self._decoders.remove(dec)
        why = ""
        if isinstance(dec, _ProcessDecoder):
            code = dec.proc.returncode
            why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        if dec.tasks:
            task = dec.tasks.popleft()
            if task.key not in self._started:
                self._events.append(
                    StreamStart(task.key, task.video_id, task.display, _NO_INFO, _NO_SAMPLING, _EMPTY, 0, 0)
                )
            self._events.append(StreamFailed(task.key, reason, f"{task.display}: {what.format(why=why)}"))
            self._started.discard(task.key)
            self._release(task)
            self._ready.extendleft(reversed(dec.tasks))  # queued, never started: another decoder takes them
            dec.tasks.clear()
        if not self._closed:
            self._start_decoder()


def _release_result(future: concurrent.futures.Future) -> None:
    """A fetch that finished after the feed closed: delete what it spooled."""
    if not future.cancelled() and future.exception() is None:
        future.result().release()
