"""Read videos as chunks of RGB frames at model size, with bounded memory and typed errors.

Backends: decord (default; resizes while decoding, fastest), PyAV (fallback, and the only
way to stream objects too large to spool) and frame-image folders (read with OpenCV as the
released script does). Design notes from decord's issue tracker:

* readers are created lazily in the process that reads, never before a fork (dmlc/decord
  #294: readers shared across forked workers deadlock); a reader that finds itself in a new
  process re-opens, and pickling drops the native objects;
* ``import decord`` happens only when a decord reader is built (#251: importing it before
  torch can hang forked data loaders), and always after OpenCV: once decord is loaded
  first, ``cv2.imdecode`` fails on every PNG ("libpng error: bad parameters to zlib"),
  which broke frame folders read by a worker that had decoded a video before;
* frames are read in bounded, increasing chunks with ``get_batch``; long sequential reads
  must not grow memory (#208, #197), which tests/test_decode_memory.py checks;
* pip wheels have no CUDA, so decoding is on the CPU;
* containers or codecs decord cannot open or seek fall back to PyAV (``decoder="auto"``),
  also when decord fails mid-stream.

A video that breaks half-way fails as a whole (``VideoError``): see docs/decoding.md.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np

from tased_batch.errors import ConfigError, VideoError
from tased_batch.sources import IMAGE_EXTENSIONS, VideoSource, is_remote, is_tar, suffix_of

DECODERS = ("auto", "decord", "pyav")
RESIZES = ("decoder", "exact")
FOLDER_FPS = 30.0  # frame folders carry no rate; TASED-Net was trained on 30 fps video
SPOOL_DIR_ENV = "TASED_SPOOL_DIR"
SPOOL_MAX_ENV = "TASED_SPOOL_MAX_BYTES"
DEFAULT_SPOOL_MAX = 4 << 30
_COPY_BLOCK = 8 << 20
# Shortfall (frames) between what a file declares and what it holds before it is "truncated".
_TRUNCATION_SLACK = 2
_TRUNCATION_FRACTION = 0.02

_REENCODE = "re-encode it (e.g. ffmpeg -i in -c:v libx264 -crf 18 out.mp4) or fetch a fresh copy"


@dataclass
class VideoInfo:
    """What the decoder will deliver: frame count, frame rate and original size."""

    n_frames: int
    fps: float
    width: int
    height: int
    duration: float


@dataclass(frozen=True)
class Sampling:
    """Which frames the windows run over and which of them get a map.

    ``sequence[p]`` is the source frame shown at position ``p`` of the (possibly
    time-resampled) sequence, whose rate is ``fps``; ``targets`` are the sorted positions
    whose maps are output. Each target still gets a full 32-frame window over ``sequence``.
    """

    sequence: np.ndarray
    targets: np.ndarray
    fps: float

    def target_frames(self) -> np.ndarray:
        """Source frame index of each output map."""
        return self.sequence[self.targets]

    def target_times(self) -> np.ndarray:
        """Time in seconds of each output map: its position in the sequence over ``fps``.

        Without ``--fps`` this is the source frame index over the source rate.
        """
        return self.targets.astype(np.float64) / self.fps


def sample_frames(
    info: VideoInfo,
    *,
    fps: float | None = None,
    every: int | None = None,
    output_fps: float | None = None,
) -> Sampling:
    """Resample in time (``fps``), then choose output positions (``every`` or ``output_fps``).

    ``fps`` picks, for each instant ``p / fps``, the source frame on screen then (frames
    repeat when upsampling, are skipped when downsampling). ``every N`` keeps positions
    0, N, 2N...; ``output_fps R`` keeps the position on screen at each instant ``k / R``.
    """
    if fps is not None and not fps > 0:
        raise ConfigError(f"--fps must be positive, got {fps}")
    if every is not None and (int(every) != every or every < 1):
        raise ConfigError(f"--every must be a positive integer, got {every}")
    if output_fps is not None and not output_fps > 0:
        raise ConfigError(f"--output-fps must be positive, got {output_fps}")
    if every is not None and output_fps is not None:
        raise ConfigError("--every and --output-fps choose output frames in two ways", "give only one of them")
    n, src_fps = int(info.n_frames), float(info.fps)
    empty = np.zeros(0, np.int64)
    if n <= 0 or not src_fps > 0:
        return Sampling(empty, empty, float(fps or src_fps or FOLDER_FPS))
    if fps is None or abs(fps - src_fps) < 1e-9:
        sequence, seq_fps = np.arange(n, dtype=np.int64), src_fps
    else:
        seq_fps = float(fps)
        length = max(1, int(np.floor(n / src_fps * seq_fps + 1e-6)))
        times = np.arange(length, dtype=np.float64) / seq_fps
        sequence = np.minimum(np.floor(times * src_fps + 1e-6).astype(np.int64), n - 1)
    m = len(sequence)
    if every is not None:
        targets = np.arange(0, m, int(every), dtype=np.int64)
    elif output_fps is not None:
        count = max(1, int(np.ceil(m / seq_fps * output_fps - 1e-6)))
        instants = np.arange(count, dtype=np.float64) / output_fps
        targets = np.unique(np.minimum(np.floor(instants * seq_fps + 1e-6).astype(np.int64), m - 1))
    else:
        targets = np.arange(m, dtype=np.int64)
    return Sampling(sequence, targets, seq_fps)


# ---------------------------------------------------------------------------------------
# Spool: remote objects and tar members become local files in a bounded, cleaned-up area.


class _Spool:
    """Per-process spool directory with a byte budget shared by this process's readers.

    Files live in ``<TASED_SPOOL_DIR or tmp>/tased-spool/<pid>-<random>/``; each is removed
    when its reader closes, the directory at exit, and directories left by dead processes
    (killed workers) are swept when a new one is created.
    """

    _lock = threading.Lock()
    _dir: Path | None = None
    _used = 0

    @classmethod
    def limit(cls) -> int:
        text = os.environ.get(SPOOL_MAX_ENV)
        try:
            return int(text) if text else DEFAULT_SPOOL_MAX
        except ValueError:
            raise ConfigError(f"{SPOOL_MAX_ENV}={text!r} is not a number of bytes") from None

    @classmethod
    def root(cls) -> Path:
        return Path(os.environ.get(SPOOL_DIR_ENV) or tempfile.gettempdir()) / "tased-spool"

    @classmethod
    def directory(cls) -> Path:
        with cls._lock:
            if cls._dir is None or not cls._dir.name.startswith(f"{os.getpid()}-"):
                root = cls.root()
                root.mkdir(parents=True, exist_ok=True)
                _sweep_dead(root)
                cls._dir = root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
                cls._dir.mkdir()
                cls._used = 0
                atexit.register(shutil.rmtree, cls._dir, True)
            return cls._dir

    @classmethod
    def reserve(cls, size: int) -> bool:
        """Claim ``size`` bytes of the budget (and of the disk); False means stream instead."""
        directory = cls.directory()
        with cls._lock:
            if cls._used + size > cls.limit():
                return False
            if shutil.disk_usage(directory).free < size + (256 << 20):
                return False
            cls._used += size
            return True

    @classmethod
    def release(cls, size: int) -> None:
        with cls._lock:
            cls._used = max(0, cls._used - size)


def _sweep_dead(root: Path) -> None:
    """Remove spool directories whose process no longer exists."""
    for entry in root.iterdir():
        pid_text = entry.name.split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except PermissionError:
            pass  # alive, owned by someone else


# ---------------------------------------------------------------------------------------
# Error classification.

_SIGNATURES = (
    (4, b"ftyp", "MP4/MOV"),
    (4, b"moov", "MP4/MOV"),
    (4, b"mdat", "MP4/MOV"),
    (4, b"free", "MP4/MOV"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"RIFF", "AVI"),
    (0, b"FLV", "FLV"),
    (0, b"OggS", "Ogg"),
    (0, b"\x00\x00\x01\xba", "MPEG-PS"),
    (0, b"GIF8", "GIF"),
)


def _container_signature(head: bytes) -> str | None:
    """The container a file's first bytes announce, if any (tells truncated from not-video)."""
    for offset, magic, name in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "MPEG-TS"
    return None


