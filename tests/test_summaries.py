"""Saliency summaries against hand-made maps whose answers are known in closed form.

A Gaussian of standard deviation s pixels centred at (cx, cy): centre of mass (cx, cy), spread s,
entropy log(2 pi e s^2) nats, 50% of its mass within radius s*sqrt(2 ln 2) (90%: s*sqrt(2 ln 10)),
95% of each marginal within +-1.96 s. A uniform map: centre 0.5, spread 1/sqrt(12), entropy 1,
areas 0.5 and 0.9. Tolerances cover uint8 rounding of the Gaussian tails.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from tased_batch.core.errors import ConfigError
from tased_batch.stores.summaries import (
    CROP_COLUMNS,
    FRAME_COLUMNS,
    VIDEO_COLUMNS,
    VideoSummary,
    crop_geometry,
    crop_track_from_maps,
    frame_stats,
    parse_aspect,
    schema_markdown,
    stats_to_host,
)

H, W = 96, 160


def gaussian(cx: float, cy: float, s: float, h: int = H, w: int = W, peak: float = 255.0) -> np.ndarray:
    """A Gaussian blob at pixel coordinates (cx, cy) (pixel centres at i + 0.5), std ``s`` pixels."""
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s)) * peak


def stats_of(*maps: np.ndarray) -> dict[str, np.ndarray]:
    batch = torch.from_numpy(np.stack([np.round(m).astype(np.uint8) for m in maps]))
    return {k: v.numpy() for k, v in frame_stats(batch).items()}


def test_single_gaussian_every_statistic():
    cx, cy, s = 60.5, 40.5, 8.0  # the centre of pixel (60, 40)
    st = {k: float(v[0]) for k, v in stats_of(gaussian(cx, cy, s)).items() if v.ndim == 1}
    n = H * W
    assert (st["peak_x"], st["peak_y"]) == pytest.approx((cx / W, cy / H), abs=1e-6)
    assert st["peak_value"] == 1.0
    assert st["mean_value"] == pytest.approx(2 * math.pi * s * s / n, rel=0.02)
    assert st["com_x"] == pytest.approx(cx / W, abs=1e-3) and st["com_y"] == pytest.approx(cy / H, abs=1e-3)
    assert st["spread_x"] == pytest.approx(s / W, rel=0.02) and st["spread_y"] == pytest.approx(s / H, rel=0.02)
    nats = math.log(2 * math.pi * math.e * s * s)
    assert st["entropy"] == pytest.approx(nats / math.log(n), rel=0.02)
    assert st["entropy_area"] == pytest.approx(2 * math.pi * math.e * s * s / n, rel=0.05)
    assert st["area50"] == pytest.approx(math.pi * s * s * 2 * math.log(2) / n, rel=0.05)
    assert st["area90"] == pytest.approx(math.pi * s * s * 2 * math.log(10) / n, rel=0.05)
    half = 1.96 * s
    assert st["box90_x0"] == pytest.approx((cx - half) / W, abs=1.01 / W)
    assert st["box90_x1"] == pytest.approx((cx + half) / W, abs=1.01 / W)
    assert st["box90_y0"] == pytest.approx((cy - half) / H, abs=1.01 / H)
    assert st["box90_y1"] == pytest.approx((cy + half) / H, abs=1.01 / H)
    assert 0.9 <= st["box90_mass"] == pytest.approx(0.95**2, abs=0.01)


def test_two_blobs():
    """Two equal blobs: the centre of mass lies between them, the box and areas span both."""
    s = 6.0
    one = stats_of(gaussian(40, 48, s))
    two = stats_of(np.maximum(gaussian(40, 48, s), gaussian(120, 48, s)))
    st = {k: float(v[0]) for k, v in two.items() if v.ndim == 1}
    assert st["com_x"] == pytest.approx(0.5, abs=1e-3) and st["com_y"] == pytest.approx(0.5, abs=1e-3)
    assert st["peak_x"] == pytest.approx(40 / W, abs=0.5 / W)  # ties: the first maximum in row-major order
    assert st["spread_x"] == pytest.approx(math.sqrt(40.0**2 + s * s) / W, rel=0.01)
    assert st["spread_y"] == pytest.approx(s / H, rel=0.02)
    for key in ("area50", "area90", "entropy_area"):  # twice the pixels of one blob, same shape
        assert st[key] == pytest.approx(2 * one[key][0], rel=0.03)
    assert st["box90_x0"] < 40 / W - 1.5 * s / W and st["box90_x1"] > 120 / W + 1.5 * s / W
    assert st["box90_mass"] >= 0.9


@pytest.mark.parametrize("level", [1, 7, 255])
def test_uniform_and_empty_maps(level):
    maps = [np.full((H, W), level, np.uint8), np.zeros((H, W), np.uint8)]
    st = stats_of(*maps)
    assert st["peak_value"].tolist() == pytest.approx([level / 255, 0.0])
    assert st["mean_value"].tolist() == pytest.approx([level / 255, 0.0])
    for i in range(2):  # an empty map has no preferred place: summarised like a uniform one
        assert st["com_x"][i] == pytest.approx(0.5, abs=1e-5) and st["com_y"][i] == pytest.approx(0.5, abs=1e-5)
        assert st["spread_x"][i] == pytest.approx(1 / math.sqrt(12), rel=1e-3)
        assert st["entropy"][i] == pytest.approx(1.0, abs=1e-5) and st["entropy_area"][i] == pytest.approx(
            1.0, abs=1e-4
        )
        assert st["area50"][i] == pytest.approx(0.5, abs=1 / (H * W)) and st["area90"][i] == pytest.approx(
            0.9, abs=1 / (H * W)
        )
        assert st["box90_mass"][i] >= 0.9
        assert st["box90_x0"][i] + st["box90_x1"][i] == pytest.approx(1.0, abs=1.01 / W)  # centred
        assert st["box90_y0"][i] + st["box90_y1"][i] == pytest.approx(1.0, abs=1.01 / H)
        assert (st["peak_x"][i], st["peak_y"][i]) == pytest.approx((0.5 / W, 0.5 / H))


def test_single_pixel_has_no_spread():
    m = np.zeros((H, W), np.uint8)
    m[10, 20] = 200
    st = {k: float(v[0]) for k, v in stats_of(m).items() if v.ndim == 1}
    assert st["entropy"] == 0.0 and st["entropy_area"] == pytest.approx(1 / (H * W))
    assert st["area50"] == st["area90"] == pytest.approx(1 / (H * W))
    assert (st["box90_x0"], st["box90_x1"], st["box90_y0"], st["box90_y1"]) == pytest.approx(
        (20 / W, 21 / W, 10 / H, 11 / H)
    )
    assert st["box90_mass"] == pytest.approx(1.0)


def test_stats_do_not_depend_on_batch_company():
    a, b = gaussian(30, 20, 5), gaussian(100, 70, 12)
    alone = stats_of(a)
    together = stats_of(b, a)
    for key, value in alone.items():
        np.testing.assert_allclose(together[key][1], value[0], rtol=1e-5, atol=1e-6)


def test_stats_to_host_keeps_every_value():
    stats = frame_stats(torch.from_numpy(np.stack([np.round(gaussian(30, 20, 5)).astype(np.uint8)] * 2)))
    host = stats_to_host(stats)
    assert set(host) == set(stats)
    for key, value in stats.items():
        np.testing.assert_array_equal(host[key], value.numpy())


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        frame_stats(torch.zeros(2, 4, 4))


# -- per-video summaries ---------------------------------------------------------------------
def moving_blob(n: int, speed_px: float, h: int = H, w: int = W, s: float = 6.0, start: float = 20.0) -> np.ndarray:
    return np.stack([np.round(gaussian(start + speed_px * t, h / 2, s, h, w)).astype(np.uint8) for t in range(n)])


def feed(maps: np.ndarray, fps: float, batch: int, width: int, height: int, crop: str | None = None):
    summary = VideoSummary("v", width=width, height=height, crop=crop)
    frames = np.arange(len(maps))
    rows = []
    for start in range(0, len(maps), batch):
        part = slice(start, start + batch)
        rows.append(summary.add(frames[part], frames[part] / fps, frame_stats(torch.from_numpy(maps[part]))))
    row, track = summary.finish()
    return rows, row, track


def test_video_summary_means_focus_and_motion():
    maps = moving_blob(12, speed_px=4.0)
    fps = 10.0
    _, row, track = feed(maps, fps, batch=5, width=W, height=H)
    assert track is None and row["crop_aspect"] is None
    com_x = (20.0 + 4.0 * np.arange(12)) / W
    assert row["com_x_mean"] == pytest.approx(com_x.mean(), abs=1e-3)
    assert row["com_x_std"] == pytest.approx(com_x.std(), abs=1e-3)
    assert row["com_y_std"] == pytest.approx(0.0, abs=1e-4)
    # 4 px per map at 10 maps/s = 40 px/s, in diagonals of the (same-aspect) source frame
    assert row["focus_motion"] == pytest.approx(40.0 / math.hypot(W, H), rel=0.01)
    assert row["focus"] > 0.95  # a small blob: half its mass in ~0.4% of the frame
    _, uniform, _ = feed(np.full((3, H, W), 9, np.uint8), fps, batch=2, width=W, height=H)
    assert uniform["focus"] == pytest.approx(0.0, abs=1e-3) and uniform["focus_motion"] == pytest.approx(0.0)


def test_video_summary_streams_batch_by_batch():
    """Any batching gives the same rows and summary: nothing needs all maps at once."""
    maps = moving_blob(9, speed_px=3.0)
    rows1, row1, track1 = feed(maps, 25.0, batch=1, width=1920, height=1080, crop="9:16")
    rows9, row9, track9 = feed(maps, 25.0, batch=9, width=1920, height=1080, crop="9:16")
    import pyarrow as pa

    assert pa.concat_tables(rows1).equals(pa.concat_tables(rows9))
    assert row1 == pytest.approx(row9) and track1.equals(track9)


def test_single_map_and_empty_video():
    _, row, _ = feed(moving_blob(1, 0.0), 25.0, batch=4, width=W, height=H)
    assert row["focus_motion"] is None and row["com_x_std"] == pytest.approx(0.0, abs=1e-6)
    summary = VideoSummary("e", width=W, height=H, crop="1:1")
    row, track = summary.finish()
    assert all(row[c.name] is None for c in VIDEO_COLUMNS if not c.name.startswith("crop")) and track.num_rows == 0


# -- crop track ------------------------------------------------------------------------------
def test_crop_geometry_full_height_or_width():
    g = crop_geometry("9:16", 1920, 1080)
    assert (g.axis, g.width, g.height) == ("x", 606, 1080) and g.fraction == pytest.approx(606 / 1920)
    g = crop_geometry("16:9", 1080, 1920)
    assert (g.axis, g.width, g.height) == ("y", 1080, 606)
    g = crop_geometry("1:1", 640, 480)
    assert (g.axis, g.width, g.height) == ("x", 480, 480)
    assert parse_aspect("9/16") == pytest.approx(0.5625)
    for bad in ("tall", "0:1", "9:"):
        with pytest.raises(ConfigError):
            parse_aspect(bad)


def test_crop_follows_a_static_blob_and_stays_inside():
    """Maps are at model size; the source is 1920x1080: the window centre is the blob centre."""
    for cx, expected_x in ((0.3, 0.3 * 1920 - 303), (0.02, 0.0), (0.99, 1920 - 606)):
        maps = np.stack([np.round(gaussian(cx * W, H / 2, 6)).astype(np.uint8)] * 5)
        track = crop_track_from_maps("v", maps, np.arange(5), np.arange(5) / 25, "9:16", 1920, 1080)
        assert track["crop_x"].to_pylist() == pytest.approx([expected_x] * 5, abs=1920 / W)
        assert set(track["crop_y"].to_pylist()) == {0} and set(track["crop_w"].to_pylist()) == {606}
        assert set(track["crop_h"].to_pylist()) == {1080}
        x = np.array(track["crop_x"].to_pylist())
        assert x.min() >= 0 and x.max() + 606 <= 1920
    assert track["crop_w_frac"][0].as_py() == pytest.approx(606 / 1920)


def test_crop_of_uniform_map_is_centred_and_keeps_its_share():
    maps = np.full((3, H, W), 50, np.uint8)
    track = crop_track_from_maps("v", maps, np.arange(3), np.arange(3) / 25, "9:16", 1920, 1080)
    assert track["crop_x"].to_pylist() == pytest.approx([(1920 - 606) / 2] * 3, abs=2)
    assert track["crop_mass"].to_pylist() == pytest.approx([606 / 1920] * 3, abs=0.01)


def test_crop_prefers_the_heavier_blob_and_slides_vertically_on_portrait_sources():
    heavy_low = np.maximum(gaussian(W / 2, 20, 5, peak=120), gaussian(W / 2, 75, 8))
    track = crop_track_from_maps(
        "v", np.round(heavy_low)[None].astype(np.uint8), np.arange(1), np.zeros(1), "1:1", 1080, 1920
    )
    top, height = track["crop_y"][0].as_py(), track["crop_h"][0].as_py()
    assert track["crop_x"][0].as_py() == 0 and track["crop_w"][0].as_py() == 1080 and height == 1080
    scale = 1920 / H  # source pixels per map pixel
    assert top <= (75 - 2.5 * 8) * scale and top + height >= min(H, 75 + 2.5 * 8) * scale  # the heavy blob is in
    assert top > (20 + 2 * 5) * scale  # the light one is out: both do not fit
    heavy_share = (8 * 8) / (8 * 8 + 120 / 255 * 5 * 5)
    assert track["crop_mass"][0].as_py() == pytest.approx(heavy_share, abs=0.03)


def test_crop_track_is_smoothed_over_time():
    """A blob jumping left->right at 2 s: the raw best window jumps; the track glides (sigma 0.5 s)."""
    fps, n = 25.0, 100
    left, right = (
        np.round(gaussian(0.2 * W, H / 2, 6)).astype(np.uint8),
        np.round(gaussian(0.8 * W, H / 2, 6)).astype(np.uint8),
    )
    maps = np.stack([left if t < 50 else right for t in range(n)])
    track = crop_track_from_maps("v", maps, np.arange(n), np.arange(n) / fps, "9:16", 1920, 1080)
    x = np.array(track["crop_x"].to_pylist(), float)
    far_left, far_right = 0.2 * 1920 - 303, 0.8 * 1920 - 303
    assert x[:10] == pytest.approx(far_left, abs=20) and x[-10:] == pytest.approx(far_right, abs=20)
    steps = np.abs(np.diff(x))
    assert steps.max() < 0.2 * (far_right - far_left)  # no cut: at most a fifth of the way per frame
    assert x[50] == pytest.approx((far_left + far_right) / 2, abs=0.1 * (far_right - far_left))
    assert np.all(np.diff(x) >= 0)  # monotone, no overshoot
    raw = crop_track_from_maps("v", maps, np.arange(n), np.arange(n) / fps, "9:16", 1920, 1080, smooth_seconds=0)
    assert np.abs(np.diff(raw["crop_x"].to_numpy())).max() == pytest.approx(far_right - far_left, abs=20)


def test_docs_describe_every_column():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "summaries.md").read_text()
    for columns in (FRAME_COLUMNS, VIDEO_COLUMNS, CROP_COLUMNS):
        assert schema_markdown(columns) in doc


@pytest.mark.parametrize("pix_fmt", ["rgb24", "yuv420p"])
def test_the_ffmpeg_recipe_crops_where_the_track_says(tmp_path, pix_fmt):
    """sendcmd + crop, run through libavfilter (what the ffmpeg command line uses), follows the track.

    yuv420p is what most videos are: there the crop filter rounds odd x unless exact=1."""
    from fractions import Fraction

    import av

    from tased_batch.stores.summaries import ffmpeg_filter, sendcmd_script

    fps, n, width, height = 25, 50, 128, 72
    # the focus sweeps left to right, so the window takes odd and even positions
    maps = np.stack([np.round(gaussian((0.2 + 0.6 * t / n) * W, H / 2, 6)).astype(np.uint8) for t in range(n)])
    track = crop_track_from_maps("v", maps, np.arange(n), np.arange(n) / fps, "9:16", width, height, smooth_seconds=0)
    command_file = tmp_path / "v.cmd"
    command_file.write_text(sendcmd_script(track))
    sendcmd, crop = ffmpeg_filter(track, str(command_file)).split(",", 1)
    graph = av.filter.Graph()
    chain = [
        graph.add_buffer(width=width, height=height, format=pix_fmt, time_base=Fraction(1, fps)),
        graph.add(*sendcmd.split("=", 1)),
        graph.add(*crop.split("=", 1)),
        graph.add("buffersink"),
    ]
    for a, b in itertools.pairwise(chain):
        a.link_to(b)
    graph.configure()
    if pix_fmt == "rgb24":
        columns = np.tile(np.arange(width, dtype=np.uint8)[None, :, None], (height, 1, 3))  # pixel value = its x
    else:  # the luma plane holds x; the chroma planes (a quarter each) below it are flat
        columns = np.full((height * 3 // 2, width), 128, np.uint8)
        columns[:height] = np.arange(width, dtype=np.uint8)[None, :]
    xs = track["crop_x"].to_pylist()
    assert any(x % 2 for x in xs)  # odd positions are the ones rounding moves
    for t, expected in enumerate(xs):
        frame = av.VideoFrame.from_ndarray(columns, format=pix_fmt)
        frame.pts, frame.time_base = t, Fraction(1, fps)
        graph.push(frame)
        out = graph.pull().to_ndarray()
        h, w = track["crop_h"][0].as_py(), track["crop_w"][0].as_py()
        assert out.shape == ((h, w, 3) if pix_fmt == "rgb24" else (h * 3 // 2, w))
        assert out.reshape(out.shape[0], -1)[0, 0] == expected, (t, pix_fmt)
    assert track["crop_x"][0].as_py() < track["crop_x"][n - 1].as_py()
