"""The released TASED-Net inference script's algorithm, written out independently of the package.

Tests compare the package's maps with these; nothing here imports tased_batch.
"""

import numpy as np
import torch
from scipy.ndimage import gaussian_filter


def released_postprocess(raw: np.ndarray) -> np.ndarray:
    """The released script's lines, written out here independently of the package."""
    smap = (raw * 255.0).astype(int) / 255.0
    smap = gaussian_filter(smap, sigma=7)
    return (smap / np.max(smap) * 255.0).astype(np.uint8)


def released_loop(model, frames: np.ndarray, flip_dim: int = 2) -> dict[int, np.ndarray]:
    """The released run_example.py loop: one window per step, batch 1, flipped clips for i < 31.

    ``flip_dim=2`` flips time, as the spec describes; ``flip_dim=1`` is the released code
    to the letter (``torch.flip(clip, [1])`` on a (1, 3, 32, H, W) clip flips colour).
    """

    def clip(snippet):
        x = torch.from_numpy(np.concatenate(snippet, axis=-1)).permute(2, 0, 1).contiguous().float()
        x = x.mul_(2.0).sub_(255).div(255)
        h, w = snippet[0].shape[:2]
        return x.view(1, -1, 3, h, w).permute(0, 2, 1, 3, 4)

    def process(c):
        with torch.no_grad():
            return released_postprocess(model(c).cpu().data[0].numpy())

    out, snippet = {}, []
    for i in range(len(frames)):
        snippet.append(frames[i])
        if i >= 31:
            c = clip(snippet)
            out[i] = process(c)
            if i < 2 * 32 - 2:
                out[i - 31] = process(torch.flip(c, [flip_dim]))
            del snippet[0]
    return out


def looped_reference(model, frames: np.ndarray) -> np.ndarray:
    """The authors' advice for short videos: loop the video to >= 63 frames, keep the first N maps."""
    n = len(frames)
    reps = -(-63 // n)
    maps = released_loop(model, np.concatenate([frames] * reps))
    return np.stack([maps[i] for i in range(n)])