def _open_error(name: str, exc: BaseException, head: bytes) -> VideoError:
    import av

    if isinstance(exc, FileNotFoundError):
        return VideoError(name, "missing", "file not found", "check the path; it may have been moved or deleted")
    if isinstance(exc, PermissionError):
        return VideoError(name, "permission", "permission denied", "check the file's permissions")
    if isinstance(exc, av.error.DecoderNotFoundError):
        return VideoError(name, "unsupported-codec", "no decoder for its video codec", _REENCODE)
    container = _container_signature(head)
    if container:
        return VideoError(
            name,
            "truncated",
            f"looks like {container} but cannot be opened ({exc}); the file is probably cut off or damaged",
            "download or copy it again",
        )
    return VideoError(name, "not-video", f"not a video file ({exc})", "remove it from the input or fix its content")


# ---------------------------------------------------------------------------------------
# Backends: each gives n_frames/fps and reads sorted unique indices into (k, H, W, 3) uint8.


def _cv2():
    try:
        import cv2
    except ImportError as e:
        raise VideoError(
            "opencv", "missing-dependency", "OpenCV is needed for frame folders and --resize exact",
            "pip install opencv-python-headless",
        ) from e
    return cv2


def _resize_exact(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The released script's resize: cv2.resize(img, (W, H)), bilinear."""
    h, w = size
    if frame.shape[0] == h and frame.shape[1] == w:
        return frame
    return _cv2().resize(frame, (w, h), interpolation=_cv2().INTER_LINEAR)


class _DecordBackend:
    name = "decord"

    def __init__(self, path: str, size: tuple[int, int], resize: str, threads: int) -> None:
        _cv2()  # OpenCV must load before decord: decord's bundled zlib breaks cv2's PNG decoding after it
        import decord

        self._size = size
        self._exact = resize == "exact"
        h, w = size
        kwargs = {} if self._exact else {"width": w, "height": h}
        self._vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads, **kwargs)
        self.n_frames = len(self._vr)
        self.fps = float(self._vr.get_avg_fps())

    def read(self, indices: np.ndarray) -> np.ndarray:
        frames = self._vr.get_batch(indices.tolist()).asnumpy()
        if self._exact:
            frames = np.stack([_resize_exact(f, self._size) for f in frames])
        return frames

    def close(self) -> None:
        self._vr = None


