"""Checkpoints: find, read, check and load TASED-Net weights from any fsspec URI.

The released ``TASED_updated.pt`` is a plain state dict saved from ``nn.DataParallel``
(every key prefixed ``module.``); it loads unchanged. S3D encoder files load into the
encoder for fine-tuning. ``"random"`` builds a calibrated random stand-in that is always
labelled as such: nothing falls back to it silently.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tased_batch.core.errors import WeightsError
from tased_batch.model.network import TASEDNet

RELEASED_FILE = "TASED_updated.pt"
RELEASED_DRIVE_ID = "1y4KSTm-e7kP84k0IyVI-rRtmYZkrC-wL"
RANDOM = "random"
RELEASED = "released"
CACHE_ENV = "TASED_BATCH_CACHE"

# S3D encoder layer n -> (TASED-Net stage, first layer index of that stage)
_S3D_STAGES = ((0, 5, "base1"), (5, 8, "base2"), (8, 14, "base3"), (14, 16, "base4"))


@dataclass(frozen=True)
class WeightsInfo:
    """What produced the maps; recorded in every output's metadata."""

    kind: str  # "released" | "random" | "custom"
    uri: str
    sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


def cache_dir() -> Path:
    """``$TASED_BATCH_CACHE``, else ``$XDG_CACHE_HOME/tased-batch``, else ``~/.cache/tased-batch``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "tased-batch"


def released_path() -> Path:
    return cache_dir() / RELEASED_FILE


def _read_bytes(uri: str, storage_options: dict | None = None) -> bytes:
    import fsspec

    try:
        with fsspec.open(uri, "rb", **(storage_options or {})) as f:
            return f.read()
    except FileNotFoundError as e:
        raise WeightsError(f"weights file not found: {uri}", "check the path or URI") from e
    except PermissionError as e:
        raise WeightsError(f"no permission to read weights: {uri}", "check credentials") from e


def _strip_prefix(state: dict) -> dict:
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


def read_state_dict(uri: str, storage_options: dict | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Read a checkpoint and return (state dict without ``module.``, sha256 of the file)."""
    return _state_from_bytes(_read_bytes(uri, storage_options), uri)


def _state_from_bytes(data: bytes, uri: str) -> tuple[dict[str, torch.Tensor], str]:
    digest = hashlib.sha256(data).hexdigest()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(
            f"{uri} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})",
            "re-download it with `tased-batch weights download`",
        ) from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{uri} does not hold a state dict of tensors")
    return _strip_prefix(state), digest


def checkpoint_kind(state: dict[str, torch.Tensor]) -> str:
    """``"tased"`` (full model), ``"s3d"`` (encoder only, ``base.<n>`` keys) or ``"unknown"``."""
    if any(k.startswith("convtsp") for k in state) and any(k.startswith("base1.") for k in state):
        return "tased"
    if any(re.match(r"base\.\d+\.", k) for k in state):
        return "s3d"
    return "unknown"


def map_s3d_encoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename S3D encoder keys ``base.<n>.<rest>`` to this model's ``base1..base4`` stages."""
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = re.match(r"base\.(\d+)\.(.+)", key)
        if not m:
            continue  # the classifier head (fc) has no counterpart here
        n, rest = int(m.group(1)), m.group(2)
        for lo, hi, stage in _S3D_STAGES:
            if lo <= n < hi:
                mapped[f"{stage}.{n - lo}.{rest}"] = value
                break
    return mapped


def check_state_dict(state: dict[str, torch.Tensor], model: torch.nn.Module, *, encoder_only: bool = False) -> None:
    """Refuse a state dict with missing, unexpected or mis-shaped tensors, naming them all."""
    expected = model.state_dict()
    if encoder_only:
        expected = {k: v for k, v in expected.items() if k.startswith("base")}
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if items:
            shown = ", ".join(items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8 else "")
            problems.append(f"{len(items)} {label}: {shown}")
    if problems:
        raise WeightsError(
            "checkpoint does not match TASED-Net: " + "; ".join(problems),
            "use the released TASED_updated.pt (`tased-batch weights download`) or an S3D encoder file",
        )


