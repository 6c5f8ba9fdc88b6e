"""Run state on a real local Ray: two drivers on one OUTPUT, a hung video, a stalled run, two nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tased_batch import open_results

from conftest import SMALL
from runhelpers import assert_every_frame_once, cli_env, json_lines, killpg, run_cli, start_cli

SIZE = f"{SMALL[0]}x{SMALL[1]}"
LENGTHS = {f"v{i}": 30 + i for i in range(8)}


@pytest.fixture
def videos(tmp_path, make_video):
    for i, (name, n) in enumerate(LENGTHS.items()):
        make_video(f"videos/{name}.mp4", n_frames=n, seed=i)
    return tmp_path / "videos"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_drivers_on_one_output(where, tmp_path, videos, tiny_weights, ray_tmp, request):
    if where == "s3":
        s3 = request.getfixturevalue("s3")
        out = f"s3://{s3['bucket']}/maps"
        options = s3["storage_options"]
    else:
        out, options = str(tmp_path / "out"), None
    args = [
        "run",
        str(videos),
        out,
        "--weights",
        str(tiny_weights),
        "--size",
        SIZE,
        "--shard-size",
        "2",
        "--actors",
        "1",
        "--cpus-per-actor",
        "1",
        "--lease-ttl",
        "6",
        "--log-json",
    ]
    first = start_cli(args, ray_tmp)
    try:
        for line in first.stdout:
            if '"event": "started"' in line:
                break
        second = run_cli(args, ray_tmp, timeout=120)
        rest = first.stdout.read()
        first.wait(timeout=300)
    finally:
        killpg(first)
    assert second.returncode == 2, second.stderr[-2000:]
    message = " ".join(second.stderr.split())
    assert "another driver is writing this output" in message and "last heartbeat" in message
    assert first.returncode == 0, first.stderr.read()[-3000:]
    assert json_lines(rest)[-1]["shards_run"] == 4
    assert_every_frame_once(open_results(out, options), LENGTHS)


def test_a_fifo_among_the_inputs_is_refused_and_the_run_finishes(tmp_path, videos, tiny_weights, ray_tmp):
    """A FIFO would block its reader forever: it fails at once as not-regular, nobody waits for the timeout."""
    hung = tmp_path / "hung.mp4"
    os.mkfifo(hung)  # opening it would block forever: nobody writes
    manifest = tmp_path / "list.txt"
    manifest.write_text("\n".join([str(videos / "v0.mp4"), str(hung), str(videos / "v1.mp4")]) + "\n")
    out = tmp_path / "out"
    done = run_cli(
        [
            "run",
            str(manifest),
            str(out),
            "--weights",
            str(tiny_weights),
            "--size",
            SIZE,
            "--actors",
            "1",
            "--cpus-per-actor",
            "1",
            "--video-timeout",
            "8",
            "--log-json",
        ],
        ray_tmp,
        timeout=400,
    )
    assert done.returncode == 3, done.stderr[-3000:]
    events = json_lines(done.stdout)
    assert not any(e.get("event") == "video_timeout" for e in events)
    summary = events[-1]
    assert summary["failures_by_reason"] == {"not-regular": 1} and summary["actor_restarts"] == 0
    assert_every_frame_once(open_results(str(out)), {"v0": LENGTHS["v0"], "v1": LENGTHS["v1"]})


def test_a_run_that_cannot_progress_stops_with_exit_4(tmp_path, videos, tiny_weights, ray_tmp):
    out = tmp_path / "out"
    done = run_cli(
        [
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
            "64",
            "--stall-timeout",
            "6",
            "--log-json",
        ],
        ray_tmp,
        timeout=200,
    )  # an actor that asks for 64 CPUs is never scheduled here
    assert done.returncode == 4, done.stderr[-3000:]
    summary = json_lines(done.stdout)[-1]
    assert "no progress for 6 s" in summary["stalled"]
    assert summary["shards"]["pending"] == summary["shards"]["total"]
    assert not (out / "_lease.json").exists()  # released: resume can start at once


def test_two_node_cluster_refuses_local_paths(tmp_path, videos, tiny_weights, ray_tmp):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = cli_env(ray_tmp)
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    head = subprocess.run(
        [
            *ray_cli,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=1",
            "--include-dashboard=false",
            f"--temp-dir={ray_tmp}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert head.returncode == 0, head.stderr[-2000:]
    node = subprocess.run(
        [
            *ray_cli,
            "start",
            f"--address=127.0.0.1:{port}",
            "--num-cpus=1",
            "--resources",
            json.dumps({"second_node": 1}),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert node.returncode == 0, node.stderr[-2000:]
    out = tmp_path / "out"
    refused = run_cli(
        [
            "run",
            str(videos),
            str(out),
            "--weights",
            str(tiny_weights),
            "--size",
            SIZE,
            "--address",
            f"127.0.0.1:{port}",
            "--quiet",
        ],
        ray_tmp,
        timeout=200,
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    message = " ".join(refused.stderr.split())
    assert "2 nodes" in message and "--shared-fs" in message
    assert not (out / "_commits").exists()
