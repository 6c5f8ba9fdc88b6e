"""Synthetic video content: moving bright blobs on texture, so saliency varies in space and time.

Used to calibrate the random stand-in model, to make the quickstart's sample videos and
by the tests; nothing here needs files or network.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def synthetic_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Return ``n`` RGB uint8 frames (n x height x width x 3) with one moving blob and a sweeping bar."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = rng.integers(0, 60, size=(height, width, 3)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    colour = np.array([1.0, 0.7, 0.3], np.float32)[rng.permutation(3)]
    frames = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        cy = height * (0.5 + 0.35 * np.sin(2 * np.pi * t / 40.0 + phase))
        cx = width * (0.5 + 0.4 * np.cos(2 * np.pi * t / 53.0 + phase))
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.08 * width) ** 2))
        img = background + 190 * blob[..., None] * colour
        img[: max(1, height // 8), (t * 3) % width :] += 40
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 30, codec: str = "libx264") -> Path:
    """Encode RGB frames (T x H x W x 3, even H and W) to a video file with PyAV."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "ultrafast", "g": "16"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_sample_videos(directory: str | os.PathLike, count: int = 3, size: tuple[int, int] = (180, 320)) -> list[Path]:
    """Write ``count`` short sample videos of different lengths (one shorter than a window pair)."""
    lengths = [48, 24, 36, 90, 20][:count] + [60] * max(0, count - 5)
    return [
        write_video(Path(directory) / f"sample_{i:02d}.mp4", synthetic_frames(n, size[0], size[1], seed=i))
        for i, n in enumerate(lengths)
    ]
