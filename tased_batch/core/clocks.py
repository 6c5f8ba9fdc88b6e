"""Stage clocks: seconds spent per stage of the data path, cheap enough to stay on in every run.

The decode feed, the engine and the shard processor each add to one :class:`StageClock`;
the run layer takes the totals every few seconds and sends them with its progress events,
so a run report can say where the time went (issue 23). On CUDA a stage is timed with CUDA
events (host time would only measure kernel launches); their elapsed time is collected
once the device has passed them, never by waiting on the device.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

# The stages, in data-path order. ``feed``: the model waited for frames; ``model``: forward;
# ``post``: post-processing and statistics; ``write_wait``: the model waited for the writer's
# queue; ``write``: the writer thread encoding and uploading maps; ``commit``: the shard's
# commit; ``decode``: decode workers' time (summed over workers); ``fetch``: fetching objects.
STAGES = ("feed", "model", "post", "write_wait", "write", "commit", "decode", "fetch")
PENDING = 256  # CUDA event pairs kept before the passed ones are collected (a clock nobody takes stays small)


class StageClock:
    """Seconds per stage, added from any thread; :meth:`take` hands over the totals since the last take."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, float] = {}
        self._events: list[tuple[str, Any, Any]] = []  # (stage, start, end) CUDA events not yet passed

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._seconds[stage] = self._seconds.get(stage, 0.0) + seconds

    @contextmanager
    def time(self, stage: str, device: Any = None) -> Iterator[None]:
        """Time the block: by CUDA events when ``device`` is a CUDA device, else by the host clock."""
        if device is not None and getattr(device, "type", str(device)) == "cuda":
            import torch

            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            with self._lock:
                self._events.append((stage, start, end))
                full = len(self._events) > PENDING
            if full:
                self._collect(wait=False)
            return
        began = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - began)

    def timed(self, items: Iterable[Any], stage: str) -> Iterator[Any]:
        """``items``, with the time spent waiting for each one added to ``stage``."""
        it = iter(items)
        while True:
            began = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                self.add(stage, time.perf_counter() - began)
            yield item

    def take(self, wait: bool = False) -> dict[str, float]:
        """The seconds per stage since the last take; ``wait``: also wait for pending device timings."""
        self._collect(wait)
        with self._lock:
            seconds, self._seconds = self._seconds, {}
        return seconds

    def _collect(self, wait: bool) -> None:
        """Add the elapsed time of the CUDA event pairs the device has passed (``wait``: of all of them)."""
        with self._lock:
            events, self._events = self._events, []
        later = []
        for stage, start, end in events:
            if wait:
                end.synchronize()
            if end.query():
                self.add(stage, start.elapsed_time(end) / 1000.0)
            else:
                later.append((stage, start, end))
        with self._lock:
            self._events = later + self._events
