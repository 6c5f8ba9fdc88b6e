"""`tased-batch predict`: the released script's PNG layout, and its maps."""

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from tased_batch.cli.main import app

from conftest import SMALL

SIZE = f"{SMALL[0]}x{SMALL[1]}"


def _pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def test_frame_folder_gives_the_released_pngs(tmp_path, tiny_weights, clip70):
    frames, ref = clip70
    folder = tmp_path / "myclip"
    folder.mkdir()
    for i, frame in enumerate(frames):  # BGR on disk is OpenCV's business: PNG stores RGB
        Image.fromarray(frame).save(folder / f"img_{i:05d}.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["predict", str(folder), str(out), "--weights", str(tiny_weights), "--size", SIZE, "--batch-size", "4"]
    )
    assert result.exit_code == 0, result.output
    files = _pngs(out / "myclip")
    assert [f.name for f in files] == [f"{i:04d}.png" for i in range(1, 71)]
    maps = np.stack([np.asarray(Image.open(f)) for f in files])
    assert Image.open(files[0]).mode == "L" and maps.shape == (70, *SMALL)
    assert Image.open(files[0]).text["tased-batch:weights-kind"] == "custom"  # which weights made the maps
    diff = np.abs(maps.astype(int) - ref.astype(int))
    assert (diff <= 1).mean() >= 0.97


def test_video_file_with_sampling(tmp_path, tiny_weights, make_video):
    video = make_video("walk.mp4", n_frames=40)
    out = tmp_path / "out"
    args = ["predict", str(video), str(out), "--weights", str(tiny_weights), "--size", SIZE]
    result = CliRunner().invoke(app, args + ["--every", "10"])
    assert result.exit_code == 0, result.output
    assert [f.name for f in _pngs(out / "walk")] == ["0001.png", "0011.png", "0021.png", "0031.png"]
    assert "4 maps" in result.output


def test_bad_input_fails_with_the_reason(tmp_path, tiny_weights):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    result = CliRunner().invoke(
        app, ["predict", str(bad), str(tmp_path / "out"), "--weights", str(tiny_weights), "--size", SIZE]
    )
    assert result.exit_code == 3  # the video failed, as `run` exits when videos failed
    assert "notes.mp4" in result.output
    assert not (tmp_path / "out" / "notes").exists()


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch, make_video):
    monkeypatch.setenv("TASED_BATCH_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["predict", str(make_video()), str(tmp_path / "out"), "--size", SIZE])
    assert result.exit_code == 2
    assert "weights download" in result.output


def test_bad_size_is_refused(tmp_path, make_video):
    result = CliRunner().invoke(
        app, ["predict", str(make_video()), str(tmp_path / "o"), "--size", "100x100", "--weights", "random"]
    )
    assert result.exit_code == 2
    assert "multiples of 32" in result.output