def _load_into(model: TASEDNet, state: dict[str, torch.Tensor], *, encoder_only: bool) -> None:
    check_state_dict(state, model, encoder_only=encoder_only)
    model.load_state_dict(state, strict=False)


def calibrated_random_model(seed: int = 0, size: tuple[int, int] = (64, 96), clips: int = 6) -> TASEDNet:
    """A random TASED-Net whose maps vary with the input (default-initialised ones are constant).

    BatchNorm statistics are estimated on synthetic clips (cumulative average), then the
    last layer is scaled so that the output logits spread over the sigmoid's useful range.
    """
    from tased_batch.decode.sample import synthetic_frames

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = TASEDNet()
    torch.random.set_rng_state(generator_state)
    batches = []
    for i in range(clips):
        frames = torch.from_numpy(synthetic_frames(32, size[0], size[1], seed=seed * 1000 + i))
        batches.append(frames.permute(3, 0, 1, 2).float().mul(2).sub(255).div(255))
    x = torch.stack(batches)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(x)
    for bn in bns:
        bn.momentum = 1e-3
    model.eval()
    head = model.convtsp4[-2]
    assert isinstance(head, torch.nn.Conv3d) and head.bias is not None
    with torch.no_grad():
        logits = torch.logit(model(x).clamp(1e-6, 1 - 1e-6))
        scale = 1.5 / logits.std().clamp_min(1e-6)
        head.weight.mul_(scale)
        head.bias.copy_(head.bias * scale - logits.mean() * scale)
    return model


