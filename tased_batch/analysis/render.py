"""Overlay videos: a source video with its saliency maps as a colour heat map.

The maps come from a results store or a PNG tree (see :func:`tased_batch.analysis.evaluate.open_predictions`),
are upsampled to the source frame size (bilinear), coloured with a jet-like look-up table
and alpha-blended over the decoded frames; ``side_by_side`` puts the untouched frame and
the coloured map next to each other instead. Frames without a map of their own (maps
sampled with ``--every``) show the nearest earlier map; frames before the first map show
the first map. With ``crop`` (an aspect ratio such as ``9:16``) the crop track's window is
drawn: a white frame, everything outside it dimmed. The output is an MP4 (H.264, yuv420p, so odd sizes are padded by one edge
pixel) or a GIF (Pillow; meant for short clips, all frames are kept in memory).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from tased_batch.core.errors import ConfigError, StoreError, VideoError

FORMATS = (".mp4", ".gif")


def jet_lut() -> np.ndarray:
    """256 x 3 uint8 colours from dark blue through cyan, yellow to dark red (MATLAB-jet-like).

    Each channel is a clipped tent, ``1.5 - |4x - c|`` with c = 3 (red), 2 (green),
    1 (blue): low saliency is blue, high saliency red.
    """
    x = np.linspace(0.0, 1.0, 256)
    channels = [np.clip(1.5 - np.abs(4.0 * x - c), 0.0, 1.0) for c in (3.0, 2.0, 1.0)]
    return np.round(np.stack(channels, axis=1) * 255.0).astype(np.uint8)


_JET = jet_lut()


def colorize(maps: np.ndarray) -> np.ndarray:
    """uint8 maps (... x H x W) to RGB (... x H x W x 3) through :func:`jet_lut`."""
    return _JET[np.asarray(maps, dtype=np.uint8)]


def blend(frame: np.ndarray, saliency: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * frame + alpha * colour(saliency)``, frame RGB and map of the same H x W."""
    mixed = (1.0 - alpha) * frame.astype(np.float32) + alpha * colorize(saliency).astype(np.float32)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def map_for_frames(map_frames: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """For each 0-based source frame index, the position of the map to show: the nearest earlier.

    ``map_frames`` are the sorted 0-based frame indices that have a map; frames before the
    first of them get the first map.
    """
    positions = np.searchsorted(np.asarray(map_frames), np.asarray(frames), side="right") - 1
    return np.clip(positions, 0, None)


def _resize(saliency: np.ndarray, height: int, width: int) -> np.ndarray:
    if saliency.shape == (height, width):
        return saliency
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(saliency)).resize((width, height), Image.Resampling.BILINEAR)
    )


def draw_crop(picture: np.ndarray, x: int, y: int, w: int, h: int, border: int = 2) -> np.ndarray:
    """``picture`` (H x W x 3) with everything outside the window (x, y, w, h) at half brightness and a white frame."""
    out = picture.copy()
    inside = np.zeros(picture.shape[:2], bool)
    inside[y : y + h, x : x + w] = True
    out[~inside] //= 2
    out[y : y + h, x : x + min(border, w)] = 255
    out[y : y + h, max(x, x + w - border) : x + w] = 255
    out[y : y + min(border, h), x : x + w] = 255
    out[max(y, y + h - border) : y + h, x : x + w] = 255
    return out


