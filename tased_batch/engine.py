"""The inference engine: frames -> 32-frame windows -> TASED-Net -> uint8 maps. No Ray here.

Windowing is the released script's: frame i >= 31 gets frames i-31..i; frame i < 31 gets
frames i+31, i+30, ..., i (the following frames, reversed in time, so i is still last).
A video shorter than 63 frames is looped (frame k stands for frame k mod N), which is what
the authors advise for short videos (TASED-Net issue #3) and equals their windowing
whenever the video is long enough. Post-processing (quantise, Gaussian blur sigma 7 with
scipy's reflect borders, normalise by the maximum, truncate to uint8) runs on the model's
device as two matrix products in float64.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import nullcontext

import numpy as np
import torch

from tased_batch.model import WINDOW

SIGMA = 7.0
TRUNCATE = 4.0
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_size(text: str) -> tuple[int, int]:
    """``"224x384"`` -> (224, 384); both must be positive multiples of 32."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise ValueError(f"size must look like HxW (e.g. 224x384), got {text!r}") from e
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ValueError(f"model size {h}x{w}: height and width must be positive multiples of 32")
    return h, w


def window_frames(i: int, n: int) -> list[int]:
    """Frame indices of the window whose map is frame ``i``'s, for a video of ``n`` frames."""
    if i >= WINDOW - 1:
        return list(range(i - WINDOW + 1, i + 1))
    return [(i + WINDOW - 1 - k) % n for k in range(WINDOW)]


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


def _window_start(i: int) -> int:
    """First frame a target's window may need (short videos loop back to frame 0)."""
    return i - WINDOW + 1 if i >= WINDOW - 1 else 0


def _window_end(i: int) -> int:
    """Last frame a target's window needs when the video is long enough not to loop."""
    return i + WINDOW - 1 if i < WINDOW - 1 else i


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


def normalise(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (3, T, H, W) in [-1, 1], with the released arithmetic."""
    return frames.permute(3, 0, 1, 2).float().mul_(2.0).sub_(255).div_(255)


class Engine:
    """Turns a stream of frames into saliency maps with one loaded TASED-Net.

    ``run`` consumes chunks of frames (uint8, t x H x W x 3, RGB, at model size) and yields
    the maps of the requested target frames as soon as their windows are complete, so
    memory is bounded by the chunk plus 31 frames of history, whatever the video's length.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: torch.device | str | None = None,
        batch_size: int = 4,
        precision: str = "fp32",
        channels_last: bool = True,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)
        self.batch_size = max(1, int(batch_size))
        self.precision = precision
        self._post: dict[tuple[int, int], PostProcessor] = {}

    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    def _postprocessor(self, h: int, w: int) -> PostProcessor:
        if (h, w) not in self._post:
            self._post[(h, w)] = PostProcessor(h, w, self.device)
        return self._post[(h, w)]

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Raw model output (B, H, W) float32 for a batch of windows (B, 3, 32, H, W)."""
        if self.channels_last:
            windows = windows.contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode(), self._autocast():
            return self.model(windows).float()

    def _upload(self, chunk: np.ndarray | torch.Tensor) -> torch.Tensor:
        frames = torch.as_tensor(chunk)
        if self.device.type == "cuda":
            frames = frames.pin_memory().to(self.device, non_blocking=True)
        else:
            frames = frames.to(self.device)
        return normalise(frames)

    def _compute(self, buffer: torch.Tensor, start: int, targets: list[int], n: int) -> np.ndarray:
        positions = torch.tensor([window_frames(t, n) for t in targets], device=self.device) - start
        windows = buffer[:, positions].permute(1, 0, 2, 3, 4)
        raw = self.forward(windows)
        return self._postprocessor(raw.shape[1], raw.shape[2])(raw).cpu().numpy()

    def run(
        self, chunks: Iterable[np.ndarray | torch.Tensor], targets: Iterable[int] | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(target frame positions, uint8 maps)`` batches in frame order.

        ``targets`` are the sorted frame positions whose maps are wanted (default: all).
        Targets at or beyond the end of the stream are not produced.
        """
        wanted = None if targets is None else sorted(set(int(t) for t in targets))
        pending: list[int] = []  # targets seen, waiting for their window to be complete
        next_target = 0  # index into ``wanted`` (or the next frame when all are wanted)
        buffer: torch.Tensor | None = None
        start = 0  # frame index of buffer[:, 0]
        end = 0  # one past the last frame received
        for chunk in chunks:
            if len(chunk) == 0:
                continue
            frames = self._upload(chunk)
            buffer = frames if buffer is None else torch.cat([buffer, frames], dim=1)
            end += frames.shape[1]
            while True:
                t = next_target if wanted is None else (wanted[next_target] if next_target < len(wanted) else None)
                if t is None or t >= end:
                    break
                pending.append(t)
                next_target += 1
            ready = 0  # pending[:ready] have complete windows; keeping a prefix keeps maps in order
            while ready < len(pending) and _window_end(pending[ready]) < end:
                ready += 1
            while ready >= self.batch_size:
                batch, pending = pending[: self.batch_size], pending[self.batch_size :]
                ready -= self.batch_size
                yield np.array(batch, np.int64), self._compute(buffer, start, batch, n=end)
            upcoming = next_target if wanted is None else (wanted[next_target] if next_target < len(wanted) else None)
            needed = pending + ([] if upcoming is None else [upcoming])
            keep_from = min((_window_start(t) for t in needed), default=end)
            if keep_from > start:
                buffer = buffer[:, keep_from - start :]
                start = keep_from
        if buffer is None:
            return
        for i in range(0, len(pending), self.batch_size):
            batch = pending[i : i + self.batch_size]
            yield np.array(batch, np.int64), self._compute(buffer, start, batch, n=end)

    def predict(self, frames: np.ndarray, targets: Iterable[int] | None = None, chunk: int = 64) -> np.ndarray:
        """All maps of an in-memory video (T x H x W x 3 uint8) as (N, H, W) uint8."""
        parts = [m for _, m in self.run((frames[i : i + chunk] for i in range(0, len(frames), chunk)), targets)]
        if not parts:
            return np.zeros((0,) + frames.shape[1:3], np.uint8)
        return np.concatenate(parts)
