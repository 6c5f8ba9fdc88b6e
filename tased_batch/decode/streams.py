"""The records that cross from the decode stage to the engine and on to the shard sinks.

A *stream* is one video, or one segment of a long video, delivered as bounded chunks of
frames at model size. Decode workers (:mod:`tased_batch.decode.feed`) produce, for each stream,
one :class:`StreamStart`, then :class:`FrameChunk` s in position order, then either a
:class:`StreamEnd` or a :class:`StreamFailed`. Events of different streams interleave
freely; events of one stream keep their order. A stream that cannot even start (its video
cannot be opened or probed) is a lone :class:`StreamFailed`; its key then says which video
it was (for :func:`tased_batch.run.pipeline.serial_streams`, the video's index in its sources).

The engine (:meth:`tased_batch.engine.engine.Engine.run_streams`) turns them into
the records of :mod:`tased_batch.engine.streams` (windows of several streams share one
batch). The shard processor reassembles the segments of each video
in order and hands the maps to the video's sink as they come.

Positions are indices into ``sampling.sequence`` (the possibly time-resampled frame
sequence of the whole video), never into a segment, so windows across segment boundaries
are exactly the windows of the unsplit video.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from tased_batch.decode.sampling import Sampling, VideoInfo


@dataclass(frozen=True)
class StreamStart:
    """A stream opens: which video, which part of it, and which maps it must produce.

    ``targets`` are the positions whose maps this stream produces (a slice of
    ``sampling.targets``); ``first`` is the position of the first frame it delivers and
    ``last`` one past the last. Frames ``first..last-1`` are all a target's window needs.
    """

    key: int
    video_id: str
    source: str
    info: VideoInfo
    sampling: Sampling
    targets: np.ndarray
    first: int
    last: int
    segment: int = 0
    segments: int = 1


@dataclass(frozen=True)
class FrameChunk:
    """Frames ``start .. start+len(frames)-1`` of a stream: uint8 (t, H, W, 3) RGB at model size.

    ``frames`` is a numpy array, or a torch tensor already on the model's device when the
    decoder ran on the GPU.
    """

    key: int
    start: int
    frames: np.ndarray | torch.Tensor


@dataclass(frozen=True)
class StreamEnd:
    """Every frame of the stream was delivered."""

    key: int


@dataclass(frozen=True)
class StreamFailed:
    """The stream's video cannot be read; ``reason`` is a failure code (see errors.py)."""

    key: int
    reason: str
    error: str
    trace: str | None = None  # the traceback of an unexpected exception (``internal-error``), for the run report


StreamEvent = StreamStart | FrameChunk | StreamEnd | StreamFailed
