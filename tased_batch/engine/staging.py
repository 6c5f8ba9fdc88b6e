"""CUDA staging: frames go up through pinned buffers on a side stream, maps come home the same way.

Uploads overlap the model running on the previous batch; host copies are deferred so that
the engine yields a batch only once the next one is queued.
"""

from __future__ import annotations

import numpy as np
import torch


def normalise(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (3, T, H, W) in [-1, 1], with the released arithmetic."""
    return frames.permute(3, 0, 1, 2).float().mul_(2.0).sub_(255).div_(255)


class Uploader:
    """Host -> CUDA copies of frame chunks from two reused pinned buffers, on a side stream.

    A chunk's copy is queued behind nothing on the compute stream, so it overlaps the model
    running on the previous batch; the compute stream waits for it only where it is used.
    Two buffers alternate so that a chunk never overwrites one whose copy is still in flight.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.buffers: list[torch.Tensor | None] = [None, None]
        self.done: list[torch.cuda.Event | None] = [None, None]
        self.turn = 0

    def __call__(self, chunk: np.ndarray | torch.Tensor) -> torch.Tensor:
        host = torch.as_tensor(chunk)
        slot, self.turn = self.turn, self.turn ^ 1
        done = self.done[slot]
        if done is not None:
            done.synchronize()
        buffer = self.buffers[slot]
        if buffer is None or buffer.numel() < host.numel():
            buffer = self.buffers[slot] = torch.empty(host.numel(), dtype=torch.uint8, pin_memory=True)
        staged = buffer[: host.numel()].view(host.shape)
        staged.copy_(host)
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.stream):
            frames = normalise(staged.to(self.device, non_blocking=True))
            done = self.done[slot] = torch.cuda.Event()
            done.record(self.stream)
        compute.wait_stream(self.stream)
        frames.record_stream(compute)
        return frames


class HostCopy:
    """Maps (and their per-map extras) on their way to pinned host memory; ``result()`` waits only for this copy."""

    def __init__(self, maps: torch.Tensor, extras: dict[str, torch.Tensor]) -> None:
        self.host = {name: _pinned_copy(t) for name, t in {"": maps, **extras}.items()}
        self.done = torch.cuda.Event()
        self.done.record(torch.cuda.current_stream(maps.device))

    def result(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        self.done.synchronize()
        arrays = {name: t.numpy() for name, t in self.host.items()}
        return arrays.pop(""), arrays


def _pinned_copy(tensor: torch.Tensor) -> torch.Tensor:
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host
