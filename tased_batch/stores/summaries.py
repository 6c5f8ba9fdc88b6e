"""Saliency summaries that data tools can query: per-map statistics, per-video summaries, crop tracks.

:func:`frame_stats` turns a batch of uint8 maps (B x H x W, any device) into per-map
statistics in one batched pass, so it can run next to the model before maps are downsized.
Positions and sizes are fractions of the frame width/height (pixel centres: column ``j`` of
``W`` is at ``(j + 0.5) / W``), values fractions of the maximum grey level (255), so the
numbers apply to the source video at any resolution. The mass of a map is its grey levels
normalised to sum to 1; an all-zero map has no preferred place and is summarised as a
uniform map (its ``peak_value`` and ``mean_value`` stay 0).

:class:`VideoSummary` takes the statistics batch by batch (it never needs all maps at once)
and finishes with the per-video columns and, for a target aspect ratio, the crop track: the
window per map that keeps the most saliency mass, smoothed over time. The column lists
(:data:`FRAME_COLUMNS`, :data:`VIDEO_COLUMNS`, :data:`CROP_COLUMNS`) are the one description
of the schema that the writers, the reader and ``docs/summaries.md`` use.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from tased_batch.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

# Share of the mass the box columns hold at least (box90_*).
BOX_SHARE = 0.9
# Bins of the cumulative mass profile kept per map along the cropped axis (a crop window is
# placed with linear interpolation between bin edges: 128 bins is 1/128 of the frame, 516 bytes a map).
CROP_BINS = 128
# Crop windows whose mass differs by less than this share of the map count as equal.
CROP_TIE = 1e-3
# Gaussian smoothing of the crop centre over time (standard deviation, seconds).
CROP_SMOOTH_SECONDS = 0.5


@dataclass(frozen=True)
class Column:
    """One stored column: its stable name, Arrow type and meaning (the documented schema)."""

    name: str
    type: pa.DataType
    meaning: str


F32, F64, I32, I64 = pa.float32(), pa.float64(), pa.int32(), pa.int64()

FRAME_COLUMNS: tuple[Column, ...] = (
    Column("peak_x", F32, "x of the maximum (first in row-major order), fraction of the width"),
    Column("peak_y", F32, "y of the maximum, fraction of the height"),
    Column("peak_value", F32, "maximum grey level / 255"),
    Column("mean_value", F32, "mean grey level / 255"),
    Column("com_x", F32, "x of the centre of mass, fraction of the width"),
    Column("com_y", F32, "y of the centre of mass, fraction of the height"),
    Column("spread_x", F32, "standard deviation of the mass along x, fraction of the width"),
    Column("spread_y", F32, "standard deviation of the mass along y, fraction of the height"),
    Column(
        "entropy",
        F32,
        "Shannon entropy of the mass / log(pixels): 1 uniform, 0 one pixel (varies a little with resolution)",
    ),
    Column(
        "entropy_area",
        F32,
        "exp(entropy in nats) / pixels: the share of the frame an even spread of the same entropy covers",
    ),
    Column("area50", F32, "smallest share of the frame's pixels holding 50% of the mass (0.5 for a uniform map)"),
    Column("area90", F32, "smallest share of the frame's pixels holding 90% of the mass (0.9 for a uniform map)"),
    Column("box90_x0", F32, "left edge of the box holding at least 90% of the mass, fraction of the width"),
    Column("box90_y0", F32, "top edge of that box, fraction of the height"),
    Column("box90_x1", F32, "right edge of that box (exclusive), fraction of the width"),
    Column("box90_y1", F32, "bottom edge of that box (exclusive), fraction of the height"),
    Column("box90_mass", F32, "share of the mass inside that box (>= 0.9)"),
)

# Per-frame columns whose mean and standard deviation over a video go into the videos table.
SUMMARISED = ("peak_value", "com_x", "com_y", "spread_x", "spread_y", "entropy", "area50", "area90")

VIDEO_COLUMNS: tuple[Column, ...] = tuple(
    Column(
        f"{name}_{stat}", F64, f"{'mean' if stat == 'mean' else 'standard deviation'} of {name} over the video's maps"
    )
    for name in SUMMARISED
    for stat in ("mean", "std")
) + (
    Column("focus", F64, "1 - 2 * mean area50: 0 when attention is spread evenly, near 1 when it sits on one point"),
    Column(
        "focus_motion", F64, "mean distance the centre of mass moves, in frame diagonals per second (null below 2 maps)"
    ),
    Column("crop_aspect", pa.string(), "aspect ratio of the crop track (e.g. 9:16), null without --crop"),
    Column("crop_width", I32, "crop window width, pixels of the source video"),
    Column("crop_height", I32, "crop window height, pixels of the source video"),
    Column("crop_mass_mean", F64, "mean share of each map's mass inside the smoothed crop window"),
)

KEY_COLUMNS: tuple[Column, ...] = (
    Column("video_id", pa.string(), "the video's id (as in the videos table and your manifest)"),
    Column("frame_index", I64, "0-based source frame index of the map"),
    Column("timestamp", F64, "time of the frame in seconds"),
)

CROP_COLUMNS: tuple[Column, ...] = KEY_COLUMNS + (
    Column("crop_aspect", pa.string(), "target aspect ratio, width:height"),
    Column("crop_x", I32, "left edge of the window, pixels of the source video"),
    Column("crop_y", I32, "top edge of the window, pixels of the source video"),
    Column("crop_w", I32, "window width in pixels (even, constant over the video)"),
    Column("crop_h", I32, "window height in pixels (even, constant over the video)"),
    Column("crop_x_frac", F32, "left edge, fraction of the source width"),
    Column("crop_y_frac", F32, "top edge, fraction of the source height"),
    Column("crop_w_frac", F32, "width, fraction of the source width"),
    Column("crop_h_frac", F32, "height, fraction of the source height"),
    Column("crop_mass", F32, "share of the map's mass inside the smoothed window"),
)


def fields(columns: Sequence[Column]) -> list[pa.Field]:
    return [pa.field(c.name, c.type) for c in columns]


FRAME_STATS_SCHEMA = pa.schema(fields(KEY_COLUMNS + FRAME_COLUMNS))
CROP_SCHEMA = pa.schema(fields(CROP_COLUMNS))


# -- per-map statistics --------------------------------------------------------------------
def frame_stats(maps: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-map statistics of uint8 maps (B x H x W) on their device, one batched pass.

    Returns float32 tensors of B values, one per :data:`FRAME_COLUMNS` name, plus
    ``profile_x`` (B x W) and ``profile_y`` (B x H): the mass summed along the other axis,
    which :class:`VideoSummary` turns into the crop track (they are not stored).

    The box is the product of the shortest x interval and the shortest y interval that each
    hold (1 + 0.9) / 2 of their marginal mass: it holds at least 90% of the mass (union bound;
    ``box90_mass`` says how much). It is the smallest box for maps whose mass is separable in
    x and y, such as a single Gaussian, and larger than it when the mass sits in two places.
    The areas count whole pixels of the map's own size (exact on uint8 maps: equal grey levels
    are equal mass, so the count per level is all that matters).
    """
    import torch  # here, not at import: the store writers and reader load this module without torch

    if maps.dtype != torch.uint8 or maps.dim() != 3:
        raise ValueError(f"maps must be uint8 B x H x W, got {maps.dtype} {tuple(maps.shape)}")
    b, h, w = maps.shape
    device = maps.device
    n = h * w
    flat = maps.reshape(b, n)
    out: dict[str, torch.Tensor] = {}
    # Histogram of grey levels: peak and mean values, entropy, the areas holding a share of the mass.
    hist = _histogram(flat)
    levels = torch.arange(256, device=device, dtype=torch.float32)
    total = (hist * levels).sum(1, keepdim=True)
    out["peak_value"] = torch.where(hist > 0, levels, torch.zeros_like(levels)).amax(1) / 255.0
    out["mean_value"] = total[:, 0] / (255.0 * n)
    empty = total[:, 0] == 0
    if flat.device.type != "cpu" or bool(empty.any()):  # no host sync on accelerators: always apply
        flat = torch.where(empty[:, None], torch.ones_like(flat), flat)
        all_ones = torch.zeros_like(hist)
        all_ones[:, 1] = float(n)
        hist = torch.where(empty[:, None], all_ones, hist)
        total = (hist * levels).sum(1, keepdim=True)
    index = flat.argmax(1)
    out["peak_x"] = ((index % w).float() + 0.5) / w
    out["peak_y"] = (torch.div(index, w, rounding_mode="floor").float() + 0.5) / h
    pixel_mass = levels / total  # mass of one pixel of each level (B x 256)
    plogp = torch.where(hist > 0, hist * pixel_mass * torch.log(pixel_mass.clamp_min(1e-30)), torch.zeros_like(hist))
    nats = -(plogp.sum(1))
    out["entropy"] = nats / math.log(n) if n > 1 else torch.zeros(b, device=device)
    out["entropy_area"] = torch.exp(nats) / n
    for share in (0.5, 0.9):
        out[f"area{int(share * 100)}"] = _area_holding(hist, pixel_mass, share) / n

    # Marginals: centre of mass, spread, box, crop profiles.
    grey = flat.reshape(b, h, w).float()
    profile_x, profile_y = grey.sum(1) / total, grey.sum(2) / total
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
    out["com_x"] = (profile_x * xs).sum(1)
    out["com_y"] = (profile_y * ys).sum(1)
    out["spread_x"] = ((profile_x * (xs - out["com_x"][:, None]) ** 2).sum(1)).clamp_min(0).sqrt()
    out["spread_y"] = ((profile_y * (ys - out["com_y"][:, None]) ** 2).sum(1)).clamp_min(0).sqrt()
    share = (1.0 + BOX_SHARE) / 2.0
    x0, x1 = _shortest_interval(profile_x, share)
    y0, y1 = _shortest_interval(profile_y, share)
    cols, lines = torch.arange(w, device=device), torch.arange(h, device=device)
    inside_x = ((cols >= x0[:, None]) & (cols < x1[:, None])).float()
    inside_y = ((lines >= y0[:, None]) & (lines < y1[:, None])).float()
    out["box90_mass"] = (torch.einsum("bh,bhw,bw->b", inside_y, grey, inside_x) / total[:, 0]).clamp(0.0, 1.0)
    out["box90_x0"], out["box90_x1"] = x0.float() / w, x1.float() / w
    out["box90_y0"], out["box90_y1"] = y0.float() / h, y1.float() / h
    out["profile_x"], out["profile_y"] = profile_x, profile_y
    return out


