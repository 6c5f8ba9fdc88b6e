"""A committed shard whose files were deleted or damaged is found and redone: readers raise
one error naming the shard, `verify` lists it, `verify --repair` makes it pending and
`resume` redoes it (issue 22, item 7)."""

from __future__ import annotations

import os

import pytest
import test_runstate as rs
from typer.testing import CliRunner

import tased_batch.run.executor as executor
import tased_batch.run.shards as shards
from tased_batch import open_results
from tased_batch.cli.main import app
from tased_batch.core.errors import StoreError
from tased_batch.run.job import run_job, run_status
from tased_batch.stores import layout

from runhelpers import assert_every_frame_once


@pytest.fixture
def local_exec(monkeypatch):
    """Shards run in this process (test_runstate's stand-in for the Ray executor)."""
    monkeypatch.setattr(executor, "execute", rs.inprocess_execute)
    monkeypatch.setattr(shards, "_sleep", lambda seconds: None)


def _data_file(out, shard: str) -> str:
    """A file holding maps of ``shard`` (not a table of contents), relative to the output."""
    record = layout.read_commit(str(out), shard)
    base = out / record.attempt_prefix
    names = sorted(
        os.path.relpath(os.path.join(d, f), out)
        for d, _, files in os.walk(base)
        for f in files
        if f not in ("videos.parquet", "frames.parquet", "zarr.json")
    )
    return names[-1]


@pytest.mark.parametrize("fmt", ["parquet", "zarr", "png"])
@pytest.mark.parametrize("damage", ["deleted", "one byte changed"])
def test_a_damaged_shard_is_named_found_repaired_and_redone(
    tmp_path, make_video, tiny_weights, local_exec, fmt, damage
):
    for i, (name, n) in enumerate(rs.LENGTHS.items()):
        make_video(f"videos/{name}.mp4", n_frames=n, seed=i)
    out = tmp_path / "out"
    config = rs._config(tmp_path / "videos", out, tiny_weights, format=fmt)
    assert run_job(config).exit_code == 0  # shards 000000 (a, b) and 000001 (c, d)
    victim = out / _data_file(out, "000001")
    if damage == "deleted":
        victim.unlink()
        results = open_results(str(out))
        with pytest.raises(StoreError, match="shard 000001: committed file .* is missing"):
            for video in ("c", "d"):
                results.maps(video)
    else:
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
    runner = CliRunner()
    found = runner.invoke(app, ["verify", str(out)], env={"COLUMNS": "300"})
    assert found.exit_code == 2, found.output
    assert "shard 000001" in found.output and "shard 000000" not in found.output
    assert run_status(str(out))["shards"]["done"] == 2  # a damaged shard still counts until repaired
    repaired = runner.invoke(app, ["verify", str(out), "--repair"], env={"COLUMNS": "300"})
    assert repaired.exit_code == 0, repaired.output
    assert "resume" in repaired.output
    assert run_status(str(out))["shards"] == {"total": 2, "done": 1, "pending": 1}
    assert run_job(config).exit_code == 0  # what `resume` does: the pending shard is redone
    assert_every_frame_once(open_results(str(out)), rs.LENGTHS)
    clean = runner.invoke(app, ["verify", str(out)])
    assert clean.exit_code == 0 and "every file matches" in clean.output, clean.output
