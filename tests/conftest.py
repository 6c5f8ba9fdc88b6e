"""Shared fixtures: small real videos (PyAV), a real local S3 endpoint (moto server),
and a calibrated tiny-input TASED-Net whose maps vary with the input."""

from __future__ import annotations

import socket

import pytest
import torch

from tased_batch.decode.sample import synthetic_frames, write_video

SMALL = (32, 64)  # model input size used by most tests (H, W): the smallest legal size, fast on CPU


class WindowProbe(torch.nn.Module):
    """A cheap stand-in whose output depends on every frame of the window and on their order.

    Streaming, ordering and looping are model-agnostic; this keeps those tests fast while
    the real TASED-Net is checked against the released loop (tests/reference.py).
    """

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.linspace(0.1, 3.2, 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((x.mean(1) * self.weight[None, :, None, None]).sum(1) / 8)


@pytest.fixture
def make_video(tmp_path):
    """Factory: make_video(name, n_frames=40, size=(72, 128), fps=30, seed=0) -> Path."""

    def _make(
        name: str = "clip.mp4", n_frames: int = 40, size=(72, 128), fps: int = 30, seed: int = 0, codec="libx264"
    ):
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


@pytest.fixture(scope="session")
def tiny_model():
    """A calibrated random TASED-Net (maps vary with the input), eval mode, on CPU."""
    from tased_batch.model.weights import calibrated_random_model

    return calibrated_random_model(seed=0, size=SMALL)


@pytest.fixture(scope="session")
def tiny_weights(tiny_model, tmp_path_factory):
    """tiny_model saved in the released layout (``module.`` prefix, plain state dict)."""
    import torch

    path = tmp_path_factory.mktemp("weights") / "tiny_tased.pt"
    torch.save({f"module.{k}": v for k, v in tiny_model.state_dict().items()}, path)
    return path


@pytest.fixture(scope="session")
def clip70(tiny_model):
    """A 70-frame clip at SMALL and the released loop's maps for it (computed once: it is slow)."""
    import numpy as np

    from reference import released_loop

    frames = synthetic_frames(70, *SMALL, seed=3)
    ref = released_loop(tiny_model, frames)
    assert sorted(ref) == list(range(70))
    return frames, np.stack([ref[i] for i in range(70)])


@pytest.fixture
def ray_tmp(tmp_path_factory):
    """A folder for a CLI subprocess's own Ray; whatever Ray left running there is killed afterwards."""
    from runhelpers import kill_ray

    path = tmp_path_factory.mktemp("ray")
    yield path
    kill_ray(path)