def _histogram(flat: torch.Tensor) -> torch.Tensor:
    """Pixels per grey level (B x 256, float32): numpy's bincount on the CPU (10x torch's scatter there)."""
    import torch

    if flat.device.type == "cpu":
        if flat.shape[0] == 0:
            return torch.zeros(0, 256)
        counts = np.stack([np.bincount(row, minlength=256) for row in flat.numpy()])
        return torch.from_numpy(counts.astype(np.float32))
    hist = torch.zeros(flat.shape[0], 256, device=flat.device, dtype=torch.float32)
    return hist.scatter_add_(1, flat.long(), torch.ones(flat.shape, device=flat.device, dtype=torch.float32))


def _area_holding(hist: torch.Tensor, pixel_mass: torch.Tensor, share: float) -> torch.Tensor:
    """Fewest pixels whose mass reaches ``share``: take the brightest levels first."""
    import torch

    counts = hist.flip(1)
    each = pixel_mass.flip(1)
    cum_mass = (counts * each).cumsum(1)
    cum_count = counts.cumsum(1)
    level = torch.searchsorted(cum_mass, torch.full((hist.shape[0], 1), share - 1e-6, device=hist.device))
    level = level.clamp(max=255)
    before_mass = torch.gather(cum_mass - counts * each, 1, level).squeeze(1)
    before_count = torch.gather(cum_count - counts, 1, level).squeeze(1)
    unit = torch.gather(each, 1, level).squeeze(1).clamp_min(1e-30)
    needed = torch.ceil((share - before_mass) / unit - 1e-4).clamp_min(0)
    return before_count + torch.minimum(needed, torch.gather(counts, 1, level).squeeze(1))