def state_sha256(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _random_model() -> tuple[TASEDNet, WeightsInfo]:
    """The random stand-in, cached on disk so that every worker gets the identical model."""
    path = cache_dir() / "random-standin-v1.pt"
    model = TASEDNet()
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception:
            path.unlink(missing_ok=True)
            return _random_model()
    else:
        model = calibrated_random_model()
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as tmp:
            torch.save(model.state_dict(), tmp)
        os.replace(tmp.name, path)
    return model.eval(), WeightsInfo(kind=RANDOM, uri=RANDOM, sha256=state_sha256(model))


def resolve_weights(weights: str | None) -> str:
    """Turn ``None``/``"released"`` into the cached released file, or fail saying how to get it."""
    if weights in (None, "", RELEASED):
        path = released_path()
        if not path.exists():
            raise WeightsError(
                f"the released weights are not in the cache ({path})",
                "run `tased-batch weights download`, pass --weights PATH_OR_URI, "
                "or --weights random for an explicitly labelled random stand-in",
            )
        return str(path)
    return weights


def load_model(
    weights: str | None = None,
    device: str | torch.device = "cpu",
    *,
    storage_options: dict | None = None,
    encoder_only: bool = False,
) -> tuple[TASEDNet, WeightsInfo]:
    """Build TASED-Net, load ``weights``; return it in eval mode on ``device`` with what it was built from.

    ``weights``: a local path or fsspec URI of a TASED-Net or S3D encoder checkpoint,
    ``"released"``/``None`` for the cached released file, or ``"random"`` for the labelled
    stand-in. The :class:`WeightsInfo` (kind, uri, sha256) is what outputs record as their provenance.
    """
    if weights == RANDOM:
        model, info = _random_model()
        return model.eval().to(device), info
    uri = resolve_weights(weights)
    state, digest = read_state_dict(uri, storage_options)
    return _model_from_state(state, uri, digest, device, encoder_only=encoder_only)


def _model_from_state(
    state: dict[str, torch.Tensor], uri: str, digest: str, device, *, encoder_only: bool = False
) -> tuple[TASEDNet, WeightsInfo]:
    kind = checkpoint_kind(state)
    model = TASEDNet()
    if kind == "s3d" or encoder_only:
        _load_into(model, map_s3d_encoder(state) if kind == "s3d" else state, encoder_only=True)
    else:
        _load_into(model, state, encoder_only=False)
    released = kind == "tased" and Path(uri).name == RELEASED_FILE
    info = WeightsInfo(kind=RELEASED if released else "custom", uri=str(uri), sha256=digest)
    return model.eval().to(device), info


def weights_payload(weights: str | None, storage_options: dict | None = None) -> tuple[bytes, WeightsInfo]:
    """Checkpoint bytes plus their description, read once by a driver and shared with its workers.

    The bytes are checked here (they must load) so that a bad file fails before any worker starts.
    """
    if weights == RANDOM:
        model, info = _random_model()
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        return buffer.getvalue(), info
    uri = resolve_weights(weights)
    data = _read_bytes(uri, storage_options)
    state, digest = _state_from_bytes(data, uri)
    _, info = _model_from_state(state, uri, digest, "cpu")
    return data, info


def model_from_payload(data: bytes, info: WeightsInfo, device: str | torch.device = "cpu") -> TASEDNet:
    """The model a worker builds from :func:`weights_payload`'s bytes (the caller holds their ``info``)."""
    state, _ = _state_from_bytes(data, info.uri)
    if info.kind == RANDOM:
        model = TASEDNet()
        model.load_state_dict(state)
        return model.eval().to(device)
    model, _ = _model_from_state(state, info.uri, info.sha256, device)
    return model


def weights_info(uri: str, storage_options: dict | None = None) -> dict:
    """Facts about a checkpoint file for `tased-batch weights info`."""
    state, digest = read_state_dict(uri, storage_options)
    kind = checkpoint_kind(state)
    report = {
        "uri": uri,
        "sha256": digest,
        "tensors": len(state),
        "parameters": int(sum(v.numel() for v in state.values())),
        "bytes": int(sum(v.numel() * v.element_size() for v in state.values())),
        "kind": {"tased": "full TASED-Net", "s3d": "S3D encoder"}.get(kind, "unknown"),
    }
    if kind in ("tased", "s3d"):
        try:
            mapped = map_s3d_encoder(state) if kind == "s3d" else state
            check_state_dict(mapped, TASEDNet(), encoder_only=kind == "s3d")
            report["loads"] = True
        except WeightsError as e:
            report["loads"] = False
            report["problem"] = e.message
    else:
        report["loads"] = False
    return report


def _reachable(host: str, port: int = 443, timeout: float = 5.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def download_released(dest_dir: Path | None = None, *, quiet: bool = False) -> dict:
    """Fetch ``TASED_updated.pt`` from Google Drive into the cache, check it loads, record its sha256.

    Fails fast (a few seconds) with a WeightsError when Google Drive cannot be reached.
    """
    dest_dir = Path(dest_dir) if dest_dir else cache_dir()
    dest = dest_dir / RELEASED_FILE
    if not _reachable("drive.google.com"):
        raise WeightsError(
            "cannot reach drive.google.com (offline or blocked)",
            f"download {RELEASED_FILE} on a machine with internet and copy it to {dest}, or pass --weights PATH_OR_URI",
        )
    import gdown

    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    try:
        got = gdown.download(id=RELEASED_DRIVE_ID, output=str(tmp), quiet=quiet)
    except Exception as e:
        raise WeightsError(f"download failed: {e}", "try again later, or fetch the file by hand") from e
    if not got or not tmp.exists():
        raise WeightsError("download failed: Google Drive returned no file", "try again later")
    state, digest = read_state_dict(str(tmp))
    check_state_dict(state, TASEDNet())
    os.replace(tmp, dest)
    record = {"file": str(dest), "sha256": digest, "drive_id": RELEASED_DRIVE_ID}
    (dest_dir / (RELEASED_FILE + ".json")).write_text(json.dumps(record, indent=2))
    return record
