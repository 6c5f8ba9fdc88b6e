"""`tased-batch run --format lance` on a real local Ray: a driver killed mid-run and `resume`
leave every video's rows in maps.lance and videos.lance exactly once."""

from __future__ import annotations

import json

import pytest

from tased_batch import open_results

from conftest import SMALL
from runhelpers import assert_every_frame_once, kill_ray, killpg, run_cli, start_cli

lance = pytest.importorskip("lance")

SIZE = f"{SMALL[0]}x{SMALL[1]}"
LENGTHS = {"a": 14, "b": 9, "c": 11}


def test_killed_driver_then_resume_appends_every_shard_once(tmp_path, make_video, tiny_weights, ray_tmp):
    for i, (name, n) in enumerate(LENGTHS.items()):
        make_video(f"videos/{name}.mp4", n_frames=n, seed=i)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "videos"), str(out), "--format", "lance", "--weights", str(tiny_weights)]
    proc = start_cli(
        [
            *args,
            "--size",
            SIZE,
            "--shard-size",
            "1",
            "--actors",
            "1",
            "--cpus-per-actor",
            "1",
            "--lease-ttl",
            "4",
            "--log-json",
        ],
        ray_tmp,
    )
    try:
        for line in proc.stdout:
            if '"event": "shard"' in line:
                break
        killpg(proc)
        proc.wait(timeout=30)
    finally:
        killpg(proc)
    kill_ray(ray_tmp)
    middle = json.loads(run_cli(["status", str(out), "--json"], ray_tmp).stdout)
    assert 1 <= middle["shards"]["done"] < 3  # committed, not yet appended: the driver died first

    resumed = run_cli(["resume", str(out), "--actors", "1", "--cpus-per-actor", "1", "--quiet"], ray_tmp, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = run_cli(["resume", str(out), "--quiet"], ray_tmp, timeout=400)  # nothing to do: nothing appended twice
    assert again.returncode == 0, again.stderr[-3000:]

    ids = lance.dataset(str(out / "maps.lance")).to_table(columns=["video_id"])["video_id"].to_pylist()
    assert {v: ids.count(v) for v in LENGTHS} == LENGTHS  # every map row once
    videos = lance.dataset(str(out / "videos.lance")).to_table(columns=["video_id"])["video_id"].to_pylist()
    assert sorted(videos) == sorted(LENGTHS)
    assert_every_frame_once(open_results(str(out)), LENGTHS)
