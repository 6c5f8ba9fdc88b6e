"""The engine's fast path: BatchNorm folding, numeric precision and batch sizing.

Precision is explicit on CUDA: PyTorch runs fp32 convolutions as TF32 by default on Ampere
and later GPUs, so ``fp32`` here turns TF32 off around the forward pass (and restores the
global settings after), and ``tf32`` is its own choice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from tased_batch.model import WINDOW

PRECISIONS = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
AUTO = "auto"
# CPU batch for "auto": per-window time at 224x384 drops from batch 1 to 2 to 4 on a 2-core
# AVX-512 EPYC; batch 8 gains under 10% more for twice the memory (docs/benchmarks.md).
CPU_AUTO_BATCH = 4
MAX_AUTO_BATCH = 32
MEMORY_FRACTION = 0.8  # share of free memory "auto" may fill (allocator slack, other tenants)
# Peak bytes one more window adds on the CPU, per input pixel (max RSS at 224x384, fp32:
# batch 1, 2, 4, 8 -> 0.98, 1.34, 2.10, 3.65 GB, about 385 MB a window).
CPU_BYTES_PER_PIXEL = 4_500


def _fold_into(conv: torch.nn.Conv3d | torch.nn.ConvTranspose3d, bn: torch.nn.BatchNorm3d) -> None:
    """conv -> bn (eval) == one conv with scaled weights and a bias (computed in float64)."""
    assert bn.running_var is not None and bn.running_mean is not None, "BatchNorm without running statistics"
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = bn.bias.double() - bn.running_mean.double() * scale
    out_dim = 1 if isinstance(conv, torch.nn.ConvTranspose3d) else 0  # where output channels are
    shape = [1] * conv.weight.dim()
    shape[out_dim] = -1
    bias = shift if conv.bias is None else conv.bias.double() * scale + shift
    with torch.no_grad():
        conv.weight.copy_((conv.weight.double() * scale.view(shape)).to(conv.weight.dtype))
        conv.bias = torch.nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold each eval-mode BatchNorm3d into the convolution registered just before it, in place.

    In TASED-Net every BatchNorm directly follows a convolution, and modules register in
    the order they run, so each (conv, bn) pair of siblings is folded and the bn becomes
    an Identity. Saves a full pass over every activation (about 15% of the CPU time).
    """
    for parent in model.modules():
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = parent._modules[first], parent._modules[second]
            if isinstance(bn, torch.nn.BatchNorm3d) and isinstance(conv, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)):
                if conv.groups != 1 or bn.training or not bn.track_running_stats or not bn.affine:
                    continue
                _fold_into(conv, bn)
                parent._modules[second] = torch.nn.Identity()
    return model


def torch_problem(device: torch.device | str, version: str = torch.__version__) -> str | None:
    """Why this torch cannot run the model well on ``device`` (one line a user can act on), or None.

    torch 2.9.0 disables cuDNN for conv3d on CUDA, falling back to a slow, memory-hungry path
    (fixed in 2.9.1 with cuDNN >= 9.15); TASED-Net is all conv3d.
    """
    if torch.device(device).type == "cuda" and version.split("+")[0] == "2.9.0":
        return "torch 2.9.0 runs conv3d on CUDA without cuDNN (slow, memory-hungry): install torch 2.9.1 or newer"
    return None


def precision_supported(precision: str, device: torch.device | str) -> bool:
    """Whether ``precision`` has fast kernels on ``device`` (bf16 on CPUs: AVX-512 BF16 or AMX)."""
    return precision_problem(precision, device) is None


def precision_problem(precision: str, device: torch.device | str) -> str | None:
    """Why ``precision`` cannot run on ``device`` (a sentence a user can act on), or None."""
    device = torch.device(device)
    if precision == "fp32":
        return None
    if precision == "tf32":
        if device.type != "cuda":
            return f"tf32 is a CUDA precision (NVIDIA GPUs of compute capability 8.0 or newer); this is a {device.type} device: use fp32"
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            return f"tf32 needs compute capability 8.0 or newer (Ampere and later); this GPU is {major}.{minor}: use fp32 or fp16"
        return None
    if device.type == "cuda":
        if precision == "fp16" or torch.cuda.is_bf16_supported():
            return None
    elif device.type == "cpu":
        check = "_is_mkldnn_bf16_supported" if precision == "bf16" else "_is_mkldnn_fp16_supported"
        probe = getattr(torch.ops.mkldnn, check, None)
        if probe is not None and probe():
            return None
    else:
        return None  # other backends: autocast itself refuses what it cannot do
    return f"{precision} has no fast kernels on this {device.type} device; use fp32"


@contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """The arithmetic ``precision`` asks for, around one forward pass; global settings are restored after.

    ``fp32`` is strict (TF32 off for cuDNN convolutions and matmuls, which PyTorch would
    otherwise use for convolutions on Ampere and later); ``tf32`` turns it on; bf16/fp16 autocast.
    """
    if device.type == "cuda" and precision in ("fp32", "tf32"):
        allow = precision == "tf32"
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allow
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    elif precision in ("fp32", "tf32"):
        yield
    else:
        with torch.autocast(device.type, dtype=PRECISIONS[precision]):
            yield


def window_bytes_cuda(model: torch.nn.Module, size: tuple[int, int], forward) -> int:
    """Peak CUDA memory one more window adds: the peak of a batch of 2 minus a batch of 1.

    The difference leaves out the weights, cuDNN workspaces and anything else already
    allocated, which do not grow with the batch. ``forward`` should be the eager model:
    a compiled one would compile for both batch sizes.
    """
    device = next(model.parameters()).device
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    peaks = []
    for b in (1, 2):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        forward(torch.zeros(b, 3, WINDOW, *size, device=device))
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device))
    # cuDNN autotuning can make the two workspaces differ: never count less than half of
    # what a batch of 2 took above the weights
    return max(peaks[1] - peaks[0], (peaks[1] - base) // 2, 1)


def auto_batch_size(free_bytes: int, window_bytes: int, cap: int) -> int:
    """How many windows fit in MEMORY_FRACTION of the free memory, between 1 and ``cap``."""
    return int(min(cap, max(1, (free_bytes * MEMORY_FRACTION) // max(window_bytes, 1))))
