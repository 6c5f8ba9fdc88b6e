"""A rebuilt plan leaves no commit record behind that no run will redo, and progress counts
each video once and only committed maps as this run's (issue 22, items 8 and 16)."""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stdout

import test_runstate as rs

from tased_batch import open_results
from tased_batch.run.job import run_job, run_status
from tased_batch.run.progress import JsonLinesReporter
from tased_batch.run.runrecords import ShardCommitted, VideoFinished

# fixtures shared with test_runstate: shards in this process, and its videos
local_exec = rs.local_exec


def test_records_of_shards_a_rebuilt_plan_lacks_are_withdrawn(tmp_path, make_video, tiny_weights, local_exec):
    for i, (name, n) in enumerate(rs.LENGTHS.items()):
        make_video(f"videos/{name}.mp4", n_frames=n, seed=i)
    videos, first = tmp_path / "videos", tmp_path / "first"
    assert run_job(rs._config(videos, first, tiny_weights)).exit_code == 0  # shards 000000 (a, b), 000001 (c, d)
    out = tmp_path / "copy"
    shutil.copytree(first, out)
    shutil.rmtree(out / "plan")
    (videos / "c.mp4").unlink()
    (videos / "d.mp4").unlink()
    again = run_job(rs._config(videos, out, tiny_weights))
    assert again.exit_code == 0, again.report
    assert any("plan no longer has (000001)" in n for n in again.report["lease"]["notes"])
    assert not any("000001" in n and "will be redone" in n for n in again.report["lease"]["notes"])
    status = run_status(str(out))
    assert status["shards"] == {"total": 1, "done": 1, "pending": 0} and status["stale_records"] == []
    results = open_results(str(out))
    assert sorted(results.videos()["video_id"].to_pylist()) == ["a", "b"]
    for video in results:  # every listed video's maps can be read
        assert video.maps.shape[0] == rs.LENGTHS[video.video_id]
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["000000"]  # the withdrawn shard's files went too


def _record(tmp_path, shard: str, ids: list[str]):
    return rs._commit(tmp_path / "out", shard, ids, "fp")


def test_progress_counts_a_retried_shard_once_and_only_committed_maps(tmp_path):
    reporter = JsonLinesReporter(total_shards=2, total_videos=3)
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        for _ in range(2):  # the first attempt of s0 dies after both videos; the second commits
            reporter.video(VideoFinished("s0", "a", "ok", frames=1))
            reporter.video(VideoFinished("s0", "b", "ok", frames=2))
            if _ == 0:
                reporter.shard_retry("s0", "actor died")
        reporter.shard_done(ShardCommitted("s0", _record(tmp_path, "s0", ["a", "b"]), 1.0))
        reporter.video(VideoFinished("s1", "c", "ok", frames=5))  # s1 never commits
        reporter.shard_failed("s1", "gave up after 3 attempts")
    totals = [json.loads(line)["totals"] for line in buffer.getvalue().splitlines()]
    assert max(t["videos_done"] for t in totals) <= 3
    assert totals[-1]["videos_done"] == 2 and totals[-1]["frames"] == 3
    assert reporter.frames_committed == 3  # the run report's frames_this_run: s1's 5 maps were never committed
