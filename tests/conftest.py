"""Shared fixtures: small real videos (PyAV), a real local S3 endpoint (moto server),
and a calibrated tiny-input TASED-Net whose maps vary with the input."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

SMALL = (32, 64)  # model input size used by most tests (H, W): the smallest legal size, fast on CPU


def synthetic_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Frames with moving bright blobs on a textured background: content whose saliency varies."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = rng.integers(0, 60, size=(height, width, 3)).astype(np.float32)
    frames = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        cy = height * (0.5 + 0.35 * np.sin(2 * np.pi * t / 40.0))
        cx = width * (0.5 + 0.4 * np.cos(2 * np.pi * t / 53.0))
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.08 * width) ** 2))
        img = background + 190 * blob[..., None] * np.array([1.0, 0.7, 0.3], np.float32)
        img[: height // 8, (t * 3) % width :] += 40
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: int = 30,
    codec: str = "libx264",
) -> Path:
    """Encode frames (T x H x W x 3 uint8, RGB) with PyAV; H and W must be even for yuv420p."""
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


@pytest.fixture
def make_video(tmp_path):
    """Factory: make_video(name, n_frames=40, size=(72, 128), fps=30, seed=0) -> Path."""

    def _make(name: str = "clip.mp4", n_frames: int = 40, size=(72, 128), fps: int = 30, seed: int = 0, codec="libx264"):
        frames = synthetic_frames(n_frames, size[0], size[1], seed)
        return write_video(tmp_path / name, frames, fps=fps, codec=codec)

    return _make


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 HTTP endpoint on 127.0.0.1 (moto's threaded server) for the whole session."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    yield endpoint
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A fresh bucket on the local endpoint, with the standard AWS variables pointing at it.

    Returns a dict: ``endpoint``, ``bucket``, ``fs`` (an s3fs filesystem) and
    ``storage_options`` for fsspec calls.
    """
    import uuid

    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    bucket = f"test-{uuid.uuid4().hex[:10]}"
    s3fs.S3FileSystem.clear_instance_cache()
    opts = {"endpoint_url": s3_server, "key": "testing", "secret": "testing"}
    fs = s3fs.S3FileSystem(**opts)
    fs.mkdir(bucket)
    yield {"endpoint": s3_server, "bucket": bucket, "fs": fs, "storage_options": opts}
    s3fs.S3FileSystem.clear_instance_cache()
