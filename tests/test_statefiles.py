"""Run-state files are written whole and read checked: damage is one line naming the file
(exit 2), a full disk is exit 4 with no 0-byte file left (issue 22, items 9 and 10)."""

from __future__ import annotations

import errno
import json
import os

import pytest
import test_runstate as rs
from typer.testing import CliRunner

import tased_batch.run.executor as executor
from tased_batch import open_results
from tased_batch.cli.main import app
from tased_batch.core.errors import OutputFull, StoreError
from tased_batch.run.job import run_job
from tased_batch.stores import layout
from tased_batch.stores import lease as leases

# fixtures shared with test_runstate: shards in this process, and its videos
local_exec = rs.local_exec
videos = rs.videos


def _one_error(result, *words: str) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def finished(tmp_path, videos, tiny_weights, local_exec):
    out = tmp_path / "out"
    assert run_job(rs._config(videos, out, tiny_weights)).exit_code == 0
    return out


DAMAGE = {
    "config truncated": ("config.json", lambda b: b[: len(b) // 2]),
    "config empty": ("config.json", lambda b: b""),
    "config wrongly typed": ("config.json", lambda b: json.dumps({**json.loads(b), "config": [1, 2]}).encode()),
    "plan truncated": ("plan/videos.parquet", lambda b: b[: len(b) // 2]),
    "plan not a plan": ("plan/videos.parquet", lambda b: open(__file__, "rb").read()),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_state_file_is_one_line_naming_it(finished, videos, tiny_weights, case):
    name, damage = DAMAGE[case]
    path = finished / name
    path.write_bytes(damage(path.read_bytes()))
    runner = CliRunner()
    status = runner.invoke(app, ["status", str(finished)], env={"COLUMNS": "300"})
    assert status.exit_code == 2, status.output
    _one_error(status, name)
    same = ["--weights", str(tiny_weights), "--size", rs.SIZE, "--shard-size", "2"]
    run = runner.invoke(app, ["run", str(videos), str(finished), *same], env={"COLUMNS": "300"})
    assert run.exit_code == 2, run.output
    _one_error(run, name)
    assert not (finished / "_lease.json").exists()


@pytest.mark.parametrize(
    "content",
    [
        b'{"token": "t", "owner',
        b'{"token": "t", "owner": "o", "host": "h", '
        b'"pid": 1, "job_id": null, "started": "x", "heartbeat": "y", "ttl": "z"}',
        b"[]",
    ],
)
def test_a_damaged_lease_is_taken_over_and_status_still_answers(tmp_path, content):
    out = tmp_path / "out"
    out.mkdir()
    (out / "_lease.json").write_bytes(content)
    fs, root = layout.open_fs(str(out))
    assert leases.read_lease(fs, root) is None
    notes: list[str] = []
    lease = leases.acquire(fs, root, ttl=5, log=notes.append)
    assert any("unreadable" in n for n in notes)
    assert leases.read_lease(fs, root).token == lease.info.token
    lease.release()


def _full_disk(monkeypatch, where: str) -> None:
    real = os.replace

    def replace(src, dst, *a, **k):
        if where in str(dst):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)


def test_a_full_disk_at_the_start_is_exit_4_and_leaves_no_empty_config(tmp_path, videos, monkeypatch):
    out = tmp_path / "out"
    _full_disk(monkeypatch, "config.json")
    result = CliRunner().invoke(app, ["run", str(videos), str(out), "--weights", "random", "--size", "64x96"])
    assert result.exit_code == 4, result.output
    _one_error(result, "config.json", "full")
    assert not (out / "config.json").exists()
    assert [f for f in os.listdir(out) if f.endswith(".tmp")] == []
    monkeypatch.undo()


def test_a_full_disk_at_the_report_is_exit_4_and_leaves_no_empty_report(
    tmp_path,
    videos,
    tiny_weights,
    local_exec,
    monkeypatch,
):
    out = tmp_path / "out"
    _full_disk(monkeypatch, "reports")
    with pytest.raises(OutputFull) as raised:
        run_job(rs._config(videos, out, tiny_weights))
    assert raised.value.exit_code == 4
    assert not (out / "reports").exists() or os.listdir(out / "reports") == []
    assert not (out / "_lease.json").exists()
    monkeypatch.undo()
    monkeypatch.setattr(executor, "execute", rs.inprocess_execute)
    assert run_job(rs._config(videos, out, tiny_weights)).exit_code == 0  # once freed, the same command finishes


def test_open_results_on_a_missing_path_raises(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_results(str(tmp_path / "no" / "such" / "path"))
