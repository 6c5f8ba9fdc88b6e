"""``render``: overlay files with the right frame count, size and colours."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tased_batch.analysis.render import blend, colorize, jet_lut, map_for_frames, render
from tased_batch.core.errors import ConfigError, StoreError, VideoError

N_FRAMES, SIZE = 20, (72, 128)  # source video: 20 frames of 72 x 128
EVERY = 5


def _half_map(h: int = 18, w: int = 32) -> np.ndarray:
    """Left half fully salient, right half not."""
    m = np.zeros((h, w), np.uint8)
    m[:, : w // 2] = 255
    return m


@pytest.fixture
def png_tree(tmp_path) -> Path:
    """Maps for every EVERY-th frame of video "clip" (1-based names 0001, 0006, ...)."""
    folder = tmp_path / "maps" / "clip"
    folder.mkdir(parents=True)
    for index in range(0, N_FRAMES, EVERY):
        Image.fromarray(_half_map()).save(folder / f"{index + 1:04d}.png")
    return tmp_path / "maps"


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_lut_runs_blue_to_red():
    lut = jet_lut()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert lut[0].tolist() == [0, 0, 128] and lut[255].tolist() == [128, 0, 0]
    assert lut[128, 1] == 255  # green peaks in the middle
    assert colorize(np.array([[0, 255]])).shape == (1, 2, 3)
    # 50 % blend of black with the colour of 255: half of (128, 0, 0)
    assert blend(np.zeros((1, 1, 3), np.uint8), np.full((1, 1), 255, np.uint8), 0.5).tolist() == [[[64, 0, 0]]]


def test_frames_without_map_use_the_nearest_earlier_one():
    positions = map_for_frames(np.array([2, 5, 10]), np.arange(13))
    assert positions.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2]


def test_render_mp4_overlay(make_video, png_tree, tmp_path):
    source = make_video("clip.mp4", n_frames=N_FRAMES, size=SIZE)
    info = render(str(png_tree), "clip", str(source), tmp_path / "overlay.mp4")
    assert (info.frames, info.width, info.height) == (N_FRAMES, 128, 72)
    frames = _decode(tmp_path / "overlay.mp4")
    assert frames.shape == (N_FRAMES, 72, 128, 3)
    original = _decode(source).astype(float)
    left, right = frames[..., :64, :].astype(float), frames[..., 64:, :].astype(float)
    # Salient left half is pushed towards red, the right half towards blue.
    assert (left[..., 0] - original[..., :64, 0]).mean() > 20
    assert (right[..., 2] - original[..., 64:, 2]).mean() > 20


def test_render_gif_side_by_side(make_video, png_tree, tmp_path):
    source = make_video("clip.mp4", n_frames=N_FRAMES, size=SIZE)
    out = tmp_path / "sbs.gif"
    info = render(str(png_tree), "clip", str(source), out, side_by_side=True)
    with Image.open(out) as gif:
        assert gif.n_frames == N_FRAMES == info.frames
        assert gif.size == (256, 72)
        gif.seek(N_FRAMES - 1)  # a frame that only has an earlier map
        right = np.asarray(gif.convert("RGB"))[:, 128:]
    assert right[:, :60, 0].mean() > 100 and right[:, :60, 2].mean() < 30  # red heat on the left
    assert right[:, 68:, 2].mean() > 100 and right[:, 68:, 0].mean() < 30  # blue on the right


def test_render_from_results_store(make_video, tmp_path):
    from tased_batch.core.records import VideoResult
    from tased_batch.stores import open_shard_writer

    source = make_video("clip.mp4", n_frames=N_FRAMES, size=SIZE)
    frames = np.arange(0, N_FRAMES, EVERY)
    store = str(tmp_path / "run")
    writer = open_shard_writer(
        store,
        "s0",
        format="parquet",
        store_size=(18, 32),
        model_size=(18, 32),
        run_info={"config_fingerprint": "test", "weights": {"sha256": "0" * 64, "kind": "random", "uri": "test"}},
    )
    writer.write(
        VideoResult(
            video_id="clip",
            source=str(source),
            n_frames=N_FRAMES,
            fps=30.0,
            width=128,
            height=72,
            frame_indices=frames,
            timestamps=frames / 30.0,
            maps=np.stack([_half_map()] * len(frames)),
        )
    )
    writer.commit()
    info = render(store, "clip", str(source), tmp_path / "o.mp4")
    assert info.frames == _decode(tmp_path / "o.mp4").shape[0] == N_FRAMES
    with pytest.raises(StoreError, match="no maps"):
        render(store, "other", str(source), tmp_path / "o.mp4")


def test_render_rejects_bad_output_and_source(png_tree, tmp_path):
    with pytest.raises(ConfigError, match="mp4 or"):
        render(str(png_tree), "clip", "whatever.mp4", tmp_path / "out.avi")
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(VideoError) as err:
        render(str(png_tree), "clip", str(tmp_path / "notes.mp4"), tmp_path / "out.mp4")
    assert err.value.reason == "not-video"
    with pytest.raises(VideoError) as err:
        render(str(png_tree), "clip", str(tmp_path / "absent.mp4"), tmp_path / "out.mp4")
    assert err.value.reason == "missing"


def test_cli_render(make_video, png_tree, tmp_path):
    import typer
    from typer.testing import CliRunner

    from tased_batch.cli import render as render_cli

    app = typer.Typer()
    app.callback()(lambda: None)
    render_cli.register(app)
    source = make_video("clip.mp4", n_frames=N_FRAMES, size=SIZE)
    out = tmp_path / "cli.mp4"
    result = CliRunner().invoke(
        app, ["render", str(png_tree), "clip", "--source", str(source), "--out", str(out)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert f"{N_FRAMES} frames, 128x72" in result.output and out.exists()
    bad = CliRunner().invoke(
        app, ["render", str(png_tree), "nope", "--source", str(source), "--out", str(out)], env={"COLUMNS": "200"}
    )
    assert bad.exit_code == 2 and "has no maps" in bad.output  # a user error, as for every command


def test_render_crop_window_follows_the_saliency(make_video, tmp_path):
    """--crop 1:1 on a 128x72 source: a 72x72 window over the salient left part, the rest dimmed."""
    import typer
    from typer.testing import CliRunner

    from tased_batch.cli import render as render_cli
    from tased_batch.core.records import VideoResult
    from tased_batch.stores import open_shard_writer

    source = make_video("clip.mp4", n_frames=N_FRAMES, size=SIZE)
    frames = np.arange(0, N_FRAMES, EVERY)
    store = str(tmp_path / "run")
    writer = open_shard_writer(
        store,
        "s0",
        format="parquet",
        store_size=(18, 32),
        model_size=(18, 32),
        crop="1:1",
        run_info={"config_fingerprint": "test", "weights": {"sha256": "0" * 64, "kind": "random", "uri": "test"}},
    )
    salient_left = np.zeros((18, 32), np.uint8)
    salient_left[:, 2:8] = 255  # columns 8..32 of 128 in the source
    writer.write(
        VideoResult(
            video_id="clip",
            source=str(source),
            n_frames=N_FRAMES,
            fps=30.0,
            width=128,
            height=72,
            frame_indices=frames,
            timestamps=frames / 30.0,
            maps=np.stack([salient_left] * len(frames)),
        )
    )
    writer.commit()
    out = tmp_path / "crop.mp4"
    app = typer.Typer()
    app.callback()(lambda: None)
    render_cli.register(app)
    args = ["render", store, "clip", "--source", str(source), "--out", str(out), "--alpha", "0", "--crop", "1:1"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rendered, original = _decode(out).astype(float), _decode(source).astype(float)
    # the window is x 0..72 (centred on the mass at x=20 it would start below 0): inside untouched,
    # outside at half brightness, a white frame on its right edge
    inside, outside = (slice(4, 68), slice(4, 68)), (slice(4, 68), slice(76, 128))
    assert np.abs(rendered[(slice(None), *inside)] - original[(slice(None), *inside)]).mean() < 6
    ratio = rendered[(slice(None), *outside)].mean() / original[(slice(None), *outside)].mean()
    assert ratio == pytest.approx(0.5, abs=0.06)
    assert rendered[:, 4:68, 70:72].mean() > 230
    bad = CliRunner().invoke(app, [*args[:-1], "tall"], env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and "WIDTH:HEIGHT" in bad.output  # a user error


def test_crop_windows_of_a_png_tree_are_computed_from_its_maps(png_tree):
    from tased_batch.analysis.render import crop_windows

    maps = np.stack([_half_map()] * 4)
    frames = np.arange(0, N_FRAMES, EVERY)
    windows = crop_windows(str(png_tree), "clip", "1:1", maps, frames, 30.0, 128, 72)
    assert windows.tolist() == [[0, 0, 72, 72]] * 4  # the salient left half: as far left as it goes
    flipped = crop_windows(str(png_tree), "clip", "1:1", maps[:, :, ::-1], frames, 30.0, 128, 72)
    assert flipped.tolist() == [[56, 0, 72, 72]] * 4
