"""The decoder's options, as the run's option schema (:mod:`tased_batch.options`) hands them down."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DecodeOptions:
    """How frames are read and sampled; part of a run's config fingerprint."""

    decoder: str = "auto"
    resize: str = "decoder"
    fps: float | None = None
    every: int | None = None
    output_fps: float | None = None
    chunk: int = 64
