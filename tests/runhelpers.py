"""Helpers for tests that run `tased-batch` in a subprocess with its own Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil

CLI = [sys.executable, "-m", "tased_batch.cli.main"]


def cli_env(ray_tmp: Path) -> dict[str, str]:
    """Environment for a CLI subprocess: its Ray's files under ``ray_tmp`` so its processes can be found."""
    env = dict(os.environ)
    env["RAY_TMPDIR"] = str(ray_tmp)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env["RAY_AUTH_MODE"] = "disabled"  # a private test cluster on loopback; real clusters use their token
    return env


def start_cli(args: list[str], ray_tmp: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        CLI + args,
        env=cli_env(ray_tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    )


def run_cli(args: list[str], ray_tmp: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, env=cli_env(ray_tmp), capture_output=True, text=True, timeout=timeout)


def ray_processes(ray_tmp: Path) -> list[psutil.Process]:
    """Processes of the Ray started with ``ray_tmp``: those naming its session folder and their children.

    Workers rename themselves (``ray::_Worker.process``), so they are found as children.
    """
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(str(ray_tmp) in part for part in proc.info["cmdline"] or []):
                found[proc.pid] = proc
                for child in proc.children(recursive=True):
                    found[child.pid] = child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return list(found.values())


def kill_ray(ray_tmp: Path) -> None:
    for proc in ray_processes(ray_tmp):
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def killpg(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def json_lines(text: str) -> list[dict]:
    events = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return events


def assert_every_frame_once(results, expected: dict[str, int]) -> None:
    """Each video of ``expected`` (id -> frame count) has maps for frames 0..n-1, each exactly once."""
    table = results.videos()
    ids = table["video_id"].to_pylist()
    assert sorted(ids) == sorted(set(ids)), "a video appears twice"
    ok = {v for v, s in zip(ids, table["status"].to_pylist()) if s == "ok"}
    assert ok == set(expected), (ok, set(expected))
    for video_id, n in expected.items():
        frames = results.frame_indices(video_id)
        np.testing.assert_array_equal(frames, np.arange(n))
        assert results.maps(video_id).shape[0] == n
