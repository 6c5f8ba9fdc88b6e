"""Saliency-like maps without a model, for the size/fidelity benchmark and the store tests.

They are post-processed exactly like TASED-Net output: a raw map (here: a few moving
Gaussian blobs of random size plus a little noise) is floored to uint8, blurred with a
Gaussian of sigma 7 at 224x384 and normalised to a maximum of 255. Needs scipy (a test
and ``reference`` extra), imported only here.
"""

from __future__ import annotations

import numpy as np

MODEL_SIZE = (224, 384)


def synthetic_saliency_maps(
    n_frames: int,
    size: tuple[int, int] = MODEL_SIZE,
    seed: int = 0,
    sigma: float = 7.0,
) -> np.ndarray:
    """Return ``n_frames`` uint8 maps (T x H x W) with slowly moving blobs, like one video."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    n_blobs = int(rng.integers(1, 6))
    centre = rng.uniform((0, 0), (height, width), size=(n_blobs, 2))
    velocity = rng.normal(0.0, 0.004 * max(height, width), size=(n_blobs, 2))  # ~1.5 px/frame
    spread = rng.uniform(0.015, 0.12, size=n_blobs) * max(height, width)
    weight = rng.uniform(0.3, 1.0, size=n_blobs)
    out = np.empty((n_frames, height, width), np.uint8)
    for t in range(n_frames):
        centre = centre + velocity
        # blobs bounce off the borders: a video keeps its salient regions in view
        for axis, limit in ((0, height), (1, width)):
            out_of_view = (centre[:, axis] < 0) | (centre[:, axis] > limit)
            velocity[out_of_view, axis] *= -1
            centre[:, axis] = np.clip(centre[:, axis], 0, limit)
        raw = np.zeros((height, width), np.float32)
        for (cy, cx), s, w in zip(centre, spread, weight):
            raw += w * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * s * s))
        raw += rng.normal(0.0, 0.02, size=raw.shape).astype(np.float32)
        raw = np.floor(np.clip(raw / max(float(raw.max()), 1e-6), 0.0, 1.0) * 255.0)
        blurred = gaussian_filter(raw, sigma=sigma)
        out[t] = np.floor(blurred / max(float(blurred.max()), 1e-6) * 255.0).astype(np.uint8)
    return out