def _shortest_interval(profile: torch.Tensor, share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the shortest run of cells [start, end) whose mass reaches ``share`` of the row."""
    import torch

    b, length = profile.shape
    if profile.device.type != "mps":  # float64 where the device has it: equal intervals must compare equal
        profile = profile.double()
    cum = torch.nn.functional.pad(profile.cumsum(1), (1, 0))  # B x (L + 1)
    cum = cum / cum[:, -1:].clamp_min(1e-30)
    targets = (cum[:, :-1] + share - 1e-6).contiguous()
    ends = torch.searchsorted(cum.contiguous(), targets)  # first end whose mass reaches the share
    starts = torch.arange(length, device=profile.device).expand(b, length)
    widths = torch.where(ends <= length, ends - starts, torch.full_like(ends, length + 1)).to(cum.dtype)
    held = torch.gather(cum, 1, ends.clamp(max=length)) - cum[:, :-1]
    # Among the shortest, the one holding the most; among equals, the one nearest the middle
    # (a flat profile gives a centred interval).
    off_centre = ((starts + widths / 2) - length / 2).abs() / (length + 1)
    best = (widths - 0.5 * held + 1e-6 * off_centre).argmin(1)
    start = best
    end = torch.gather(ends, 1, best[:, None]).squeeze(1).clamp(max=length)
    return start, end


# -- crop windows ------------------------------------------------------------------------------
_ASPECT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[:/x]\s*(\d+(?:\.\d+)?)\s*$")


def parse_aspect(text: str) -> float:
    """``"9:16"`` (or ``9/16``, ``0.5625:1``) -> width / height."""
    match = _ASPECT.match(str(text))
    if not match or float(match.group(1)) <= 0 or float(match.group(2)) <= 0:
        raise ConfigError(f"crop aspect ratio {text!r} is not WIDTH:HEIGHT", "use e.g. 9:16 (portrait) or 1:1")
    return float(match.group(1)) / float(match.group(2))


@dataclass(frozen=True)
class CropGeometry:
    """The crop window's size for one source frame size: it spans the full height or width."""

    aspect: str
    axis: str  # "x": the window slides horizontally (full height); "y": vertically (full width)
    width: int  # pixels of the source, even
    height: int
    fraction: float  # window length along ``axis``, fraction of the frame


def crop_geometry(aspect: str, width: int, height: int) -> CropGeometry:
    """The largest window of ``aspect`` inside a ``width`` x ``height`` frame, in even pixels."""
    ratio = parse_aspect(aspect)
    if width < 2 or height < 2:
        raise ConfigError(f"cannot crop a {width}x{height} frame", "the source size is unknown or too small")
    if width / height >= ratio:
        w = max(2, int(height * ratio) // 2 * 2)
        h = height // 2 * 2
        return CropGeometry(aspect, "x", w, h, w / width)
    w = width // 2 * 2
    h = max(2, int(width / ratio) // 2 * 2)
    return CropGeometry(aspect, "y", w, h, h / height)


def cumulative_profile(profile: np.ndarray, bins: int = CROP_BINS) -> np.ndarray:
    """Mass profiles (T x L, rows summing to 1) -> cumulative mass at ``bins + 1`` equally spaced edges."""
    profile = np.asarray(profile, np.float64)
    cum = np.concatenate([np.zeros((profile.shape[0], 1)), np.cumsum(profile, axis=1)], axis=1)
    cum /= np.maximum(cum[:, -1:], 1e-30)
    edges = np.linspace(0.0, profile.shape[1], bins + 1)
    grid = np.arange(profile.shape[1] + 1)
    return np.stack([np.interp(edges, grid, row) for row in cum]) if len(cum) else np.zeros((0, bins + 1))


def _window_mass(cum: np.ndarray, starts: np.ndarray, length: float) -> np.ndarray:
    """Mass in [start, start + length) (fractions of the frame) of each row's cumulative profile."""
    bins = cum.shape[1] - 1

    def at(x: np.ndarray) -> np.ndarray:
        pos = np.clip(x, 0.0, 1.0) * bins
        low = np.minimum(np.floor(pos).astype(np.int64), bins - 1)
        frac = pos - low
        rows = np.arange(cum.shape[0])[:, None] if x.ndim == 2 else np.arange(cum.shape[0])
        return cum[rows, low] * (1 - frac) + cum[rows, low + 1] * frac

    return at(starts + length) - at(starts)


def best_window_starts(cum: np.ndarray, fraction: float) -> np.ndarray:
    """Per row, the start (fraction) of the window of length ``fraction`` that holds the most mass.

    Windows within :data:`CROP_TIE` of the most mass count as equal (a small blob fits in many);
    of those, the one whose centre is nearest the centre of mass wins, so a lone blob is centred
    and a flat profile gives the middle of the frame.
    """
    if cum.shape[0] == 0 or fraction >= 1.0:
        return np.zeros(cum.shape[0])
    bins = cum.shape[1] - 1
    candidates = np.linspace(0.0, 1.0 - fraction, 4 * bins + 1)
    starts = np.broadcast_to(candidates, (cum.shape[0], candidates.size))
    mass = _window_mass(cum, starts, fraction)
    centre_of_mass = 1.0 - (cum[:, :-1] + cum[:, 1:]).sum(1) / (2 * bins)  # integral of x dC over [0, 1]
    distance = np.abs(candidates[None, :] + fraction / 2 - centre_of_mass[:, None])
    near_best = mass >= mass.max(1, keepdims=True) - CROP_TIE
    return candidates[np.argmin(np.where(near_best, distance, np.inf), axis=1)]


def smooth_starts(
    starts: np.ndarray, timestamps: np.ndarray, fraction: float, seconds: float = CROP_SMOOTH_SECONDS
) -> np.ndarray:
    """Gaussian smoothing of the window position over time (sigma ``seconds``), kept inside the frame."""
    from scipy.ndimage import gaussian_filter1d

    starts = np.asarray(starts, np.float64)
    if starts.size > 1 and seconds > 0:
        steps = np.diff(np.asarray(timestamps, np.float64))
        step = float(np.median(steps)) if steps.size else 0.0
        if step > 0:
            starts = gaussian_filter1d(starts, sigma=seconds / step, mode="nearest")
    return np.clip(starts, 0.0, max(0.0, 1.0 - fraction))


def crop_track(
    video_id: str,
    frame_indices: np.ndarray,
    timestamps: np.ndarray,
    cum: np.ndarray,
    geometry: CropGeometry,
    width: int,
    height: int,
    smooth_seconds: float = CROP_SMOOTH_SECONDS,
) -> pa.Table:
    """The smoothed crop track (:data:`CROP_SCHEMA` rows) from cumulative profiles along ``geometry.axis``."""
    starts = smooth_starts(best_window_starts(cum, geometry.fraction), timestamps, geometry.fraction, smooth_seconds)
    mass = _window_mass(cum, starts, geometry.fraction) if len(starts) else np.zeros(0)
    n = len(starts)
    if geometry.axis == "x":
        x = np.clip(np.round(starts * width), 0, width - geometry.width).astype(np.int32)
        y = np.full(n, (height - geometry.height) // 2, np.int32)
    else:
        x = np.full(n, (width - geometry.width) // 2, np.int32)
        y = np.clip(np.round(starts * height), 0, height - geometry.height).astype(np.int32)
    columns = {
        "video_id": pa.array([video_id] * n, pa.string()),
        "frame_index": pa.array(np.asarray(frame_indices, np.int64)),
        "timestamp": pa.array(np.asarray(timestamps, np.float64)),
        "crop_aspect": pa.array([geometry.aspect] * n, pa.string()),
        "crop_x": pa.array(x),
        "crop_y": pa.array(y),
        "crop_w": pa.array(np.full(n, geometry.width, np.int32)),
        "crop_h": pa.array(np.full(n, geometry.height, np.int32)),
        "crop_x_frac": pa.array((x / width).astype(np.float32)),
        "crop_y_frac": pa.array((y / height).astype(np.float32)),
        "crop_w_frac": pa.array(np.full(n, geometry.width / width, np.float32)),
        "crop_h_frac": pa.array(np.full(n, geometry.height / height, np.float32)),
        "crop_mass": pa.array(np.clip(mass, 0.0, 1.0).astype(np.float32)),
    }
    return pa.Table.from_pydict(columns, schema=CROP_SCHEMA)


def crop_track_from_maps(
    video_id: str,
    maps: np.ndarray,
    frame_indices: np.ndarray,
    timestamps: np.ndarray,
    aspect: str,
    width: int,
    height: int,
    smooth_seconds: float = CROP_SMOOTH_SECONDS,
) -> pa.Table:
    """A crop track at read time from maps of any stored size (uint8 T x h x w)."""
    geometry = crop_geometry(aspect, width, height)
    profile = frame_stats_numpy(maps, batch=256)["profile_" + geometry.axis]
    cum = cumulative_profile(profile) if len(profile) else np.zeros((0, CROP_BINS + 1))
    return crop_track(video_id, frame_indices, timestamps, cum, geometry, width, height, smooth_seconds)


def sendcmd_script(track: pa.Table) -> str:
    """ffmpeg ``sendcmd`` commands that move a ``crop`` filter along ``track`` (one video's rows).

    Use with :func:`ffmpeg_filter`: ``ffmpeg -i in.mp4 -vf "<filter>" out.mp4``.
    """
    rows = zip(track["timestamp"].to_pylist(), track["crop_x"].to_pylist(), track["crop_y"].to_pylist())
    return "".join(f"{t:.3f} crop x {x}, crop y {y};\n" for t, x, y in rows)


def ffmpeg_filter(track: pa.Table, command_file: str) -> str:
    """The ``-vf`` value that crops to ``track``'s window, its positions read from ``command_file``.

    ``exact=1``: without it the crop filter rounds an odd ``x`` down to the chroma grid of
    subsampled video (yuv420p, most files), landing one pixel left on half the positions.
    """
    if track.num_rows == 0:
        raise ConfigError("the crop track is empty", "the video failed or has no maps")
    first = track.slice(0, 1).to_pylist()[0]
    return f"sendcmd=f={command_file},crop=w={first['crop_w']}:h={first['crop_h']}:x={first['crop_x']}:y={first['crop_y']}:exact=1"


# -- per-video accumulation --------------------------------------------------------------------
def stats_to_host(stats: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """:func:`frame_stats` output as numpy on the host, in three device-to-host copies (not one per column)."""
    import torch

    names = [c.name for c in FRAME_COLUMNS]
    columns = torch.stack([stats[name].float() for name in names]).cpu().numpy()
    out = dict(zip(names, columns))
    for key in ("profile_x", "profile_y"):
        if key in stats:
            out[key] = stats[key].float().cpu().numpy()
    return out


def frame_stats_numpy(maps: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
    """:func:`frame_stats` of host maps (uint8 T x H x W) on the CPU, ``batch`` maps at a time, as numpy.

    For writers given maps without the engine's statistics (a whole :class:`~tased_batch.core.records.VideoResult`,
    or an engine built without the ``map_stats`` hook).
    """
    import torch

    maps = np.asarray(maps)
    parts = [
        stats_to_host(frame_stats(torch.from_numpy(np.ascontiguousarray(maps[start : start + batch], np.uint8))))
        for start in range(0, len(maps), batch)
    ]
    if not parts:
        empty = {c.name: np.zeros(0, np.float32) for c in FRAME_COLUMNS}
        h, w = maps.shape[1:3] if maps.ndim == 3 else (0, 0)
        return {**empty, "profile_x": np.zeros((0, w), np.float32), "profile_y": np.zeros((0, h), np.float32)}
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def has_frame_stats(extras: Mapping[str, Any]) -> bool:
    """Whether an engine batch's ``extras`` hold every :func:`frame_stats` output (the crop profiles included)."""
    return all(c.name in extras for c in FRAME_COLUMNS) and "profile_x" in extras and "profile_y" in extras


def _numpy(value: Any) -> np.ndarray:
    torch = sys.modules.get("torch")  # a tensor can only come from a loaded torch
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float32).numpy()
    return np.asarray(value, np.float32)


class VideoSummary:
    """Per-video accumulator: feed it each batch's :func:`frame_stats`, then :meth:`finish`.

    It keeps running sums for the per-video columns and, with a crop aspect, one cumulative
    mass profile of :data:`CROP_BINS` + 1 floats per map along the cropped axis (the smoothing
    needs the whole video), never the maps themselves.
    """

    def __init__(self, video_id: str, *, width: int, height: int, crop: str | None = None) -> None:
        self.video_id = video_id
        self.width, self.height = int(width), int(height)
        self.geometry = crop_geometry(crop, self.width, self.height) if crop else None
        self._n = 0
        self._sums = dict.fromkeys(SUMMARISED, 0.0)
        self._squares = dict.fromkeys(SUMMARISED, 0.0)
        self._last: tuple[float, float, float] | None = None  # com_x, com_y, timestamp
        self._first_time: float | None = None
        self._distance = 0.0
        self._frames: list[np.ndarray] = []
        self._times: list[np.ndarray] = []
        self._cums: list[np.ndarray] = []

    def add(self, frame_indices: np.ndarray, timestamps: np.ndarray, stats: Mapping[str, Any]) -> pa.Table:
        """Take one batch (maps in time order); return its per-map rows (:data:`FRAME_STATS_SCHEMA`)."""
        frames = np.asarray(frame_indices, np.int64)
        times = np.asarray(timestamps, np.float64)
        values = {c.name: _numpy(stats[c.name]) for c in FRAME_COLUMNS}
        n = len(frames)
        if any(v.shape != (n,) for v in values.values()) or times.shape != (n,):
            raise ValueError(f"video {self.video_id!r}: {n} frame indices but statistics of another length")
        if n == 0:
            return FRAME_STATS_SCHEMA.empty_table()
        for name in SUMMARISED:
            column = values[name].astype(np.float64)
            self._sums[name] += float(column.sum())
            self._squares[name] += float((column * column).sum())
        self._n += n
        diagonal = math.hypot(self.width, self.height) or math.sqrt(2.0)
        cx = np.concatenate([[self._last[0]], values["com_x"]]) if self._last else values["com_x"].astype(np.float64)
        cy = np.concatenate([[self._last[1]], values["com_y"]]) if self._last else values["com_y"].astype(np.float64)
        scale_x, scale_y = (self.width, self.height) if self.width > 0 and self.height > 0 else (1.0, 1.0)
        self._distance += float(np.hypot(np.diff(cx) * scale_x, np.diff(cy) * scale_y).sum()) / diagonal
        if self._first_time is None:
            self._first_time = float(times[0])
        self._last = (float(values["com_x"][-1]), float(values["com_y"][-1]), float(times[-1]))
        if self.geometry is not None:
            self._frames.append(frames)
            self._times.append(times)
            self._cums.append(cumulative_profile(_numpy(stats["profile_" + self.geometry.axis])))
        arrays = [pa.array([self.video_id] * n, pa.string()), pa.array(frames), pa.array(times)]
        arrays += [pa.array(values[c.name], pa.float32()) for c in FRAME_COLUMNS]
        return pa.Table.from_arrays(arrays, schema=FRAME_STATS_SCHEMA)

    def finish(self) -> tuple[dict[str, Any], pa.Table | None]:
        """The video's :data:`VIDEO_COLUMNS` values (None where undefined) and its crop track."""
        row: dict[str, Any] = dict.fromkeys(c.name for c in VIDEO_COLUMNS)
        if self._n:
            for name in SUMMARISED:
                mean = self._sums[name] / self._n
                row[f"{name}_mean"] = mean
                row[f"{name}_std"] = math.sqrt(max(0.0, self._squares[name] / self._n - mean * mean))
            row["focus"] = min(1.0, max(0.0, 1.0 - 2.0 * row["area50_mean"]))
            span = (self._last[2] - self._first_time) if self._last and self._first_time is not None else 0.0
            row["focus_motion"] = self._distance / span if self._n > 1 and span > 0 else None
        track = None
        if self.geometry is not None:
            row["crop_aspect"] = self.geometry.aspect
            row["crop_width"], row["crop_height"] = self.geometry.width, self.geometry.height
            frames = np.concatenate(self._frames) if self._frames else np.zeros(0, np.int64)
            times = np.concatenate(self._times) if self._times else np.zeros(0)
            cum = np.concatenate(self._cums) if self._cums else np.zeros((0, CROP_BINS + 1))
            track = crop_track(self.video_id, frames, times, cum, self.geometry, self.width, self.height)
            if track.num_rows:
                row["crop_mass_mean"] = float(np.mean(track["crop_mass"].to_numpy()))
        return row, track


def summarise_maps(
    video_id: str,
    maps: np.ndarray,
    frame_indices: np.ndarray,
    timestamps: np.ndarray,
    *,
    width: int,
    height: int,
    crop: str | None = None,
    batch: int = 64,
) -> tuple[pa.Table, dict[str, Any], pa.Table | None]:
    """A whole video's maps at once (benchmarks, tests): per-map rows, video columns, crop track.

    Runs :func:`frame_stats` on the CPU in batches of ``batch`` maps, as the engine would per batch.
    """
    import torch

    summary = VideoSummary(video_id, width=width, height=height, crop=crop)
    tables = [FRAME_STATS_SCHEMA.empty_table()]
    for start in range(0, len(maps), batch):
        part = torch.from_numpy(np.ascontiguousarray(maps[start : start + batch]))
        tables.append(
            summary.add(frame_indices[start : start + batch], timestamps[start : start + batch], frame_stats(part))
        )
    row, track = summary.finish()
    return pa.concat_tables(tables), row, track


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns in order: missing ones (older stores) filled with nulls."""
    if table.schema.equals(schema, check_metadata=False):  # today's tables: nothing to do (the common case)
        return table.replace_schema_metadata(schema.metadata)
    arrays = [
        table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def schema_markdown(columns: Sequence[Column]) -> str:
    """The column table of ``docs/summaries.md`` (a test keeps the docs in step with the code)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.type} | {c.meaning} |" for c in columns]
    return "\n".join(lines)
