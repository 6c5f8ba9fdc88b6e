"""Probing a container with PyAV, and telling apart why a video cannot be read.

The reason codes (``truncated``, ``not-video``, ``unsupported-codec``...) are what status
reports group failures by (see errors.py), so they are decided here, in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO

from tased_batch.core.errors import VideoError

# Shortfall (frames) between what a file declares and what it holds before it is "truncated".
_TRUNCATION_SLACK = 2
_TRUNCATION_FRACTION = 0.02

# Frame rates a real video declares: one frame a 100 s (time-lapse) to 10,000 fps (high
# speed). Outside them the rate is damage, and resampling by it plans absurd map counts.
MIN_FPS = 0.01
MAX_FPS = 10_000.0
# How much longer than the container's duration the frames may last (VFR, rounding).
_DURATION_FACTOR = 2.0
_DURATION_SLACK_S = 10.0

_REENCODE = "re-encode it (e.g. ffmpeg -i in -c:v libx264 -crf 18 out.mp4) or fetch a fresh copy"

Target = str | IO[bytes]  # a local path, or a seekable file object streamed from storage


@dataclass(frozen=True)
class Probe:
    """What the container says about its first video stream (before any decoding)."""

    n_frames: int  # frames declared in the stream header; 0 when it does not say (MKV, WebM)
    fps: float
    width: int
    height: int
    codec: str
    declared: int | None  # frames implied by the declared duration, to tell truncated files
    seconds: float | None = None  # the duration the container or stream declares


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


def read_head(target: Target) -> bytes:
    """The first 512 bytes, which name the container even when it cannot be opened."""
    if isinstance(target, str):
        with open(target, "rb") as f:
            return f.read(512)
    target.seek(0)
    head = target.read(512)
    target.seek(0)
    return head


def probe(name: str, target: Target) -> Probe:
    """Open the container with PyAV: classify failures, read size, rate and declared length."""
    import av

    head = read_head(target)
    try:
        container = av.open(target, mode="r")
    except Exception as e:
        raise _open_error(name, e, head) from e
    try:
        if not container.streams.video:
            what = "only audio" if container.streams.audio else "no video stream"
            raise VideoError(name, "no-video-stream", f"the file has {what}", "remove it from the input")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise VideoError(name, "unsupported-codec", "no decoder for its video codec", _REENCODE)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        width, height = stream.codec_context.width, stream.codec_context.height
        seconds = None
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None and len(container.streams) == 1:
            seconds = container.duration / 1_000_000
        declared = round(seconds * fps) if seconds and fps > 0 else None
        codec = stream.codec_context.name or ""
        return Probe(int(stream.frames or 0), fps, int(width), int(height), codec, declared, seconds)
    finally:
        container.close()


def count_packets(name: str, target: Target) -> int:
    """Frame count of a stream that does not declare one (MKV, WebM): demux, no decode."""
    import av

    try:
        with av.open(target) as container:
            stream = container.streams.video[0]
            n = sum(1 for p in container.demux(stream) if p.size)
    except Exception as e:
        raise VideoError(name, "truncated", f"the stream cannot be read to its end ({e})", _REENCODE) from e
    finally:
        if not isinstance(target, str):
            target.seek(0)
    return n


def target_bytes(target: Target) -> int | None:
    """Size in bytes of a local file or a seekable stream (None when it cannot be told)."""
    try:
        if isinstance(target, str):
            return os.path.getsize(target)
        position = target.tell()
        size = target.seek(0, os.SEEK_END)
        target.seek(position)
        return int(size)
    except (OSError, ValueError):
        return None


def check_claims(name: str, n_frames: int, fps: float, seconds: float | None, size: int | None) -> None:
    """Refuse frame counts and rates the file cannot hold: they size every plan and array.

    Every frame takes at least one byte of the file, the rate lies within
    [:data:`MIN_FPS`, :data:`MAX_FPS`], and the frames last no far longer than the
    container's declared duration. An AVI header claiming 200M frames in 7 KB, or a rate
    of one frame in 9 hours, is refused here instead of planning millions of maps.
    """
    if size is not None and n_frames > size:
        raise VideoError(
            name,
            "bad-header",
            f"it declares {n_frames} frames but the file holds only {size} bytes; the header is damaged",
            _REENCODE,
        )
    if not MIN_FPS <= fps <= MAX_FPS:
        raise VideoError(
            name,
            "bad-header",
            f"it declares {fps:g} frames per second (outside {MIN_FPS:g}..{MAX_FPS:g}); the header is damaged",
            _REENCODE,
        )
    lasts = n_frames / fps
    if seconds is not None and seconds > 0 and lasts > _DURATION_FACTOR * seconds + _DURATION_SLACK_S:
        raise VideoError(
            name,
            "bad-header",
            f"{n_frames} frames at {fps:g} fps last {lasts:.1f} s but the container says {seconds:.1f} s; "
            "the header is damaged",
            _REENCODE,
        )


def check_length(name: str, n_frames: int, fps: float, declared: int | None) -> None:
    """Fail videos without frames or rate, and those holding clearly fewer frames than declared."""
    if n_frames <= 0:
        raise VideoError(name, "no-frames", "the video stream holds no frames", "download or copy it again")
    if not fps > 0:
        raise VideoError(name, "decode-error", "the video declares no frame rate", _REENCODE)
    if declared and declared - n_frames > max(_TRUNCATION_SLACK, _TRUNCATION_FRACTION * declared):
        raise VideoError(
            name,
            "truncated",
            f"it declares {declared} frames ({declared / fps:.2f} s) but only {n_frames} can be read; "
            "the file is cut off or damaged",
            "download or copy it again",
        )
