"""The quickstart's first command: sample videos -> main job -> overlay, offline, on the labelled stand-in."""

import socket

from typer.testing import CliRunner

from tased_batch import open_results
from tased_batch.cli.main import app


def test_demo_runs_offline_on_the_labelled_stand_in(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    monkeypatch.setenv("TASED_BATCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    result = CliRunner().invoke(app, ["demo", str(tmp_path / "demo"), "--size", "32x64"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "random stand-in" in line]
    assert len(lines) == 1 and "drive.google.com" in lines[0]
    res = open_results(str(tmp_path / "demo" / "saliency"))
    table = res.videos()
    assert sorted(table["video_id"].to_pylist()) == ["sample_00", "sample_01", "sample_02"]
    assert dict(zip(table["video_id"].to_pylist(), table["n_maps"].to_pylist())) == {
        "sample_00": 48,
        "sample_01": 24,
        "sample_02": 36,
    }
    assert set(table["weights_kind"].to_pylist()) == {"random"}
    assert (tmp_path / "demo" / "overlay.mp4").stat().st_size > 1000
