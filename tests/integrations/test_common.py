"""What every orchestrator plugin shares (no orchestrator needed): run arguments, secrets, exit codes."""

from __future__ import annotations

import json

import pytest
from raycluster import make_videos

from tased_batch.core.errors import ConfigError
from tased_batch.integrations.common import EXIT_USAGE, RunStatus, exit_code_of, outcome, run_args


def test_run_args_mean_the_same_run_to_the_cli(tmp_path):
    from typer.testing import CliRunner

    from tased_batch.cli.main import app

    videos = make_videos(tmp_path / "videos")
    options = {"size": [32, 64], "weights": "random", "shard_size": 2, "overwrite": False, "storage_options": {}}
    args = run_args(str(videos), str(tmp_path / "out"), options)
    result = CliRunner().invoke(app, [*args, "--dry-run", "--log-json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output.strip().splitlines()[-1])
    assert plan["plan"]["videos"] == 3 and plan["plan"]["shards"] == 2
    assert plan["config"]["size"] == "32x64" and plan["config"]["weights"] == "random"


def test_credentials_at_any_depth_are_refused_and_not_echoed():
    for options in (
        {"storage_options": {"secret": "hunter2"}},
        {"storage_options": {"client_kwargs": {"aws_secret_access_key": "hunter2"}}},
    ):
        with pytest.raises(ConfigError, match="credentials") as caught:
            run_args("in", "out", options)
        assert "hunter2" not in str(caught.value)
    assert "--storage-option" in run_args("in", "out", {"storage_options": {"endpoint_url": "http://minio:9000"}})


def test_bad_option_is_named():
    with pytest.raises(ConfigError, match="precision"):
        run_args("in", "out", {"precision": "fp8"})


def test_exit_codes_from_ray_messages():
    assert exit_code_of("SUCCEEDED", "") == 0
    assert (
        exit_code_of("FAILED", "Job entrypoint command failed with exit code 3, last available logs (truncated)") == 3
    )
    assert exit_code_of("FAILED", "Job entrypoint command failed with exit code 2, last available logs") == EXIT_USAGE
    assert exit_code_of("STOPPED", "Job was intentionally stopped.") == 4


def _status(failed: int, total: int) -> RunStatus:
    return RunStatus("out", 3, 0, 3, total - failed, failed, 0, total, 100, {"empty-file": failed} if failed else {})


def test_outcome_of_each_exit_code():
    assert outcome(0, _status(0, 10), 0.0).ok
    some = outcome(3, _status(1, 10), 0.2)
    assert some.ok and "1 of 10 videos failed" in some.reason and "empty-file" in some.reason
    above = outcome(3, _status(3, 10), 0.2)
    assert not above.ok and "above the threshold" in above.reason
    bad = outcome(2, None, 1.0, "error: no videos found under /data/in")
    assert not bad.ok and "no videos found under /data/in" in bad.reason and "exit 2" in bad.reason
    assert not outcome(4, _status(0, 10), 1.0, "storage unavailable").ok
