"""The run report page, end to end: a real local Ray run and a resume, `status`, and the page in headless Chromium.

The page records script errors and which plots drew into its own DOM (``#report-status``);
Chromium's ``--dump-dom`` gives the DOM after the page's scripts ran. `.ci/run` installs
Chromium (Debian's package) where it is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tased_batch.run.timing import LIMITS

from conftest import SMALL
from runhelpers import json_lines, killpg, run_cli, start_cli

SIZE = f"{SMALL[0]}x{SMALL[1]}"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def browse(page: Path, tmp_path: Path) -> dict[str, str]:
    """Load ``page`` in headless Chromium; the attributes of its ``#report-status`` after its scripts ran."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (.ci/run installs it: apt-get install -y chromium)")
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless=new",
            "--disable-gpu",
            "--no-sandbox",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<p id="report-status"([^>]*)>', done.stdout)
    assert found, done.stdout[-2000:]
    return {k: v.replace("&quot;", '"') for k, v in re.findall(r'([\w-]+)="([^"]*)"', found.group(1))}


@pytest.fixture
def videos(tmp_path, make_video):
    folder = tmp_path / "videos"
    make_video("videos/a.mp4", n_frames=12, seed=1)
    make_video("videos/b.mp4", n_frames=9, seed=2)
    (folder / "broken.mp4").write_bytes(b"\x00" * 500)
    return folder


def test_a_run_and_its_resume_make_a_page_that_draws_offline(tmp_path, videos, tiny_weights, ray_tmp):
    out = tmp_path / "out"
    args = ["--weights", str(tiny_weights), "--size", SIZE, "--shard-size", "2", "--actors", "1"]
    first = run_cli(["run", str(videos), str(out), *args, "--log-json"], ray_tmp)
    assert first.returncode == 3, first.stderr[-3000:]  # finished, the broken video failed
    events = json_lines(first.stdout)
    assert any(e.get("event") == "stages" and e["actor"] == 0 for e in events)  # the clocks in --log-json
    verdict = events[-1]["time"]
    assert verdict["limit"] in LIMITS and 0.0 < verdict["model_busy"] <= 1.0 and verdict["advice"]
    assert verdict["stages"]["model"] > 0 and "feed" in verdict["stages"]
    assert (out / "reports" / "report.html").exists()  # written at the end of the run

    status = run_cli(["status", str(out), "--json"], ray_tmp)
    assert json.loads(status.stdout)["time"] == verdict
    text = run_cli(["status", str(out)], ray_tmp)
    assert f"time    {verdict['limit']}-bound" in text.stdout

    again = run_cli(["resume", str(out), "--log-json"], ray_tmp)  # nothing left: a resume that runs no shard
    assert again.returncode == 3, again.stderr[-3000:]
    assert json_lines(again.stdout)[-1]["attempt"]["kind"] == "resume"

    page = tmp_path / "page.html"
    made = run_cli(["report", str(out), "--out", str(page)], ray_tmp)
    assert made.returncode == 0, made.stderr[-3000:]
    source = page.read_text()
    markup = re.sub(r"<script>.*?</script>", "", source, flags=re.S)  # the page's own elements, scripts inline
    assert "<script src" not in source and "<link" not in markup  # nothing fetched at view time
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", markup)
    assert "run 1 (first" in source and "run 2 (resume" in source
    assert "broken" in source and "not-video" in source  # failures by reason, with their videos
    assert source.count("data:image/gif;base64,") == 2  # the gallery: one animated thumbnail per video with maps

    state = browse(page, tmp_path)
    assert json.loads(state["data-errors"]) == []
    # progress, frames/s, actor 0's stages, failures by reason, the summaries' distributions
    assert state["data-plots"] == state["data-drawn"] == "5", state

    broken = tmp_path / "broken.html"  # the check itself: a page whose script fails is caught
    broken.write_text(source.replace("<body>", "<body><script>undefinedFunction();</script>", 1))
    assert "undefinedFunction" in browse(broken, tmp_path)["data-errors"]


def test_an_interrupted_run_still_reports_where_its_time_went(tmp_path, make_video, tiny_weights, ray_tmp):
    for i in range(4):
        make_video(f"videos/v{i}.mp4", n_frames=30, seed=i)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "videos"), str(out), "--weights", str(tiny_weights), "--size", SIZE]
    proc = start_cli([*args, "--shard-size", "1", "--actors", "1", "--log-json"], ray_tmp)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the first stage times: the model is at work
            if '"event": "stages"' in line:
                break
        os.kill(proc.pid, signal.SIGINT)  # Ctrl-C, to the driver only
        _, stderr = proc.communicate(timeout=180)
    finally:
        killpg(proc)
    assert proc.returncode == 4, stderr[-3000:]  # could not finish: resume it
    assert "tased-batch resume" in stderr
    [report] = [json.loads(p.read_text()) for p in (out / "reports").glob("run-*.json")]
    assert report["attempt"]["interrupted"] is True and report["shards"]["pending"] >= 1
    assert report["time"]["stages"]["model"] > 0
    page = out / "reports" / "report.html"
    assert "interrupted" in page.read_text()
    state = browse(page, tmp_path)
    assert json.loads(state["data-errors"]) == [] and state["data-plots"] == state["data-drawn"], state
