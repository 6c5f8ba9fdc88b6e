"""Which frames a video's windows run over and which of them get a map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tased_batch.core.errors import ConfigError

FOLDER_FPS = 30.0  # frame folders carry no rate; TASED-Net was trained on 30 fps video


@dataclass
class VideoInfo:
    """What the decoder will deliver: frame count, frame rate and original size."""

    n_frames: int
    fps: float
    width: int
    height: int
    duration: float


@dataclass(frozen=True)
class Sampling:
    """Which frames the windows run over and which of them get a map.

    ``sequence[p]`` is the source frame shown at position ``p`` of the (possibly
    time-resampled) sequence, whose rate is ``fps``; ``targets`` are the sorted positions
    whose maps are output. Each target still gets a full 32-frame window over ``sequence``.
    """

    sequence: np.ndarray
    targets: np.ndarray
    fps: float

    def target_frames(self) -> np.ndarray:
        """Source frame index of each output map."""
        return self.sequence[self.targets]

    def target_times(self) -> np.ndarray:
        """Time in seconds of each output map: its position in the sequence over ``fps``.

        Without ``--fps`` this is the source frame index over the source rate.
        """
        return self.targets.astype(np.float64) / self.fps


def sample_frames(
    info: VideoInfo,
    *,
    fps: float | None = None,
    every: int | None = None,
    output_fps: float | None = None,
) -> Sampling:
    """Resample in time (``fps``), then choose output positions (``every`` or ``output_fps``).

    ``fps`` picks, for each instant ``p / fps``, the source frame on screen then (frames
    repeat when upsampling, are skipped when downsampling). ``every N`` keeps positions
    0, N, 2N...; ``output_fps R`` keeps the position on screen at each instant ``k / R``.
    """
    if fps is not None and not fps > 0:
        raise ConfigError(f"--fps must be positive, got {fps}")
    if every is not None and (int(every) != every or every < 1):
        raise ConfigError(f"--every must be a positive integer, got {every}")
    if output_fps is not None and not output_fps > 0:
        raise ConfigError(f"--output-fps must be positive, got {output_fps}")
    if every is not None and output_fps is not None:
        raise ConfigError("--every and --output-fps choose output frames in two ways", "give only one of them")
    n, src_fps = int(info.n_frames), float(info.fps)
    empty = np.zeros(0, np.int64)
    if n <= 0 or not src_fps > 0:
        return Sampling(empty, empty, float(fps or src_fps or FOLDER_FPS))
    if fps is None or abs(fps - src_fps) < 1e-9:
        sequence, seq_fps = np.arange(n, dtype=np.int64), src_fps
    else:
        seq_fps = float(fps)
        length = max(1, int(np.floor(n / src_fps * seq_fps + 1e-6)))
        times = np.arange(length, dtype=np.float64) / seq_fps
        sequence = np.minimum(np.floor(times * src_fps + 1e-6).astype(np.int64), n - 1)
    m = len(sequence)
    if every is not None:
        targets = np.arange(0, m, int(every), dtype=np.int64)
    elif output_fps is not None:
        count = max(1, int(np.ceil(m / seq_fps * output_fps - 1e-6)))
        instants = np.arange(count, dtype=np.float64) / output_fps
        targets = np.unique(np.minimum(np.floor(instants * seq_fps + 1e-6).astype(np.int64), m - 1))
    else:
        targets = np.arange(m, dtype=np.int64)
    return Sampling(sequence, targets, seq_fps)
