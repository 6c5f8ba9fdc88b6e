"""The local Ray a run starts for itself: Ray's secure mode, chosen explicitly, so no notice and no refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from tased_batch.run.local_ray import local_cluster_env


def test_sets_token_mode_only_for_a_cluster_of_our_own():
    env: dict[str, str] = {}
    assert local_cluster_env(env) == "token" and env["RAY_AUTH_MODE"] == "token"
    mine = {"RAY_AUTH_MODE": "disabled"}
    assert local_cluster_env(mine) == "disabled" and mine == {"RAY_AUTH_MODE": "disabled"}
    joining = {"RAY_ADDRESS": "10.0.0.5:6379"}
    assert local_cluster_env(joining) is None and "RAY_AUTH_MODE" not in joining


SCRIPT = """
import ray  # imported before the mode is chosen, as the executor does
from tased_batch.run.local_ray import local_cluster_env
assert local_cluster_env() == "token"
ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, num_cpus=1)
print("answer", ray.get(ray.remote(lambda: 41 + 1).remote()))
ray.shutdown()
"""


def test_a_local_cluster_started_after_import_works_and_prints_no_notice(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    ray_tmp = tempfile.mkdtemp(prefix="rt")  # short: Ray's socket paths must fit in 107 bytes
    env.update(HOME=str(tmp_path), RAY_TMPDIR=ray_tmp)  # the token Ray generates stays in tmp_path
    try:
        done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=180)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert "answer 42" in done.stdout, done.stderr[-3000:]
    assert "Token authentication is enabled" not in done.stderr
    assert (tmp_path / ".ray" / "auth_token").exists()
