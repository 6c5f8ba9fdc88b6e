"""Resizing saliency maps between model, stored and display sizes.

Stores shrink maps with area (box) averaging and the reader enlarges them with bilinear
interpolation (``align_corners=False``). Both treat pixels as cells with centres at
half-integer positions, so a box-averaged map upsampled bilinearly lands back on the
original grid without a half-pixel shift. ``benchmarks/store_size_table.py`` compares it with
antialiased bilinear downsampling: area gives the better worst-frame correlation and the
smaller max error at most sizes, including the default (bilinear wins slightly at 75x128
and 45x77); the numbers are in docs/stores.md.
"""

from __future__ import annotations

import numpy as np

from tased_batch.core.errors import StoreError
from tased_batch.core.sizes import parse_store_size

parse_size = parse_store_size  # the stores' name for it

# Frames resized per torch call: bounds float32 working memory when upsampling to source
# size (64 x 1080 x 1920 x 4 bytes = 530 MB at the largest common size).
_BATCH = 64


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 maps (T x H x W) to ``size``; area when shrinking, bilinear otherwise.

    Results are rounded to the nearest grey level. A map already at ``size`` is returned
    unchanged (no copy), so stored-size reads cost nothing.
    """
    if maps.ndim != 3:
        raise StoreError(f"maps must be T x H x W, got shape {maps.shape}")
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise StoreError(f"cannot resize maps to {height}x{width}")
    if maps.shape[1:] == (height, width):
        return maps
    out = np.empty((maps.shape[0], height, width), np.uint8)
    if maps.shape[0] == 0:
        return out

    import torch
    import torch.nn.functional as F

    shrink = height <= maps.shape[1] and width <= maps.shape[2]
    with torch.no_grad():
        for start in range(0, maps.shape[0], _BATCH):
            chunk = torch.from_numpy(np.ascontiguousarray(maps[start : start + _BATCH]))
            x = chunk.to(torch.float32).unsqueeze(1)
            if shrink:
                y = F.interpolate(x, size=(height, width), mode="area")
            else:
                # antialias only acts on an axis that shrinks (mixed case); pure upsampling
                # is plain bilinear.
                y = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
            out[start : start + _BATCH] = y.squeeze(1).round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out
