"""The decoder's options, as the run's option schema (:mod:`tased_batch.options`) hands them down."""

from __future__ import annotations

from dataclasses import dataclass

# Largest source frame (width x height) a worker decodes: above 8K (33 Mpx) with room, and
# far below what a few bytes of header can claim (a GIF declaring 16000x16000 is 256 Mpx,
# ~770 MB per RGB frame and ~2 GB per decode).
MAX_FRAME_PIXELS = 50_000_000


@dataclass(frozen=True)
class DecodeOptions:
    """How frames are read and sampled; part of a run's config fingerprint."""

    decoder: str = "auto"
    resize: str = "decoder"
    fps: float | None = None
    every: int | None = None
    output_fps: float | None = None
    chunk: int = 64
    max_frame_pixels: int = MAX_FRAME_PIXELS
