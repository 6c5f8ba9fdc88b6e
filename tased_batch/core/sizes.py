"""``HxW`` sizes as (height, width) tuples: parsed once where options are read, printed back the same way.

Light on purpose (no torch, numpy or stores): the option schema and fast commands import it.
"""

from __future__ import annotations

from tased_batch.core.errors import StoreError


def parse_size(text: str) -> tuple[int, int]:
    """A model input size: ``"224x384"`` -> (224, 384); both must be positive multiples of 32."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise ValueError(f"size must look like HxW (e.g. 224x384), got {text!r}") from e
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ValueError(f"model size {h}x{w}: height and width must be positive multiples of 32")
    return h, w


def parse_store_size(text: str) -> tuple[int, int]:
    """A stored map size: ``"56x96"`` -> (56, 96); any positive height and width."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise StoreError(f"invalid size {text!r}", "write it as HEIGHTxWIDTH, e.g. 56x96")
    height, width = int(parts[0]), int(parts[1])
    if height < 1 or width < 1:
        raise StoreError(f"invalid size {text!r}", "height and width must be at least 1")
    return height, width


def format_size(size: tuple[int, int]) -> str:
    """(224, 384) -> ``"224x384"``, the form flags, config files and stored configs use."""
    return f"{size[0]}x{size[1]}"
