"""decord: resizes while decoding and seeks by frame index; the fastest CPU decoder.

``import decord`` happens only here, when a reader is built (dmlc/decord #251: importing it
before torch can hang forked data loaders), and always after OpenCV: once decord is loaded
first, ``cv2.imdecode`` fails on every PNG ("libpng error: bad parameters to zlib"). Frames
are read in bounded chunks with ``get_batch`` (long reads must not grow memory, #208, #197).
Pip wheels have no CUDA, so this is CPU decoding.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from tased_batch.decode.backend import cv2_module, register, resize_exact
from tased_batch.decode.probe import Probe, Target


@register
class DecordBackend:
    name = "decord"
    needs_path = True

    def __init__(
        self, name: str, target: Target, size: tuple[int, int], *, resize: str, threads: int, probe: Probe, device: str
    ) -> None:
        cv2_module()  # OpenCV must load before decord: decord's bundled zlib breaks cv2's PNG decoding after it
        import decord

        self._size = size
        self._exact = resize == "exact"
        h, w = size
        kwargs = {} if self._exact else {"width": w, "height": h}
        self._vr = decord.VideoReader(target, ctx=decord.cpu(0), num_threads=threads, **kwargs)
        self.n_frames = len(self._vr)
        self.fps = float(self._vr.get_avg_fps()) or probe.fps

    @classmethod
    def unavailable(cls) -> str | None:
        if importlib.util.find_spec("decord") is None:  # never import it here: see the module's notes
            return "decord is not installed (pip install decord)"
        return None

    def read(self, indices: np.ndarray) -> np.ndarray:
        frames = self._vr.get_batch(indices.tolist()).asnumpy()
        if self._exact:
            frames = np.stack([resize_exact(f, self._size) for f in frames])
        return frames

    def close(self) -> None:
        self._vr = None

    def detach(self) -> None:
        """Forget the native reader without freeing it (inherited through fork: freeing it segfaults)."""
        if self._vr is not None:
            self._vr._handle = None