class _PyAVBackend:
    """Sequential PyAV decoding: frame k is the k-th frame the decoder outputs."""

    name = "pyav"

    def __init__(self, target, size: tuple[int, int], resize: str, threads: int, n_frames: int, fps: float) -> None:
        import av

        self._size = size
        self._exact = resize == "exact"
        self._container = av.open(target)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.thread_count = threads
        self._decoded = None
        self._pos = 0  # index of the next frame the decoder will output
        self.n_frames = n_frames
        self.fps = fps

    def _restart(self) -> None:
        self._container.seek(0, stream=self._stream)
        self._decoded = self._container.decode(self._stream)
        self._pos = 0

    def _convert(self, frame) -> np.ndarray:
        h, w = self._size
        if self._exact:
            return _resize_exact(frame.to_ndarray(format="rgb24"), self._size)
        return frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="BILINEAR")

    def read(self, indices: np.ndarray) -> np.ndarray:
        if self._decoded is None or indices[0] < self._pos:
            self._restart()
        out = []
        wanted = iter(indices.tolist())
        target = next(wanted)
        while target is not None:
            try:
                frame = next(self._decoded, None)
            except Exception as e:  # PyAV raises av.error.* for damaged packets
                raise _DecodeFailure(self._pos, e) from e
            if frame is None:
                raise _EndOfStream(self._pos)
            if self._pos == target:
                out.append(self._convert(frame))
                target = next(wanted, None)
            self._pos += 1
        return np.stack(out)

    def close(self) -> None:
        self._container.close()


