"""What a decoding backend is, and which ones exist.

A backend decodes one opened video: it knows its frame count and rate, and reads sorted,
unique source frame indices into uint8 RGB frames at model size, (k, H, W, 3): a numpy
array, or a torch tensor on the GPU for a GPU decoder. A video backend is one module in
this package that defines a class with the :class:`VideoBackend` shape and registers it
with :func:`register`; :class:`~tased_batch.decode.reader.VideoReader` picks one per video
and falls back to PyAV when it cannot open or decode it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Union

import numpy as np

from tased_batch.core.errors import VideoError

if TYPE_CHECKING:
    import torch

    from tased_batch.decode.probe import Probe, Target

Frames = Union[np.ndarray, "torch.Tensor"]


class Backend(Protocol):
    """An opened video."""

    name: str
    n_frames: int
    fps: float

    def read(self, indices: np.ndarray) -> Frames:
        """Frames at sorted unique ``indices``; raises :class:`EndOfStream`/:class:`DecodeFailure` or any error."""
        ...

    def close(self) -> None: ...


class VideoBackend(Backend, Protocol):
    """A backend class for video files, as the reader builds it."""

    needs_path: ClassVar[bool]  # True: reads only local files (an object too large to spool goes to PyAV)

    def __init__(
        self, name: str, target: Target, size: tuple[int, int], *, resize: str, threads: int, probe: Probe, device: str
    ) -> None: ...

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this backend cannot run in this process (a missing package), or None."""
        ...


BACKENDS: dict[str, type[Any]] = {}  # name -> backend class, in registration order


def register(cls: type[Any]) -> type[Any]:
    """Class decorator: make a video backend selectable with ``--decoder NAME``."""
    BACKENDS[cls.name] = cls
    return cls


class EndOfStream(Exception):
    """The decoder ran out of frames before the requested index."""

    def __init__(self, at: int) -> None:
        super().__init__(at)
        self.at = at


class DecodeFailure(Exception):
    """The decoder failed on frame ``at``."""

    def __init__(self, at: int, cause: BaseException) -> None:
        super().__init__(at, cause)
        self.at, self.cause = at, cause


def cv2_module() -> Any:
    try:
        import cv2
    except ImportError as e:
        raise VideoError(
            "opencv",
            "missing-dependency",
            "OpenCV is needed for frame folders and --resize exact",
            "pip install opencv-python-headless",
        ) from e
    return cv2


def resize_exact(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The released script's resize: cv2.resize(img, (W, H)), bilinear."""
    h, w = size
    if frame.shape[0] == h and frame.shape[1] == w:
        return frame
    cv2 = cv2_module()
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)


def basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]
