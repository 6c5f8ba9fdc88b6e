"""The inference engine: streams of frames -> 32-frame windows -> TASED-Net -> uint8 maps. No Ray here.

The parts are separate modules: window arithmetic (:mod:`tased_batch.engine.windows`),
post-processing (:mod:`tased_batch.engine.postprocess`), the fast path (:mod:`tased_batch.engine.fastpath`:
BatchNorm folding, precision, batch sizing) and CUDA staging (:mod:`tased_batch.engine.staging`).
This module keeps the streams' state and the batching, and re-exports the names other
modules import from it.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from tased_batch.core.clocks import StageClock
from tased_batch.decode.streams import FrameChunk, StreamEnd, StreamEvent, StreamFailed, StreamStart
from tased_batch.engine.fastpath import (
    AUTO,
    CPU_AUTO_BATCH,
    CPU_BYTES_PER_PIXEL,
    MAX_AUTO_BATCH,
    MEMORY_FRACTION,
    PRECISIONS,
    auto_batch_size,
    fold_batchnorm,
    precision_context,
    precision_problem,
    precision_supported,
    torch_problem,
    window_bytes_cuda,
)
from tased_batch.engine.postprocess import (
    SIGMA,
    TRUNCATE,
    PostProcessor,
    blur_matrix,
    gaussian_kernel,
    postprocess_reference,
)
from tased_batch.engine.reuse import HEAD, SequenceCache, Stages, assemble
from tased_batch.engine.staging import HostCopy, Uploader, normalise
from tased_batch.engine.streams import EngineOutput, MapBatch, StreamDone
from tased_batch.engine.windows import (
    FIRST_WINDOWS,
    REUSE_MODES,
    parse_size,
    reuse_pays,
    window_end,
    window_frames,
    window_start,
)
from tased_batch.model import WINDOW

__all__ = [
    "AUTO",
    "CPU_AUTO_BATCH",
    "CPU_BYTES_PER_PIXEL",
    "FIRST_WINDOWS",
    "MAX_AUTO_BATCH",
    "MEMORY_FRACTION",
    "PRECISIONS",
    "REUSE_MODES",
    "SIGMA",
    "TRUNCATE",
    "WINDOW",
    "Engine",
    "MapStats",
    "PostProcessor",
    "auto_batch_size",
    "blur_matrix",
    "fold_batchnorm",
    "gaussian_kernel",
    "normalise",
    "parse_size",
    "postprocess_reference",
    "precision_problem",
    "precision_supported",
    "window_bytes_cuda",
    "window_end",
    "window_frames",
    "window_start",
]


MapStats = Callable[[torch.Tensor], dict[str, torch.Tensor]]


@dataclass
class _Stream:
    """The engine's state for one open stream: its frames on the device and its targets' progress.

    Targets move from *upcoming* (position not received yet) to *pending* (received, window
    incomplete) to *ready* (window complete, waiting for a batch) to produced. Only frames
    from the first window start of a ready, pending or upcoming target are kept.
    """

    key: int
    label: str
    targets: np.ndarray | None  # None: every position (Engine.run without targets)
    first: int
    whole: bool  # the whole video in one stream: it may loop at its end (short videos)
    next: int = 0  # index into targets (or the position itself when targets is None) of the first upcoming target
    pending: list[int] = field(default_factory=list)
    ready: deque[tuple[int, int]] = field(default_factory=deque)  # (target, sequence length its window uses)
    buffer: torch.Tensor | None = None  # normalised frames (3, T, H, W) on the device
    start: int = 0  # position of buffer[:, 0]
    end: int = 0  # one past the last position received
    ended: bool = False
    produced: int = 0
    reuse: bool = False  # windows share base1/base2 features (engine/reuse.py)
    caches: dict[str, SequenceCache] = field(default_factory=dict)  # "forward" / "head" sequence -> its cache

    def __post_init__(self) -> None:
        self.start = self.end = self.first

    @classmethod
    def opening(cls, event: StreamStart) -> _Stream:
        targets = np.asarray(event.targets, np.int64)
        if targets.size and (np.any(np.diff(targets) <= 0) or targets[0] < event.first):
            raise ValueError(f"stream {event.key} ({event.video_id}): targets must be increasing and >= first")
        whole = event.segments == 1 and event.first == 0
        return cls(key=event.key, label=event.source, targets=targets, first=int(event.first), whole=whole)

    def upcoming(self) -> int | None:
        if self.targets is None:
            return self.next
        return int(self.targets[self.next]) if self.next < len(self.targets) else None

    def add(self, frames: torch.Tensor) -> None:
        """Append frames; targets whose windows are now complete become ready, in position order."""
        self.buffer = frames if self.buffer is None else torch.cat([self.buffer, frames], dim=1)
        self.end += frames.shape[1]
        while (t := self.upcoming()) is not None and t < self.end:
            self.pending.append(t)
            self.next += 1
        ready = 0  # a prefix of pending: keeps maps in position order
        while ready < len(self.pending) and window_end(self.pending[ready]) < self.end:
            ready += 1
        self.ready.extend((t, self.end) for t in self.pending[:ready])
        del self.pending[:ready]

    def finish(self) -> None:
        """The stream's last frame arrived: a whole video's remaining targets loop over its length."""
        self.ended = True
        if self.whole and self.buffer is not None:
            self.ready.extend((t, self.end) for t in self.pending)
            self.pending = []

    def missing(self) -> int:
        """How many targets can no longer be produced (past the end, or windows beyond a segment)."""
        return len(self.pending) + (0 if self.targets is None else len(self.targets) - self.next)

    def trim(self) -> None:
        """Drop frames no remaining window needs."""
        if self.buffer is None:
            return
        lowest = self.ready[0][0] if self.ready else (self.pending[0] if self.pending else self.upcoming())
        keep_from = (
            self.end if lowest is None or (self.ended and not self.ready) else max(window_start(lowest), self.start)
        )
        if keep_from >= self.end:
            self.buffer, self.start = None, self.end
        elif keep_from > self.start:
            self.buffer = self.buffer[:, keep_from - self.start :]
            self.start = keep_from
        if self.caches:
            self._trim_caches(None if self.buffer is None else lowest)

    def _trim_caches(self, lowest: int | None) -> None:
        """Keep shared features only for windows still to come (forward starts rise, head starts fall)."""
        if lowest is None:
            self.caches.clear()
            return
        if lowest >= WINDOW - 1:
            self.caches.pop("head", None)
        elif "head" in self.caches:
            self.caches["head"].keep(0, WINDOW - 2 - lowest)
        if "forward" in self.caches:
            self.caches["forward"].keep(max(lowest - WINDOW + 1, 0), 1 << 62)

    def sequence(self, kind: str) -> tuple[SequenceCache, Callable[[int, int], torch.Tensor], tuple[int, int]]:
        """A sequence the windows slide over: its cache, its frames by index, the indices with frames now.

        ``forward``: the stream's frames in time order (index = position). ``head``: the
        reversed first 62 frames (index v = frame 61 - v; looped for a whole video shorter than that).
        """
        assert self.buffer is not None
        buffer, start, end = self.buffer, self.start, self.end
        if kind == "forward":
            cache = self.caches.setdefault(kind, SequenceCache(direction=1))
            return cache, lambda lo, hi: buffer[:, lo - start : hi - start], (start, end)
        cache = self.caches.setdefault(kind, SequenceCache(direction=-1))
        looping = self.ended and self.whole

        def frames(lo: int, hi: int) -> torch.Tensor:
            index = [HEAD - 1 - v for v in range(lo, hi)]
            index = [(f % end if looping else f) - start for f in index]
            assert all(0 <= i < end - start for i in index), "head frames not received yet"
            return buffer[:, index]

        return cache, frames, (0 if looping else max(0, HEAD - end), HEAD)


@dataclass
class _Batch:
    """One batch queued on the device: which stream and targets each row belongs to."""

    rows: list[tuple[int, np.ndarray]]  # (stream key, positions) in row order
    maps: np.ndarray | HostCopy
    extras: dict[str, np.ndarray]

    def outputs(self) -> Iterator[MapBatch]:
        maps, extras = self.maps.result() if isinstance(self.maps, HostCopy) else (self.maps, self.extras)
        offset = 0
        for key, positions in self.rows:
            rows = slice(offset, offset + len(positions))
            offset += len(positions)
            yield MapBatch(key, positions, maps[rows], {name: v[rows] for name, v in extras.items()})


class Engine:
    """Turns streams of frames into saliency maps with one loaded TASED-Net.

    :meth:`run_streams` consumes the events of many streams (videos, or segments of long
    videos; see :mod:`tased_batch.decode.streams`) and fills each batch with windows from whichever
    streams have complete windows; :meth:`run` and :meth:`predict` are one video. Memory is
    bounded by the chunks plus 31 frames of history per open stream, whatever the video's length.

    ``batch_size="auto"`` is resolved at the first chunk (it depends on the frame size):
    on CUDA from ``torch.cuda.mem_get_info`` and a measured per-window footprint, on the
    CPU the measured best (:data:`CPU_AUTO_BATCH`) unless available memory says less.
    ``channels_last=True`` (the default) is the fast arithmetic: a private copy of the model
    with BatchNorm folded into the convolutions, in the channels-last 3-D memory format;
    maps stay within the parity tolerance. ``False`` runs the given model as the released
    script does (contiguous, unfolded): bit-exact with it at batch size 1.
    ``compile=True`` runs the model through ``torch.compile``. Short batches are padded to the
    batch size, so that every window runs at one batch shape: a map's bits do not depend on
    which other windows (of this video or others) shared its batch. ``map_stats`` is called on each batch's uint8
    (B, H, W) maps on the device; its (B, ...) tensors come back per row in ``MapBatch.extras``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: torch.device | str | None = None,
        batch_size: int | str = 4,
        precision: str = "fp32",
        channels_last: bool = True,
        compile: bool = False,
        first_windows: str = "reversed",
        map_stats: MapStats | None = None,
        reuse: str = "auto",
    ) -> None:
        if first_windows not in FIRST_WINDOWS:
            raise ValueError(f"first windows must be one of {', '.join(FIRST_WINDOWS)}, got {first_windows!r}")
        self.first_windows = first_windows
        if reuse not in REUSE_MODES:
            raise ValueError(f"reuse must be one of {', '.join(REUSE_MODES)}, got {reuse!r}")
        self.reuse = reuse
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        problem = torch_problem(self.device) or precision_problem(precision, self.device)
        if problem is not None:
            raise ValueError(problem)
        if batch_size != AUTO and (isinstance(batch_size, str) or int(batch_size) < 1):
            raise ValueError(f"batch size must be a positive integer or {AUTO!r}, got {batch_size!r}")
        self.channels_last = channels_last
        if channels_last:  # the fast arithmetic, on a private copy (the caller's model is untouched)
            folded = fold_batchnorm(copy.deepcopy(model).eval()).to(self.device)
            self.model = folded.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        else:
            self.model = model.to(self.device).eval()
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest conv kernels once
        self.compiled = compile
        # freezing: weights become constants, so inductor prepacks them and fuses conv + ReLU
        # (about 1.15x on the CPU at 224x384, see docs/benchmarks.md); safe as nothing trains here
        self._net = torch.compile(self.model, dynamic=False, options={"freezing": True}) if compile else self.model
        # None until resolved when batch_size == "auto"
        self.batch_size: int | None = None if batch_size == AUTO else int(batch_size)
        self.precision = precision
        self.map_stats = map_stats
        self.clock = StageClock()  # forward and post-processing seconds, for the run's stage clocks
        self._stages = Stages(self.model, torch.channels_last_3d if channels_last else torch.contiguous_format)
        self._post: dict[tuple[int, int], PostProcessor] = {}
        self._uploader = Uploader(self.device) if self.device.type == "cuda" else None

    def _postprocessor(self, h: int, w: int) -> PostProcessor:
        if (h, w) not in self._post:
            self._post[(h, w)] = PostProcessor(h, w, self.device)
        return self._post[(h, w)]

    def resolve_batch_size(self, size: tuple[int, int]) -> int:
        """The batch size, measuring it for ``"auto"`` at frame size (H, W) on first use."""
        if self.batch_size is None:
            if self.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(self.device)
                per_window = window_bytes_cuda(self.model, size, lambda w: self._raw_forward(w, self.model))
                self.batch_size = auto_batch_size(free, per_window, MAX_AUTO_BATCH)
            elif self.device.type == "cpu":
                import psutil

                per_window = CPU_BYTES_PER_PIXEL * size[0] * size[1]
                self.batch_size = auto_batch_size(psutil.virtual_memory().available, per_window, CPU_AUTO_BATCH)
            else:
                self.batch_size = CPU_AUTO_BATCH
        return self.batch_size

    def _raw_forward(self, windows: torch.Tensor, net: torch.nn.Module | None = None) -> torch.Tensor:
        if self.channels_last:
            windows = windows.contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode(), precision_context(self.precision, self.device):
            return (net or self._net)(windows).float()

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Raw model output (B, H, W) float32 for a batch of windows (B, 3, 32, H, W)."""
        n = windows.shape[0]
        batch = self.resolve_batch_size((int(windows.shape[-2]), int(windows.shape[-1])))
        # Always the full batch shape: convolution kernels (oneDNN, cuDNN) may round differently
        # at another batch size, and a window's map must not depend on how full its batch was
        # (the last batch of a video alone vs the same window among other videos' windows).
        # It also lets torch.compile compile once.
        if n < batch:
            pad = windows[-1:].expand(batch - n, *windows.shape[1:])
            return self._raw_forward(torch.cat([windows, pad]))[:n]
        return self._raw_forward(windows)

    def _upload(self, chunk: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(chunk, torch.Tensor) and chunk.device == self.device:
            return normalise(chunk)  # decoded on the model's device: no trip through host memory
        if self._uploader is not None:
            return self._uploader(chunk)
        return normalise(torch.as_tensor(chunk).to(self.device))

    def _windows(self, stream: _Stream, items: list[tuple[int, int]]) -> torch.Tensor:
        """The windows of some ready targets of one stream, gathered from its buffer: (3, b, 32, H, W)."""
        assert stream.buffer is not None
        positions = torch.tensor([window_frames(t, n, self.first_windows) for t, n in items]) - stream.start
        if stream.buffer.is_cuda:  # a pageable upload would wait for the compute stream: pin it
            positions = positions.pin_memory().to(stream.buffer.device, non_blocking=True)
        windows = stream.buffer[:, positions]  # a gathered copy
        if self.first_windows == "released":
            head = [b for b, (t, _) in enumerate(items) if t < WINDOW - 1]
            if head:  # the released script's flip: colour channels (RGB -> BGR) of the head windows
                windows[:, head] = windows[:, head].flip(0)
        return windows

    def _reuses(self, stream: _Stream) -> bool:
        """``auto``: reuse with the fast arithmetic where targets are dense enough to share work.

        ``channels_last=False`` is the released script's arithmetic to the bit, so it never reuses.
        """
        targets = None if stream.targets is None else stream.targets.tolist()
        return self.reuse == "auto" and self.channels_last and reuse_pays(targets)

    def _reused_start(self, stream: _Stream, target: int) -> tuple[str, int] | None:
        """Which shared sequence a target's window slides over, and its start there (None: a plain window)."""
        if not stream.reuse:
            return None
        if target >= WINDOW - 1:
            return "forward", target - WINDOW + 1
        if self.first_windows == "reversed":  # frames target+31..target: the head sequence from 30 - target
            return "head", WINDOW - 2 - target
        return None  # released head windows (colour-flipped, in time order) run as they always did

    def _reused_forward(self, windows: list[tuple[_Stream, str, int]]) -> torch.Tensor:
        """Raw outputs of windows (stream, sequence, start) from shared features, in the given order."""
        with torch.inference_mode(), precision_context(self.precision, self.device):
            starts: dict[tuple[int, str], list[int]] = {}
            for stream, kind, s in windows:
                starts.setdefault((stream.key, kind), []).append(s)
            by_key = {stream.key: stream for stream, _, _ in windows}
            for (key, kind), ss in starts.items():
                cache, frames, bounds = by_key[key].sequence(kind)
                cache.prepare(self._stages, frames, ss, bounds)
            a, b = assemble(self._stages, [(stream.caches[kind], s) for stream, kind, s in windows])
            return self.model.forward_from(a, b).float()

    def _compute(self, groups: list[tuple[_Stream, list[tuple[int, int]]]]) -> _Batch:
        """Queue one batch (windows of one or more streams): run the model, post-process, start the copy home."""
        plain: list[tuple[_Stream, list[tuple[int, int]]]] = []
        reused: list[tuple[_Stream, str, int]] = []
        order: list[bool] = []  # per row: reused?
        for stream, items in groups:
            rest = []
            for t, n in items:
                found = self._reused_start(stream, t)
                order.append(found is not None)
                if found is None:
                    rest.append((t, n))
                else:
                    reused.append((stream, *found))
            if rest:
                plain.append((stream, rest))
        parts = [self._windows(stream, items) for stream, items in plain]
        raws = []
        with self.clock.time("model", self.device):
            if parts:
                windows = (parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)).permute(1, 0, 2, 3, 4)
                raws.append(self.forward(windows))
            if reused:
                raws.append(self._reused_forward(reused))
            raw = raws[0] if len(raws) == 1 else torch.cat(raws)
            if len(raws) == 2:  # back to row order: plain rows came first
                flags = torch.tensor(order)
                rank = torch.empty(len(order), dtype=torch.long)
                rank[~flags] = torch.arange(int((~flags).sum()))
                rank[flags] = torch.arange(int(flags.sum())) + int((~flags).sum())
                raw = raw[rank.to(raw.device)]
        with self.clock.time("post", self.device):
            maps = self._postprocessor(raw.shape[1], raw.shape[2])(raw)
            extras = self.map_stats(maps) if self.map_stats is not None else {}
        for name, value in extras.items():
            if value.shape[:1] != maps.shape[:1]:
                raise ValueError(f"map_stats gave {name!r} with shape {tuple(value.shape)}, expected {len(maps)} rows")
        rows = [(stream.key, np.array([t for t, _ in items], np.int64)) for stream, items in groups]
        if maps.is_cuda:
            return _Batch(rows, HostCopy(maps, extras), {})
        return _Batch(rows, maps.cpu().numpy(), {name: v.cpu().numpy() for name, v in extras.items()})

    def run_streams(self, events: Iterable[StreamEvent]) -> Iterator[EngineOutput]:
        """Maps of many streams, batched across them; see :mod:`tased_batch.decode.streams` for the events.

        Each stream's maps come out in position order, followed by exactly one
        :class:`StreamDone`: ``ok`` when every target was produced; otherwise the reason of
        its :class:`StreamFailed`, or ``"truncated"`` when it ended (or the input ended)
        before all its targets could be produced. Batches are full except the last ones at
        the end of the input. On CUDA a batch is yielded once the next one is queued, so the
        device never waits for the caller.
        """
        return self._run(events)

    def _run(self, events: Iterable[StreamEvent | _Stream]) -> Iterator[EngineOutput]:
        streams: dict[int, _Stream] = {}
        order: deque[int] = deque()  # stream key of each ready target, in the order they became ready
        out: deque[_Batch | StreamDone] = deque()
        depth = 1 if self.device.type == "cuda" else 0  # batches queued ahead of the one yielded
        queued = 0  # batches in ``out``

        def drain(keep: int) -> Iterator[EngineOutput]:
            nonlocal queued
            while out and (isinstance(out[0], StreamDone) or queued > keep):
                item = out.popleft()
                if isinstance(item, StreamDone):
                    yield item
                else:
                    queued -= 1
                    yield from item.outputs()

        def close_if_done(stream: _Stream) -> None:
            if stream.ended and not stream.ready:
                del streams[stream.key]
                missing = stream.missing()
                if missing:
                    total = stream.produced + missing
                    error = f"{stream.label}: only {stream.produced} of {total} maps could be computed"
                    out.append(StreamDone(stream.key, False, "truncated", error))
                else:
                    out.append(StreamDone(stream.key, True))

        def batch(size: int) -> None:
            nonlocal queued
            groups: dict[int, list[tuple[int, int]]] = {}
            for _ in range(min(size, len(order))):
                key = order.popleft()
                groups.setdefault(key, []).append(streams[key].ready.popleft())
            out.append(self._compute([(streams[key], items) for key, items in groups.items()]))
            queued += 1
            for key, items in groups.items():
                stream = streams[key]
                stream.produced += len(items)
                stream.trim()
                close_if_done(stream)

        for event in events:
            if isinstance(event, (StreamStart, _Stream)):
                stream = _Stream.opening(event) if isinstance(event, StreamStart) else event
                stream.reuse = self._reuses(stream)
                if stream.key in streams:
                    raise ValueError(f"stream {stream.key} ({stream.label}) opened twice")
                streams[stream.key] = stream
                continue
            found = streams.get(event.key)
            if found is None and isinstance(event, StreamFailed):  # failed before it could start (e.g. unreadable)
                out.append(StreamDone(event.key, False, event.reason, event.error, event.trace))
                yield from drain(depth)
                continue
            if found is None or found.ended:
                raise ValueError(f"{type(event).__name__} for stream {event.key}, which is not open")
            stream = found
            if isinstance(event, FrameChunk):
                if len(event.frames) == 0:
                    continue
                if event.start != stream.end:
                    raise ValueError(
                        f"stream {event.key} ({stream.label}): chunk at {event.start}, expected {stream.end}"
                    )
                frames = self._upload(event.frames)
                batch_size = self.resolve_batch_size((int(frames.shape[-2]), int(frames.shape[-1])))
                before = len(stream.ready)
                stream.add(frames)
                order.extend([stream.key] * (len(stream.ready) - before))
                while len(order) >= batch_size:
                    batch(batch_size)
                    yield from drain(depth)
                if stream.key in streams:
                    stream.trim()
            elif isinstance(event, StreamEnd):
                before = len(stream.ready)
                stream.finish()
                order.extend([stream.key] * (len(stream.ready) - before))
                if self.batch_size is not None:
                    while len(order) >= self.batch_size:
                        batch(self.batch_size)
                        yield from drain(depth)
                if stream.key in streams:
                    stream.trim()
                    close_if_done(stream)
            elif isinstance(event, StreamFailed):
                del streams[stream.key]
                if stream.ready:
                    remaining = [key for key in order if key != stream.key]
                    order.clear()
                    order.extend(remaining)
                out.append(StreamDone(stream.key, False, event.reason, event.error, event.trace))
            else:
                raise TypeError(f"not a stream event: {event!r}")
            yield from drain(depth)
        while order:
            batch(self.batch_size or 1)
        for stream in list(streams.values()):  # the input ended before these streams did
            stream.ended = True
            close_if_done(stream)
        yield from drain(0)

    def run(
        self, chunks: Iterable[np.ndarray | torch.Tensor], targets: Iterable[int] | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One video: yield ``(target frame positions, uint8 maps)`` batches in frame order.

        ``targets`` are the frame positions whose maps are wanted (default: all). Targets at
        or beyond the end of the stream are not produced; a video shorter than 63 frames loops.
        """
        wanted = None if targets is None else np.array(sorted({int(t) for t in targets}), np.int64)

        def events() -> Iterator[StreamEvent | _Stream]:
            yield _Stream(key=0, label="video", targets=wanted, first=0, whole=True)
            position = 0
            for chunk in chunks:
                yield FrameChunk(0, position, chunk)
                position += len(chunk)
            yield StreamEnd(0)

        for output in self._run(events()):
            if isinstance(output, MapBatch):
                yield output.positions, output.maps

    def predict(self, frames: np.ndarray, targets: Iterable[int] | None = None, chunk: int = 64) -> np.ndarray:
        """All maps of an in-memory video (T x H x W x 3 uint8) as (N, H, W) uint8."""
        parts = [m for _, m in self.run((frames[i : i + chunk] for i in range(0, len(frames), chunk)), targets)]
        if not parts:
            return np.zeros((0,) + frames.shape[1:3], np.uint8)
        return np.concatenate(parts)
