"""torchcodec: PyTorch's FFmpeg decoder, on the CPU or on the GPU (NVDEC); an optional extra.

On a GPU, frames are decoded by NVDEC, resized there (bilinear) and handed on as uint8
CUDA tensors (t, H, W, 3), so they reach the model without a trip through host memory.
NVDEC does not decode every codec (AV1 needs Ampere or later, some GPUs lack VP9 or
4:4:4), so each codec is tried on the GPU once per process, by decoding its first frame;
a codec that fails is decoded by torchcodec on the CPU from then on (a per-video fallback
that never fails the video). ``pip install -e ".[torchcodec]"``; it needs FFmpeg's shared
libraries (``apt-get install ffmpeg``) and a torchcodec wheel built for the torch in use.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from tased_batch.decode.backend import register, resize_exact
from tased_batch.decode.probe import Probe, Target

_CUDA_CODECS: dict[str, bool] = {}  # codec -> whether NVDEC decoded it, learnt once per process
_LOCK = threading.Lock()


def _import_error() -> str | None:
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception as e:  # ImportError, or OSError when FFmpeg or a CUDA library is missing
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        return f'torchcodec cannot be loaded ({first}); pip install -e ".[torchcodec]" and apt-get install ffmpeg'
    return None


@register
class TorchcodecBackend:
    name = "torchcodec"
    needs_path = False  # reads paths and file objects

    def __init__(
        self, name: str, target: Target, size: tuple[int, int], *, resize: str, threads: int, probe: Probe, device: str
    ) -> None:
        self._size = size
        self._exact = resize == "exact"
        self._target = target
        self._threads = threads
        self.device = device
        if device.startswith("cuda") and not _cuda_ok(
            probe.codec, lambda: self._open("cuda" if device == "cuda" else device)
        ):
            self.device = "cpu"
        self._decoder = self._open(self.device)
        meta = self._decoder.metadata
        self.n_frames = int(meta.num_frames or 0)
        self.fps = float(meta.average_fps or probe.fps)

    def _open(self, device: str) -> Any:
        from torchcodec.decoders import VideoDecoder

        if not isinstance(self._target, str):
            self._target.seek(0)
        return VideoDecoder(
            self._target, dimension_order="NHWC", num_ffmpeg_threads=self._threads, device=device, seek_mode="exact"
        )

    @classmethod
    def unavailable(cls) -> str | None:
        return _import_error()

    def read(self, indices: np.ndarray) -> Any:
        frames = self._decoder.get_frames_at(indices=indices.tolist()).data  # uint8 (k, h, w, 3)
        if self.device == "cpu":
            array = frames.numpy()
            h, w = self._size
            if array.shape[1:3] == (h, w):
                return array
            return np.stack([resize_exact(f, self._size) for f in array])
        return resize_on_device(frames, self._size)

    def close(self) -> None:
        self._decoder = None


def resize_on_device(frames: Any, size: tuple[int, int]) -> Any:
    """uint8 (k, h, w, 3) on the GPU -> uint8 (k, H, W, 3), bilinear (as cv2.resize), on the same device."""
    import torch

    h, w = size
    if tuple(frames.shape[1:3]) == (h, w):
        return frames
    x = frames.permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _cuda_ok(codec: str, open_cuda: Any) -> bool:
    """Whether NVDEC decodes ``codec`` here: tried once per process on the first video that has it."""
    with _LOCK:
        known = _CUDA_CODECS.get(codec)
    if known is not None:
        return known
    try:
        decoder = open_cuda()
        decoder.get_frames_at(indices=[0])
        ok = True
    except Exception:
        ok = False
    with _LOCK:
        _CUDA_CODECS[codec] = ok
    return ok
