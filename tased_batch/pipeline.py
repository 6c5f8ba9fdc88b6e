"""One video end to end: decode -> engine -> a :class:`VideoResult`. Used by `predict` and the Ray actors.

Bad input never escapes as an exception: a :class:`VideoError` becomes a failed result
that carries the reason, so a batch goes on and the failure is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tased_batch.decode import open_video, sample_frames
from tased_batch.engine import Engine
from tased_batch.errors import VideoError
from tased_batch.records import VideoResult
from tased_batch.sources import VideoSource


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
                raise VideoError(uri, "empty", "the video has no frames to compute maps for", "check the file")
            positions, maps = [], []
            for pos, batch in engine.run(reader.iter_frames(sampling.sequence, opts.chunk), sampling.targets):
                positions.append(pos)
                maps.append(batch)
    except VideoError as e:
        return VideoResult.failed(video_id, uri, e.reason, str(e), **meta)
    positions = np.concatenate(positions)
    if len(positions) != len(sampling.targets):
        return VideoResult.failed(
            video_id, uri, "truncated",
            f"{uri}: only {len(positions)} of {len(sampling.targets)} maps could be computed",
            **meta,
        )
    return VideoResult(
        video_id=video_id,
        source=uri,
        frame_indices=sampling.sequence[positions],
        timestamps=positions.astype(np.float64) / sampling.fps,
        maps=np.concatenate(maps),
        **meta,
    )
