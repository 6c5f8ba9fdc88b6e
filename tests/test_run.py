"""`tased-batch run` on a real local Ray: end to end on S3, faults survived, resume, status, submit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tased_batch import open_results

from conftest import SMALL
from runhelpers import assert_every_frame_once, cli_env, json_lines, kill_ray, killpg, ray_processes, run_cli, start_cli

SIZE = f"{SMALL[0]}x{SMALL[1]}"
LENGTHS = {"a": 40, "b": 33, "c": 20, "d": 45, "e": 36}


@pytest.fixture
def videos(tmp_path, make_video):
    folder = tmp_path / "videos"
    for i, (name, n) in enumerate(LENGTHS.items()):
        make_video(f"videos/{name}.mp4", n_frames=n, seed=i)
    return folder


def test_end_to_end_on_s3_with_several_actors(tmp_path, videos, s3, tiny_weights, ray_tmp):
    fs, bucket = s3["fs"], s3["bucket"]
    for path in sorted(videos.iterdir()):
        fs.put(str(path), f"{bucket}/in/{path.name}")
    fs.pipe(f"{bucket}/in/broken.mp4", b"\x00" * 1000)
    out = f"s3://{bucket}/maps"
    args = [
        "run",
        f"s3://{bucket}/in/",
        out,
        "--weights",
        str(tiny_weights),
        "--size",
        SIZE,
        "--shard-size",
        "2",
        "--actors",
        "2",
        "--cpus-per-actor",
        "1",
        "--log-json",
    ]
    done = run_cli(args, ray_tmp)
    assert done.returncode == 3, done.stderr[-3000:]  # finished, one video failed
    events = json_lines(done.stdout)
    summary = events[-1]
    assert summary["event"] == "summary" and summary["videos"] == {"total": 6, "done": 5, "failed": 1, "pending": 0}
    assert summary["frames_done"] == sum(LENGTHS.values())
    assert any(e.get("event") == "started" and e["actors"] == 2 for e in events)

    results = open_results(out, s3["storage_options"])
    assert_every_frame_once(results, LENGTHS)
    table = results.videos()
    row = next(r for r in table.to_pylist() if r["video_id"] == "broken")
    assert row["status"] == "failed" and row["reason"] and "broken.mp4" in row["error"]
    assert set(table["weights_kind"].to_pylist()) == {"custom"}

    status = run_cli(["status", out, "--json"], ray_tmp)
    data = json.loads(status.stdout)
    assert data["shards"] == {"total": 3, "done": 3, "pending": 0}
    assert data["videos"]["failed"] == 1 and data["frames_done"] == sum(LENGTHS.values())
    assert [f["video_id"] for f in data["failures"]] == ["broken"]

    again = run_cli(args, ray_tmp)  # same command again: nothing left to do, nothing duplicated
    assert again.returncode == 3
    assert json_lines(again.stdout)[-1]["shards_run"] == 0
    assert_every_frame_once(open_results(out, s3["storage_options"]), LENGTHS)

    changed = run_cli(args[:-1] + ["--size", "64x96", "--dry-run"], ray_tmp)
    assert changed.returncode == 2
    assert "size: '32x64' -> '64x96'" in " ".join(changed.stderr.split())


def test_killed_actor_is_replaced_and_its_shard_redone(tmp_path, videos, tiny_weights, ray_tmp):
    out = tmp_path / "out"
    proc = start_cli(
        [
            "run",
            str(videos),
            str(out),
            "--weights",
            str(tiny_weights),
            "--size",
            SIZE,
            "--shard-size",
            "5",
            "--actors",
            "1",
            "--cpus-per-actor",
            "1",
            "--log-json",
        ],
        ray_tmp,
    )
    killed = None
    try:
        for line in proc.stdout:
            if '"event": "video"' in line and killed is None:
                workers = [p for p in ray_processes(ray_tmp) if "ray::_Worker" in " ".join(p.cmdline())]
                assert workers, "no actor process found"
                killed = workers[0].pid
                workers[0].send_signal(signal.SIGKILL)
        proc.wait(timeout=300)
    finally:
        killpg(proc)
    assert killed is not None
    assert proc.returncode == 0, proc.stderr.read()[-3000:]
    report = json.loads(sorted((out / "reports").glob("run-*.json"))[-1].read_text())
    assert report["actor_restarts"] >= 1
    assert_every_frame_once(open_results(str(out)), LENGTHS)


def test_killed_driver_then_resume_completes_without_duplicates(tmp_path, videos, tiny_weights, ray_tmp):
    out = tmp_path / "out"
    proc = start_cli(
        [
            "run",
            str(videos),
            str(out),
            "--weights",
            str(tiny_weights),
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
    assert 1 <= middle["shards"]["done"] < 5 and middle["shards"]["pending"] >= 1
    assert middle["lease"]["ttl"] == 4  # the killed driver's lease is still there
    lease = json.loads((out / "_lease.json").read_text())
    lease["host"] = "another-machine"  # as if the driver ran elsewhere: only its TTL can tell it is gone
    (out / "_lease.json").write_text(json.dumps(lease))

    resumed = run_cli(["resume", str(out), "--actors", "1", "--cpus-per-actor", "1", "--quiet"], ray_tmp)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "stopped beating" in " ".join(resumed.stderr.split())  # it said why it waited, then took over
    final = json.loads(run_cli(["status", str(out), "--json"], ray_tmp).stdout)
    assert final["shards"] == {"total": 5, "done": 5, "pending": 0}
    assert_every_frame_once(open_results(str(out)), LENGTHS)


def test_job_submission_to_a_local_head(tmp_path, videos, tiny_weights, ray_tmp):
    import socket

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    gcs, dashboard = free_port(), free_port()
    env = cli_env(ray_tmp)
    ray_bin = str(__import__("pathlib").Path(sys.executable).parent / "ray")
    head = subprocess.run(
        [
            ray_bin,
            "start",
            "--head",
            f"--port={gcs}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            "--num-cpus=2",
            "--include-dashboard=true",
            f"--temp-dir={ray_tmp}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert head.returncode == 0, head.stderr[-2000:]
    address = f"http://127.0.0.1:{dashboard}"
    out = tmp_path / "out"
    submitted = run_cli(
        [
            "submit",
            "--address",
            address,
            "--",
            "run",
            str(videos),
            str(out),
            "--weights",
            str(tiny_weights),
            "--size",
            SIZE,
            "--actors",
            "1",
            "--cpus-per-actor",
            "1",
        ],
        ray_tmp,
    )
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    job_id = submitted.stdout.strip().splitlines()[-1]
    deadline = time.time() + 240
    state = None
    while time.time() < deadline:
        state = json.loads(run_cli(["jobs", "status", job_id, "--address", address], ray_tmp).stdout)["status"]
        if state in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(2)
    logs = run_cli(["jobs", "logs", job_id, "--address", address], ray_tmp).stdout
    assert state == "SUCCEEDED", logs[-3000:]
    assert '"event": "summary"' in logs
    assert_every_frame_once(open_results(str(out)), LENGTHS)


def test_retry_failed_redoes_only_shards_with_failures(tmp_path, videos, tiny_weights, ray_tmp):
    (videos / "late.mp4").write_bytes(b"")  # not there yet: an empty upload
    out = tmp_path / "out"
    args = [
        "--weights",
        str(tiny_weights),
        "--size",
        SIZE,
        "--shard-size",
        "3",
        "--actors",
        "1",
        "--cpus-per-actor",
        "1",
        "--quiet",
    ]
    first = run_cli(["run", str(videos), str(out), *args], ray_tmp)
    assert first.returncode == 3, first.stderr[-3000:]
    before = json.loads(run_cli(["status", str(out), "--json"], ray_tmp).stdout)
    assert [f["video_id"] for f in before["failures"]] == ["late"]

    from conftest import synthetic_frames, write_video

    write_video(videos / "late.mp4", synthetic_frames(12, 72, 128, seed=9))  # the upload completed
    retried = run_cli(
        ["resume", str(out), "--retry-failed", "--actors", "1", "--cpus-per-actor", "1", "--log-json"], ray_tmp
    )
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert json.loads(retried.stdout.strip().splitlines()[-1])["shards_run"] == 1  # only the shard with the failure
    assert_every_frame_once(open_results(str(out)), {**LENGTHS, "late": 12})
