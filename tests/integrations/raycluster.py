"""A real local Ray head with its job server, and a tiny video set, for the orchestrator plugin tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from tased_batch.decode.sample import synthetic_frames, write_video

ARGS = {"size": "32x64", "weights": "random", "actors": 1, "cpus_per_actor": 1, "shard_size": 1}
GOOD = ("a", "b")
BROKEN = "late"  # an empty upload: fails with a reason, the others are done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_videos(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(GOOD):
        write_video(folder / f"{name}.mp4", synthetic_frames(10, 32, 64, seed=i), fps=10)
    (folder / f"{BROKEN}.mp4").write_bytes(b"")
    return folder


def start_head(ray_tmp: Path) -> str:
    """`ray start --head` with its dashboard (the job API) on a free port; returns the job API address."""
    from runhelpers import cli_env

    gcs, dashboard = free_port(), free_port()
    head = subprocess.run(
        [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            f"--port={gcs}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            "--num-cpus=2",
            "--include-dashboard=true",
            f"--temp-dir={ray_tmp}",
        ],
        env=cli_env(ray_tmp),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert head.returncode == 0, head.stderr[-2000:]
    address = f"http://127.0.0.1:{dashboard}"
    from ray.job_submission import JobSubmissionClient

    deadline = time.time() + 120
    while True:  # the job agent comes up after the dashboard: wait until a job can run
        try:
            client = JobSubmissionClient(address)
            job = client.submit_job(entrypoint="python -c pass")
            while str(client.get_job_status(job).value) not in ("SUCCEEDED", "FAILED", "STOPPED"):
                time.sleep(0.5)
            return address
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(1)
