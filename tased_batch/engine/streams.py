"""What the engine yields per stream: batches of maps, then one end-of-stream record.

The engine (:meth:`tased_batch.engine.engine.Engine.run_streams`) turns the decode stage's
stream events (:mod:`tased_batch.decode.streams`) into :class:`MapBatch` es (windows of
several streams share one batch) and one :class:`StreamDone` per stream. The shard
processor reassembles the segments of each video in order and hands the maps to the
video's sink as they come.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class MapBatch:
    """Maps of some targets of one stream, in position order.

    ``maps`` is uint8 (b, H, W) at model size; ``extras`` holds per-map values computed on
    the device next to the maps (e.g. saliency summaries), each with ``b`` rows.
    """

    key: int
    positions: np.ndarray
    maps: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamDone:
    """A stream is finished: every target's map was yielded (``ok``), or it failed."""

    key: int
    ok: bool
    reason: str | None = None
    error: str | None = None
    trace: str | None = None


EngineOutput = MapBatch | StreamDone
