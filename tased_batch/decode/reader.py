"""One video as chunks of RGB frames at model size: fetch, probe, pick a backend, fall back.

Readers are created lazily in the process that reads, never before a fork (dmlc/decord
#294: readers shared across forked workers deadlock); a reader that finds itself in a new
process re-opens, and pickling drops the native objects. A video that breaks half-way
fails as a whole (``VideoError``): see docs/decoding.md.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from tased_batch.core.errors import ConfigError, VideoError
from tased_batch.decode import decord_backend, pyav_backend, torchcodec_backend  # noqa: F401  (registration)
from tased_batch.decode.backend import (
    BACKENDS,
    Backend,
    DecodeFailure,
    EndOfStream,
    Frames,
)
from tased_batch.decode.fetch import Fetched, fetch, storage_call
from tased_batch.decode.frames_backend import FramesBackend
from tased_batch.decode.options import MAX_FRAME_PIXELS
from tased_batch.decode.probe import _REENCODE, Probe, check_claims, check_length, probe, target_bytes
from tased_batch.decode.sampling import FOLDER_FPS, VideoInfo
from tased_batch.decode.sources import IMAGE_EXTENSIONS, VideoSource, suffix_of

RESIZES = ("decoder", "exact")
# Full-resolution frames one chunk may hold (``--resize exact`` decodes at source size):
# 4K gets 10 frames a chunk, 8K 2, instead of 64 whatever the size (16 GB at 8K).
FULL_SIZE_CHUNK_BYTES = 256 << 20
_FALLBACK = "pyav"  # decodes whatever FFmpeg can, from files and streams

_INHERITED: list = []  # native objects inherited through fork, never freed in the child


def decoders() -> tuple[str, ...]:
    """The ``--decoder`` choices: ``auto`` and every registered backend."""
    return ("auto", *BACKENDS)


def cuda_decoding_available() -> bool:
    """True when torchcodec is installed and a CUDA device is visible (``auto`` then decodes on the GPU)."""
    if importlib.util.find_spec("torchcodec") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(decoder: str, device: str | None) -> str:
    """The device a reader decodes on: ``cuda`` only for torchcodec (explicit, or ``auto`` with a GPU)."""
    if device is not None:
        return device
    if decoder in ("auto", "torchcodec") and cuda_decoding_available():
        return "cuda"
    return "cpu"


def backend_order(decoder: str, device: str) -> list[str]:
    """Backends to try for one video, best first."""
    if decoder != "auto":
        return [decoder]
    order = ["torchcodec"] if device.startswith("cuda") and "torchcodec" in BACKENDS else []
    return order + [name for name in ("decord", _FALLBACK) if name in BACKENDS]


class VideoReader:
    """One video, opened lazily in the process that reads it; use as a context manager.

    Nothing native is created until ``info`` or ``iter_frames`` is used, and a reader that
    was pickled or inherited through a fork re-opens in its new process. ``display`` names
    the video in errors when ``source`` is a local copy of it (a prefetched object).
    """

    def __init__(
        self,
        source: VideoSource,
        size: tuple[int, int],
        *,
        decoder: str = "auto",
        resize: str = "decoder",
        storage_options: dict | None = None,
        threads: int = 0,
        device: str | None = None,
        display: str | None = None,
        max_frame_pixels: int = MAX_FRAME_PIXELS,
    ) -> None:
        if decoder not in decoders():
            raise ConfigError(f"--decoder must be one of {', '.join(decoders())}, got {decoder!r}")
        if resize not in RESIZES:
            raise ConfigError(f"--resize must be one of {', '.join(RESIZES)}, got {resize!r}")
        if decoder != "auto":
            missing = BACKENDS[decoder].unavailable()
            if missing:
                raise ConfigError(f"--decoder {decoder}: {missing}", "use --decoder auto")
        h, w = size
        if h <= 0 or w <= 0:
            raise ConfigError(f"frame size must be positive, got {h}x{w}")
        self.source = source
        self.size = (int(h), int(w))
        self.decoder = decoder
        self.resize = resize
        self.storage_options = dict(storage_options or {})
        self.threads = int(threads)
        self.device = device
        self.display = display
        self.max_frame_pixels = int(max_frame_pixels)
        self._reset()

    def _abandon(self) -> None:
        """Drop objects inherited through fork without running their native destructors.

        Freeing a decord reader in a forked child segfaults (its decoder thread lives only
        in the parent), so its handle is detached; other native objects are parked for the
        life of the process for the same reason.
        """
        detach = getattr(self._backend, "detach", None)
        if detach is not None:
            detach()
        _INHERITED.append((self._backend, self._fetched))

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._backend: Any = None
        self._info: VideoInfo | None = None
        self._fetched: Fetched | None = None
        self._probe: Probe | None = None

    @property
    def name(self) -> str:
        return self.display or self.source.display

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    @property
    def backend(self) -> str:
        """Which backend is decoding (``decord``, ``pyav``, ``torchcodec`` or ``frames``); opens the video."""
        self._open()
        return self._backend.name

    @property
    def info(self) -> VideoInfo:
        self._open()
        assert self._info is not None
        return self._info

    @property
    def codec(self) -> str:
        """The video stream's codec name (empty for frame folders); opens the video."""
        self._open()
        return self._probe.codec if self._probe is not None else ""

    def close(self) -> None:
        """Release decoders and delete any spooled copy (idempotent)."""
        if getattr(self, "_pid", None) != os.getpid():
            if hasattr(self, "_pid"):  # inherited through fork: the parent owns those resources
                self._abandon()
                self._reset()
            return
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        if self._fetched is not None:
            self._fetched.release()
            self._fetched = None

    # -- opening -------------------------------------------------------------------------

    def _open(self) -> None:
        if self._pid != os.getpid():
            self._abandon()  # forked: never touch the parent's native objects
            self._reset()
        if self._backend is not None:
            return
        try:
            self._open_backend()
        except Exception:
            self.close()
            raise

    def _open_backend(self) -> None:
        self._fetched = fetched = fetch(self.source, self.storage_options, self.name)
        if fetched.folder is not None:
            self._open_frames(*fetched.folder)
            return
        target = fetched.target
        self._probe = probed = probe(self.name, target)
        self._check_frame_size(probed.width, probed.height)
        device = resolve_device(self.decoder, self.device)
        order = backend_order(self.decoder, device)
        backend: Backend | None = None
        for i, choice in enumerate(order):
            cls = BACKENDS[choice]
            if cls.needs_path and not isinstance(target, str):
                continue
            if self.decoder == "auto" and cls.unavailable():
                continue
            try:
                backend = cls(
                    self.name, target, self.size, resize=self.resize, threads=self.threads, probe=probed, device=device
                )
                break
            except VideoError:
                raise
            except Exception as e:  # decoders raise their own error types for any failure
                if i == len(order) - 1:
                    raise VideoError(
                        self.name,
                        "decode-error",
                        f"{choice} cannot open it ({str(e).splitlines()[0][:200]})",
                        "try --decoder auto or pyav",
                    ) from e
        assert backend is not None
        self._backend = backend
        check_length(self.name, backend.n_frames, backend.fps, probed.declared)
        check_claims(self.name, backend.n_frames, backend.fps, probed.seconds, target_bytes(target))
        n = backend.n_frames
        self._info = VideoInfo(n, backend.fps, probed.width, probed.height, n / backend.fps)

    def _check_frame_size(self, width: int, height: int) -> None:
        """Refuse frames larger than the limit before a decoder allocates one."""
        pixels = int(width) * int(height)
        if pixels > self.max_frame_pixels:
            raise VideoError(
                self.name,
                "too-large",
                f"its frames are {width}x{height} ({pixels / 1e6:.0f} Mpx, {pixels * 3 / 2**20:.0f} MiB each as RGB), "
                f"over the limit of {self.max_frame_pixels / 1e6:.0f} Mpx",
                "raise --max-frame-pixels if the workers have the memory, or downscale the video",
            )

    def _open_frames(self, fs: Any, folder: str) -> None:
        entries = storage_call(self.name, lambda: fs.ls(folder, detail=True))
        images = [e for e in entries if suffix_of(e["name"]) in IMAGE_EXTENSIONS]
        special = sorted(e["name"] for e in images if e.get("type") not in ("file", None))
        if special:  # a FIFO among the frames would block the read
            raise VideoError(
                self.name,
                "not-regular",
                f"frame {special[0]!r} is not a regular file",
                "frames must be regular image files; copy the data into files",
            )
        paths = sorted(e["name"] for e in images)
        if not paths:
            raise VideoError(
                self.name,
                "not-video",
                "a folder without video frames (no image files)",
                "point at a video or a folder of frames",
            )
        backend = FramesBackend(fs, paths, self.size, self.name)
        first = backend.image(0)
        self._backend = backend
        n = backend.n_frames
        self._info = VideoInfo(n, FOLDER_FPS, int(first.shape[1]), int(first.shape[0]), n / FOLDER_FPS)

    # -- reading -------------------------------------------------------------------------

    def iter_frames(self, indices: np.ndarray, chunk: int = 64) -> Iterator[Frames]:
        """uint8 RGB chunks (t, H, W, 3) at model size for sorted source frame indices.

        Indices may repeat (``--fps`` upsampling); each chunk holds at most ``chunk``
        frames, so memory is bounded by the chunk whatever the video's length. A failure
        part-way raises :class:`VideoError` after the earlier chunks were yielded. Chunks
        are numpy arrays, or CUDA tensors when torchcodec decodes on the GPU.
        """
        self._open()
        info = self.info
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return
        if np.any(np.diff(indices) < 0):
            raise ValueError("frame indices must be sorted")
        n = info.n_frames
        if indices[0] < 0 or indices[-1] >= n:
            raise ValueError(f"frame indices must lie in [0, {n}), got {indices[0]}..{indices[-1]}")
        chunk = max(1, int(chunk))
        if self.resize == "exact" and self._backend.name != "frames":
            # decoders hand over full-size frames before they are resized: bound them by bytes
            chunk = min(chunk, max(1, FULL_SIZE_CHUNK_BYTES // max(1, info.width * info.height * 3)))
        for start in range(0, len(indices), chunk):
            part = indices[start : start + chunk]
            unique, inverse = np.unique(part, return_inverse=True)
            frames = self._read(unique)
            if len(unique) != len(part):
                frames = frames[inverse if isinstance(frames, np.ndarray) else _as_index(inverse, frames)]
            yield frames

    def _read(self, unique: np.ndarray) -> Frames:
        try:
            return self._backend.read(unique)
        except VideoError:
            raise
        except EndOfStream as e:
            raise VideoError(
                self.name,
                "truncated",
                f"the stream ends at frame {e.at} of {self.info.n_frames} (frames 0..{e.at - 1} decoded)",
                "download or copy it again; the whole video is failed so no partial maps are written",
            ) from e
        except Exception as e:
            fetched = self._fetched
            local = fetched is not None and fetched.path is not None
            if self._backend.name not in (_FALLBACK, "frames") and self.decoder == "auto" and local:
                return self._fallback_read(unique, e)
            raise self._mid_stream_error(unique, e) from e

    def _mid_stream_error(self, unique: np.ndarray, exc: BaseException) -> VideoError:
        if isinstance(exc, DecodeFailure):
            where, exc = f"at frame {exc.at}", exc.cause
        else:
            where = f"between frames {unique[0]} and {unique[-1]}"
        lines = str(exc).strip().splitlines()
        detail = lines[-1][:200] if lines else type(exc).__name__
        return VideoError(
            self.name,
            "corrupt-frame",
            f"decoding failed {where} of {self.info.n_frames} with {self._backend.name} ({detail}); "
            "the whole video is failed so no partial maps are written",
            f"the data is damaged mid-stream; {_REENCODE}",
        )

    def _fallback_read(self, unique: np.ndarray, exc: BaseException) -> np.ndarray:
        """The preferred backend failed mid-stream: continue with PyAV from the same frames."""
        info = self.info
        assert self._fetched is not None and self._probe is not None
        self._backend.close()
        probed = Probe(info.n_frames, info.fps, info.width, info.height, self._probe.codec, None)
        self._backend = BACKENDS[_FALLBACK](
            self.name,
            self._fetched.target,
            self.size,
            resize=self.resize,
            threads=self.threads,
            probe=probed,
            device="cpu",
        )
        try:
            return self._backend.read(unique)
        except EndOfStream as e:
            raise VideoError(
                self.name,
                "truncated",
                f"the stream ends at frame {e.at} of {info.n_frames}",
                "download or copy it again",
            ) from e
        except Exception as e:
            raise self._mid_stream_error(unique, e) from e


def _as_index(inverse: np.ndarray, frames: Any) -> Any:
    import torch

    return torch.as_tensor(inverse, device=frames.device)


def source_of(uri: str) -> VideoSource:
    """A single video named by its URI; its id is the file name without extension."""
    stem = uri.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0] or "video"
    return VideoSource(stem, uri)


def open_video(
    source: VideoSource | str,
    size: tuple[int, int],
    *,
    decoder: str = "auto",
    resize: str = "decoder",
    storage_options: dict | None = None,
    threads: int = 0,
    device: str | None = None,
    display: str | None = None,
    max_frame_pixels: int = MAX_FRAME_PIXELS,
) -> VideoReader:
    """A lazy reader for one video at model ``size`` (H, W); see :class:`VideoReader`.

    ``decoder``: ``auto`` (torchcodec on the GPU where it is installed and a GPU is
    visible, else decord; PyAV when those cannot open or decode the file), ``decord``,
    ``pyav`` or ``torchcodec``. ``resize``: ``decoder`` (scaled by the decoder, bilinear,
    fast) or ``exact`` (full-size decode then cv2.resize, as the released script).
    ``threads``: decoder threads per video (0: the decoder's choice). ``device``: where
    torchcodec decodes (``cpu``, ``cuda``, ``cuda:1``; default: the GPU if there is one).
    """
    if isinstance(source, str):
        source = source_of(source)
    return VideoReader(
        source,
        size,
        decoder=decoder,
        resize=resize,
        storage_options=storage_options,
        threads=threads,
        device=device,
        display=display,
        max_frame_pixels=max_frame_pixels,
    )