def crop_windows(
    results: str,
    video_id: str,
    aspect: str,
    maps: np.ndarray,
    map_frames: np.ndarray,
    fps: float,
    width: int,
    height: int,
) -> np.ndarray:
    """Window (x, y, w, h) in this source's pixels for each map: the stored crop track when the
    results store has one for ``aspect``, otherwise one computed from the maps at hand."""
    from tased_batch.stores.reader import open_results
    from tased_batch.stores.summaries import crop_geometry, crop_track_from_maps

    geometry = crop_geometry(aspect, width, height)
    track = None
    try:
        stored = open_results(results).crop_track(video_id, aspect)
        if stored.num_rows and stored["frame_index"].to_pylist() == [int(f) for f in map_frames]:
            track = stored
    except (StoreError, OSError, ValueError):
        pass  # a PNG tree, or a store that cannot give this video's track: compute it below
    if track is None:
        track = crop_track_from_maps(video_id, maps, map_frames, map_frames / fps, aspect, width, height)
    # Through fractions, so a track made for another rendition of the video still fits this one.
    if geometry.axis == "x":
        centre = track["crop_x_frac"].to_numpy() + track["crop_w_frac"].to_numpy() / 2
        x = np.clip(np.round(centre * width - geometry.width / 2), 0, width - geometry.width)
        y = np.full(len(x), (height - geometry.height) // 2)
    else:
        centre = track["crop_y_frac"].to_numpy() + track["crop_h_frac"].to_numpy() / 2
        y = np.clip(np.round(centre * height - geometry.height / 2), 0, height - geometry.height)
        x = np.full(len(y), (width - geometry.width) // 2)
    return np.stack([x, y, np.full(len(x), geometry.width), np.full(len(x), geometry.height)], axis=1).astype(np.int64)


@dataclass
class RenderInfo:
    """What was written: the file, its frame count and frame size (W x H)."""

    path: Path
    frames: int
    width: int
    height: int
    fps: float


def _open_source(source: str):
    import av

    try:
        if "://" in source and not source.startswith("file://"):
            import fsspec

            with fsspec.open(source, "rb") as f:
                return av.open(io.BytesIO(f.read()))
        return av.open(source.removeprefix("file://"))
    except FileNotFoundError as exc:
        raise VideoError(source, "missing", "source video not found", "give the video the maps were made from") from exc
    except av.error.FFmpegError as exc:
        raise VideoError(source, "not-video", f"cannot open as a video: {exc}") from exc


def _frames(container, source: str) -> Iterator[np.ndarray]:
    import av

    if not container.streams.video:
        raise VideoError(source, "no-video-stream", "the file has no video stream")
    try:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as exc:
        raise VideoError(source, "decode-error", f"decoding stopped: {exc}") from exc


class _Mp4Writer:
    def __init__(self, path: Path, fps: Fraction, width: int, height: int) -> None:
        import av

        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream("libx264", rate=fps)
        self.stream.width, self.stream.height = width + width % 2, height + height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": "20", "preset": "veryfast"}

    def add(self, rgb: np.ndarray) -> None:
        import av

        pad = ((0, rgb.shape[0] % 2), (0, rgb.shape[1] % 2), (0, 0))
        frame = av.VideoFrame.from_ndarray(np.pad(rgb, pad, mode="edge"), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


class _GifWriter:
    def __init__(self, path: Path, fps: Fraction) -> None:
        self.path = path
        self.duration_ms = max(int(round(1000 / float(fps))), 10)  # GIF delays are in 10 ms steps
        self.images: list[Image.Image] = []

    def add(self, rgb: np.ndarray) -> None:
        self.images.append(Image.fromarray(rgb))

    def close(self) -> None:
        first, *rest = self.images
        first.save(self.path, save_all=True, append_images=rest, duration=self.duration_ms, loop=0, optimize=False)


def render(
    results: str,
    video_id: str,
    source: str,
    out: str | Path,
    *,
    side_by_side: bool = False,
    alpha: float = 0.5,
    crop: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RenderInfo:
    """Write ``out`` (.mp4 or .gif): ``source``'s frames with ``video_id``'s maps from ``results``.

    ``crop``: an aspect ratio (``9:16``) whose crop window is drawn over the video.

    ``progress(done, total)`` is called per written frame (total is the source's frame
    count as its container reports it, 0 if unknown).
    """
    from tased_batch.analysis.evaluate import open_predictions

    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"cannot write {out.name}: unknown output type", "name the output *.mp4 or *.gif")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha {alpha} is outside [0, 1]", "0 shows only the video, 1 only the heat map")
    if crop is not None:
        from tased_batch.stores.summaries import parse_aspect

        parse_aspect(crop)
    predictions = open_predictions(results)
    status = predictions.status(video_id)
    if status != "ok":
        known = predictions.video_ids()
        raise StoreError(
            f"{results}: video {video_id!r} has no maps ({status})",
            f"it holds {len(known)} videos, e.g. {', '.join(known[:5])}" if known else "the results are empty",
        )
    numbers = predictions.numbers(video_id)
    maps = predictions.read(video_id, [int(n) for n in numbers])
    map_frames = numbers - 1  # 1-based frame numbers -> 0-based frame indices

    container = _open_source(source)
    with container:
        stream = container.streams.video[0] if container.streams.video else None
        fps = Fraction(stream.average_rate or stream.guessed_rate or 25) if stream is not None else Fraction(25)
        total = int(stream.frames or 0) if stream is not None else 0
        out.parent.mkdir(parents=True, exist_ok=True)
        writer: _Mp4Writer | _GifWriter | None = None
        count, size = 0, (0, 0)
        shown, upsampled = -1, np.zeros((0, 0), np.uint8)
        windows: np.ndarray | None = None
        for rgb in _frames(container, source):
            h, w = rgb.shape[:2]
            if writer is None:
                size = (w * 2 if side_by_side else w, h)
                writer = _Mp4Writer(out, fps, *size) if out.suffix.lower() == ".mp4" else _GifWriter(out, fps)
            position = int(map_for_frames(map_frames, np.array([count]))[0])
            if position != shown:  # consecutive frames often share a map: upsample once
                upsampled, shown = _resize(maps[position], h, w), position
            if side_by_side:
                picture = np.concatenate([rgb, colorize(upsampled)], axis=1)
            else:
                picture = blend(rgb, upsampled, alpha)
            if crop is not None:
                if windows is None:
                    windows = crop_windows(results, video_id, crop, maps, map_frames, float(fps), w, h)
                picture[:, :w] = draw_crop(picture[:, :w], *(int(v) for v in windows[position]))
            writer.add(picture)
            count += 1
            if progress:
                progress(count, total)
        if writer is None:
            raise VideoError(source, "empty-file", "the video has no frames to render")
        writer.close()
    return RenderInfo(out, count, size[0], size[1], float(fps))
