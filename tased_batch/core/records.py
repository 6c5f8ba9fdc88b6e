"""The record that flows from the engine to the stores: one video's maps or its failure."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class VideoMeta:
    """What is known about a source video before its maps: recorded with its maps or its failure."""

    n_frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    duration: float = 0.0


@dataclass
class VideoResult:
    """Everything a store writes for one video.

    ``maps`` are uint8 at model size (N x H x W); ``frame_indices`` are 0-based source
    frame indices and ``timestamps`` their times in seconds, both aligned with ``maps``.
    A failed video has ``status == "failed"``, a ``reason`` code and an ``error`` message,
    and keeps whatever metadata was known.
    """

    video_id: str
    source: str
    status: str = "ok"
    reason: str | None = None
    error: str | None = None
    n_frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    duration: float = 0.0
    frame_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    timestamps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    maps: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.uint8))

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def meta(self) -> VideoMeta:
        return VideoMeta(self.n_frames, self.fps, self.width, self.height, self.duration)

    @classmethod
    def failed(cls, video_id: str, source: str, reason: str, error: str, **meta) -> VideoResult:
        return cls(video_id=video_id, source=source, status="failed", reason=reason, error=error, **meta)