class _EndOfStream(Exception):
    """The decoder ran out of frames before the requested index."""

    def __init__(self, at: int) -> None:
        super().__init__(at)
        self.at = at


class _DecodeFailure(Exception):
    """The decoder failed on frame ``at``."""

    def __init__(self, at: int, cause: BaseException) -> None:
        super().__init__(at, cause)
        self.at, self.cause = at, cause


class _FramesBackend:
    """A folder of images: sorted by name, cv2.imread, cv2.resize (W, H), BGR -> RGB."""

    name = "frames"

    def __init__(self, fs, paths: list[str], size: tuple[int, int], display: str) -> None:
        self._fs, self._paths, self._size, self._display = fs, paths, size, display
        self.n_frames = len(paths)
        self.fps = FOLDER_FPS

    def image(self, i: int) -> np.ndarray:
        cv2 = _cv2()
        path = self._paths[i]
        try:
            data = self._fs.cat_file(path)
        except OSError as e:
            raise VideoError(self._display, "io-error", f"frame image {path} cannot be read: {e}", transient=True) from e
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise VideoError(
                self._display, "corrupt-frame", f"frame {i} ({_basename(path)}) is not a readable image",
                "replace or remove that image",
            )
        return img

    def read(self, indices: np.ndarray) -> np.ndarray:
        cv2 = _cv2()
        h, w = self._size
        return np.stack(
            [cv2.cvtColor(cv2.resize(self.image(i), (w, h), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
             for i in indices.tolist()]
        )

    def close(self) -> None:
        pass


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------------------


_INHERITED: list = []  # native objects inherited through fork, never freed in the child


class VideoReader:
    """One video, opened lazily in the process that reads it; use as a context manager.

    Nothing native is created until ``info`` or ``iter_frames`` is used, and a reader that
    was pickled or inherited through a fork re-opens in its new process.
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
    ) -> None:
        if decoder not in DECODERS:
            raise ConfigError(f"--decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        if resize not in RESIZES:
            raise ConfigError(f"--resize must be one of {', '.join(RESIZES)}, got {resize!r}")
        h, w = size
        if h <= 0 or w <= 0:
            raise ConfigError(f"frame size must be positive, got {h}x{w}")
        self.source = source
        self.size = (int(h), int(w))
        self.decoder = decoder
        self.resize = resize
        self.storage_options = dict(storage_options or {})
        self.threads = int(threads)
        self._reset()

    def _abandon(self) -> None:
        """Drop objects inherited through fork without running their native destructors.

        Freeing a decord reader in a forked child segfaults (its decoder thread lives only
        in the parent), so its handle is detached; PyAV objects are parked for the life of
        the process for the same reason.
        """
        vr = getattr(self._backend, "_vr", None)
        if vr is not None:
            vr._handle = None
        _INHERITED.append((self._backend, self._stream_file))

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._backend = None
        self._info: VideoInfo | None = None
        self._spooled: Path | None = None
        self._spooled_bytes = 0
        self._stream_file = None
        self._local: str | None = None
        self._declared: int | None = None

    @property
    def name(self) -> str:
        return self.source.display

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    @property
    def backend(self) -> str:
        """Which backend is decoding (``decord``, ``pyav`` or ``frames``); opens the video."""
        self._open()
        return self._backend.name

    @property
    def info(self) -> VideoInfo:
        self._open()
        return self._info

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
        if self._stream_file is not None:
            self._stream_file.close()
            self._stream_file = None
        if self._spooled is not None:
            self._spooled.unlink(missing_ok=True)
            _Spool.release(self._spooled_bytes)
            self._spooled = None

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

    def _fs(self, uri: str):
        return fsspec.core.url_to_fs(uri, **self.storage_options)

    def _open_backend(self) -> None:
        src = self.source
        if src.member is None and is_tar(src.uri):
            raise VideoError(self.name, "bad-shard", "this tar shard could not be listed", "check that it is a complete tar file")
        if src.member is not None:
            target = self._spool_member()
        elif is_remote(src.uri):
            target = self._remote()
        else:
            target = self._local_file(src.uri.removeprefix("file://"))
        if target is None:
            return  # a frame folder was opened
        head = self._head(target)
        n_frames, fps, width, height = self._probe(target, head)
        backend = None
        if self.decoder in ("auto", "decord") and isinstance(target, str):
            try:
                backend = _DecordBackend(target, self.size, self.resize, self.threads)
            except Exception as e:  # decord raises DECORDError / RuntimeError for any failure
                if self.decoder == "decord":
                    raise VideoError(
                        self.name, "decode-error", f"decord cannot open it ({str(e).splitlines()[0][:200]})",
                        "try --decoder auto or pyav",
                    ) from e
        if backend is None:
            if not isinstance(target, str):
                target.seek(0)
            if n_frames <= 0:
                n_frames = self._count_packets(target)
            backend = _PyAVBackend(target, self.size, self.resize, self.threads, n_frames, fps)
        else:
            fps = backend.fps or fps
        self._check_length(backend.n_frames, fps)
        self._backend = backend
        self._local = target if isinstance(target, str) else None
        n = backend.n_frames
        self._info = VideoInfo(n, fps, width, height, n / fps)

    def _local_file(self, path: str) -> str | None:
        if os.path.isdir(path):
            self._open_frames(fsspec.filesystem("file"), path)
            return None
        try:
            size = os.stat(path).st_size
            with open(path, "rb"):
                pass
        except FileNotFoundError as e:
            raise VideoError(self.name, "missing", "file not found", "check the path; it may have been moved or deleted") from e
        except PermissionError as e:
            raise VideoError(self.name, "permission", "permission denied", "check the file's permissions") from e
        if size == 0:
            raise VideoError(self.name, "empty-file", "the file is empty (0 bytes)", "download or copy it again")
        return path

    def _remote(self):
        fs, path = self._fs(self.source.uri)
        info = self._remote_call(lambda: fs.info(path))
        if info.get("type") == "directory":
            self._open_frames(fs, path)
            return None
        size = info.get("size")  # None: the server does not say (some HTTP servers)
        if size == 0:
            raise VideoError(self.name, "empty-file", "the object is empty (0 bytes)", "upload it again")
        if size is not None and _Spool.reserve(int(size)):
            self._spooled_bytes = int(size)
            dest = self._spool_path(path)

            def copy() -> None:
                with fs.open(path, "rb", block_size=_COPY_BLOCK) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, _COPY_BLOCK)

            self._remote_call(copy)
            return str(dest)
        # Too large for the spool, or of unknown size: stream it through PyAV (decord needs a path).
        self._stream_file = self._remote_call(lambda: fs.open(path, "rb", block_size=_COPY_BLOCK))
        return self._stream_file

    def _spool_path(self, name: str) -> Path:
        self._spooled = _Spool.directory() / f"{uuid.uuid4().hex}{suffix_of(name) or '.bin'}"
        return self._spooled

    def _remote_call(self, fn):
        """Run an fsspec call, turning storage errors into typed video errors."""
        try:
            return fn()
        except FileNotFoundError as e:
            raise VideoError(self.name, "missing", "object or file not found", "check the URI; it may have been deleted") from e
        except PermissionError as e:
            raise VideoError(
                self.name, "permission", "access denied",
                "check the AWS credentials/role in use and the bucket policy",
            ) from e
        except OSError as e:
            raise VideoError(self.name, "io-error", f"storage error: {e}", "retry later", transient=True) from e

    def _spool_member(self) -> str:
        """Copy a tar member into the spool (byte range when its offset is known)."""
        src = self.source
        fs, path = self._fs(src.uri) if is_remote(src.uri) else (fsspec.filesystem("file"), src.uri)
        size = src.size
        if size == 0:
            raise VideoError(self.name, "empty-file", "the tar member is empty (0 bytes)", "rebuild the shard")
        if size is not None and not _Spool.reserve(size):
            raise VideoError(
                self.name, "too-large", f"tar member of {size} bytes exceeds the spool budget",
                f"raise {SPOOL_MAX_ENV} or free disk space in {_Spool.root()}",
            )
        self._spooled_bytes = size or 0
        dest = self._spool_path(src.member)

        def copy() -> None:
            with fs.open(path, "rb", block_size=_COPY_BLOCK) as f, open(dest, "wb") as out:
                if src.offset is not None and size is not None:
                    f.seek(src.offset)
                    remaining = size
                    while remaining:
                        block = f.read(min(_COPY_BLOCK, remaining))
                        if not block:
                            raise EOFError("the shard ends inside this member")
                        out.write(block)
                        remaining -= len(block)
                    return
                with tarfile.open(fileobj=f, mode="r|*") as archive:
                    for member in archive:
                        if member.name == src.member:
                            shutil.copyfileobj(archive.extractfile(member), out, _COPY_BLOCK)
                            return
                raise FileNotFoundError(f"no member {src.member!r} in the shard")

        try:
            self._remote_call(copy)
        except (EOFError, tarfile.TarError) as e:
            raise VideoError(self.name, "truncated", f"cannot read the member from the shard: {e}", "rebuild the shard") from e
        if dest.stat().st_size == 0:
            raise VideoError(self.name, "empty-file", "the tar member is empty (0 bytes)", "rebuild the shard")
        return str(dest)

    def _open_frames(self, fs, folder: str) -> None:
        entries = self._remote_call(lambda: fs.ls(folder, detail=False))
        paths = sorted(p for p in entries if suffix_of(p) in IMAGE_EXTENSIONS)
        if not paths:
            raise VideoError(self.name, "not-video", "a folder without video frames (no image files)", "point at a video or a folder of frames")
        backend = _FramesBackend(fs, paths, self.size, self.name)
        first = backend.image(0)
        self._backend = backend
        n = backend.n_frames
        self._info = VideoInfo(n, FOLDER_FPS, int(first.shape[1]), int(first.shape[0]), n / FOLDER_FPS)

    @staticmethod
    def _head(target) -> bytes:
        if isinstance(target, str):
            with open(target, "rb") as f:
                return f.read(512)
        target.seek(0)
        head = target.read(512)
        target.seek(0)
        return head

    def _probe(self, target, head: bytes) -> tuple[int, float, int, int]:
        """Open the container with PyAV: classify failures, read size, rate and declared length."""
        import av

        try:
            container = av.open(target)
        except Exception as e:
            raise _open_error(self.name, e, head) from e
        try:
            if not container.streams.video:
                what = "only audio" if container.streams.audio else "no video stream"
                raise VideoError(self.name, "no-video-stream", f"the file has {what}", "remove it from the input")
            stream = container.streams.video[0]
            if stream.codec_context is None:
                raise VideoError(
                    self.name, "unsupported-codec", "no decoder for its video codec", _REENCODE
                )
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            width, height = stream.codec_context.width, stream.codec_context.height
            seconds = None
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None and len(container.streams) == 1:
                seconds = container.duration / 1_000_000
            self._declared = round(seconds * fps) if seconds and fps > 0 else None
            return int(stream.frames or 0), fps, int(width), int(height)
        finally:
            container.close()

    def _count_packets(self, target) -> int:
        """Frame count of a stream that does not declare one (MKV, WebM): demux, no decode."""
        import av

        try:
            with av.open(target) as container:
                stream = container.streams.video[0]
                n = sum(1 for p in container.demux(stream) if p.size)
        except Exception as e:
            raise VideoError(self.name, "truncated", f"the stream cannot be read to its end ({e})", _REENCODE) from e
        finally:
            if not isinstance(target, str):
                target.seek(0)
        return n

    def _check_length(self, n_frames: int, fps: float) -> None:
        if n_frames <= 0:
            raise VideoError(self.name, "no-frames", "the video stream holds no frames", "download or copy it again")
        if not fps > 0:
            raise VideoError(self.name, "decode-error", "the video declares no frame rate", _REENCODE)
        declared = self._declared
        if declared and declared - n_frames > max(_TRUNCATION_SLACK, _TRUNCATION_FRACTION * declared):
            raise VideoError(
                self.name, "truncated",
                f"it declares {declared} frames ({declared / fps:.2f} s) but only {n_frames} can be read; "
                "the file is cut off or damaged",
                "download or copy it again",
            )

    # -- reading -------------------------------------------------------------------------

    def iter_frames(self, indices: np.ndarray, chunk: int = 64) -> Iterator[np.ndarray]:
        """uint8 RGB chunks (t, H, W, 3) at model size for sorted source frame indices.

        Indices may repeat (``--fps`` upsampling); each chunk holds at most ``chunk``
        frames, so memory is bounded by the chunk whatever the video's length. A failure
        part-way raises :class:`VideoError` after the earlier chunks were yielded.
        """
        self._open()
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return
        if np.any(np.diff(indices) < 0):
            raise ValueError("frame indices must be sorted")
        n = self._info.n_frames
        if indices[0] < 0 or indices[-1] >= n:
            raise ValueError(f"frame indices must lie in [0, {n}), got {indices[0]}..{indices[-1]}")
        chunk = max(1, int(chunk))
        for start in range(0, len(indices), chunk):
            part = indices[start : start + chunk]
            unique, inverse = np.unique(part, return_inverse=True)
            frames = self._read(unique)
            yield frames if len(unique) == len(part) else frames[inverse]

    def _read(self, unique: np.ndarray) -> np.ndarray:
        try:
            return self._backend.read(unique)
        except VideoError:
            raise
        except _EndOfStream as e:
            raise VideoError(
                self.name, "truncated",
                f"the stream ends at frame {e.at} of {self._info.n_frames} (frames 0..{e.at - 1} decoded)",
                "download or copy it again; the whole video is failed so no partial maps are written",
            ) from e
        except Exception as e:
            if self._backend.name == "decord" and self.decoder == "auto" and isinstance(self._local, str):
                return self._fallback_read(unique, e)
            raise self._mid_stream_error(unique, e) from e

    def _mid_stream_error(self, unique: np.ndarray, exc: BaseException) -> VideoError:
        if isinstance(exc, _DecodeFailure):
            where, exc = f"at frame {exc.at}", exc.cause
        else:
            where = f"between frames {unique[0]} and {unique[-1]}"
        lines = str(exc).strip().splitlines()
        detail = lines[-1][:200] if lines else type(exc).__name__
        return VideoError(
            self.name, "corrupt-frame",
            f"decoding failed {where} of {self._info.n_frames} with {self._backend.name} ({detail}); "
            "the whole video is failed so no partial maps are written",
            f"the data is damaged mid-stream; {_REENCODE}",
        )

    def _fallback_read(self, unique: np.ndarray, exc: BaseException) -> np.ndarray:
        """decord failed mid-stream: continue with PyAV from the same frames."""
        info = self._info
        self._backend.close()
        self._backend = _PyAVBackend(self._local, self.size, self.resize, self.threads, info.n_frames, info.fps)
        try:
            return self._backend.read(unique)
        except _EndOfStream as e:
            raise VideoError(
                self.name, "truncated", f"the stream ends at frame {e.at} of {info.n_frames}",
                "download or copy it again",
            ) from e
        except Exception as e:
            raise self._mid_stream_error(unique, e) from e


def open_video(
    source: VideoSource | str,
    size: tuple[int, int],
    *,
    decoder: str = "auto",
    resize: str = "decoder",
    storage_options: dict | None = None,
    threads: int = 0,
) -> VideoReader:
    """A lazy reader for one video at model ``size`` (H, W); see :class:`VideoReader`.

    ``decoder``: ``auto`` (decord, PyAV when decord cannot open or decode the file),
    ``decord`` or ``pyav``. ``resize``: ``decoder`` (scaled by the decoder, bilinear,
    fast) or ``exact`` (full-size decode then cv2.resize, as the released script).
    ``threads``: decoder threads per video (0: the decoder's choice).
    """
    if isinstance(source, str):
        stem = _basename(source.rstrip("/")).rsplit(".", 1)[0] or "video"
        source = VideoSource(stem, source)
    return VideoReader(source, size, decoder=decoder, resize=resize, storage_options=storage_options, threads=threads)
