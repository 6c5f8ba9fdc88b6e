"""Released post-processing on the model's device: quantise, Gaussian blur sigma 7 with scipy's
reflect borders, normalise by the maximum, truncate to uint8, as two matrix products in float64.
"""

from __future__ import annotations

import numpy as np
import torch

SIGMA = 7.0
TRUNCATE = 4.0


def gaussian_kernel(sigma: float = SIGMA, truncate: float = TRUNCATE) -> np.ndarray:
    """The 1-D kernel scipy.ndimage.gaussian_filter uses (radius = int(truncate * sigma + 0.5))."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 * x * x / (sigma * sigma))
    return phi / phi.sum()


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """scipy's 'reflect' (half-sample symmetric) border: d c b a | a b c d | d c b a."""
    period = 2 * n
    index = np.mod(index, period)
    return np.where(index >= n, period - 1 - index, index)


def blur_matrix(n: int, sigma: float = SIGMA, truncate: float = TRUNCATE) -> np.ndarray:
    """An n x n matrix M with M @ x == gaussian_filter1d(x, sigma, mode='reflect') for any n."""
    kernel = gaussian_kernel(sigma, truncate)
    radius = len(kernel) // 2
    m = np.zeros((n, n), np.float64)
    rows = np.arange(n)
    for k, weight in enumerate(kernel):
        np.add.at(m, (rows, _reflect(rows + k - radius, n)), weight)
    return m


class PostProcessor:
    """Released post-processing for a batch of raw maps, on any torch device."""

    def __init__(self, height: int, width: int, device: torch.device | str = "cpu") -> None:
        device = torch.device(device)
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        self.rows = torch.as_tensor(blur_matrix(height), dtype=self.dtype, device=device)
        self.cols_t = torch.as_tensor(blur_matrix(width).T.copy(), dtype=self.dtype, device=device)

    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        """(B, H, W) float in (0, 1) -> (B, H, W) uint8, exactly as the released script writes PNGs."""
        q = torch.floor(raw.to(self.dtype) * 255) / 255
        blurred = self.rows @ q @ self.cols_t
        peak = blurred.amax(dim=(1, 2), keepdim=True)
        scaled = torch.where(peak > 0, blurred / peak.clamp_min(torch.finfo(self.dtype).tiny) * 255, 0)
        return scaled.to(torch.uint8)


def postprocess_reference(raw: np.ndarray) -> np.ndarray:
    """The released per-frame host path with scipy (for parity checks and the baseline bench)."""
    from scipy.ndimage import gaussian_filter

    q = (raw * 255.0).astype(np.int64) / 255.0
    blurred = gaussian_filter(q, sigma=SIGMA)
    return (blurred / np.max(blurred) * 255.0).astype(np.uint8)
