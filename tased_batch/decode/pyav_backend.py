"""PyAV (FFmpeg): sequential decoding; reads any container FFmpeg can, and file objects.

The fallback of every other backend, and the only way to stream objects too large to spool.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from tased_batch.decode.backend import (
    DecodeFailure,
    EndOfStream,
    register,
    resize_exact,
)
from tased_batch.decode.probe import Probe, Target, count_packets

if TYPE_CHECKING:
    import av


@register
class PyAVBackend:
    """Frame k is the k-th frame the decoder outputs."""

    name = "pyav"
    needs_path = False

    def __init__(
        self, name: str, target: Target, size: tuple[int, int], *, resize: str, threads: int, probe: Probe, device: str
    ) -> None:
        import av

        if not isinstance(target, str):
            target.seek(0)
        n_frames = probe.n_frames if probe.n_frames > 0 else count_packets(name, target)
        self._size = size
        self._exact = resize == "exact"
        self._container = av.open(target, mode="r")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.thread_count = threads
        self._decoded: Iterator[av.VideoFrame] | None = None
        self._pos = 0  # index of the next frame the decoder will output
        self.n_frames = n_frames
        self.fps = probe.fps

    @classmethod
    def unavailable(cls) -> str | None:
        return None  # a core dependency

    def _restart(self) -> None:
        self._container.seek(0, stream=self._stream)
        self._decoded = self._container.decode(self._stream)
        self._pos = 0

    def _convert(self, frame) -> np.ndarray:
        h, w = self._size
        if self._exact:
            return resize_exact(frame.to_ndarray(format="rgb24"), self._size)
        return frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="BILINEAR")

    def read(self, indices: np.ndarray) -> np.ndarray:
        if self._decoded is None or indices[0] < self._pos:
            self._restart()
        assert self._decoded is not None  # set by _restart
        out = []
        wanted = iter(indices.tolist())
        target = next(wanted)
        while target is not None:
            try:
                frame = next(self._decoded, None)
            except Exception as e:  # PyAV raises av.error.* for damaged packets
                raise DecodeFailure(self._pos, e) from e
            if frame is None:
                raise EndOfStream(self._pos)
            if self._pos == target:
                out.append(self._convert(frame))
                target = next(wanted, None)
            self._pos += 1
        return np.stack(out)

    def close(self) -> None:
        self._container.close()
