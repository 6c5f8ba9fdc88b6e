"""The tool deletes only what it wrote: `--overwrite` and the orphan cleanup keep a user's files,
never follow a symlink, refuse a folder that holds no run of the tool, and OUTPUT may not be
INPUT or lie inside it (issue 22, items 1-3)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import test_runstate as rs
from typer.testing import CliRunner

from tased_batch import open_results
from tased_batch.cli.main import app
from tased_batch.core.errors import ConfigError, StateError
from tased_batch.core.records import VideoResult
from tased_batch.run.job import run_job
from tased_batch.stores import layout, open_shard_writer

from conftest import SMALL
from runhelpers import assert_every_frame_once

# fixtures shared with test_runstate: shards in this process, and its videos
local_exec = rs.local_exec
videos = rs.videos


def _user_files(root):
    files = {
        "reports/holiday.mp4": b"user video 1",
        "plan/storyboard.mp4": b"user video 2",
        "shards/notes.txt": b"my notes",
        "shards/000000/2019-photos/a.jpg": b"jpeg",
        "_commits/README": b"mine",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_overwrite_removes_only_the_tools_own_files(tmp_path, videos, tiny_weights, local_exec):
    out = tmp_path / "out"
    assert run_job(rs._config(videos, out, tiny_weights)).exit_code == 0
    files = _user_files(out)
    again = run_job(rs._config(videos, out, tiny_weights, store_size="16x32", overwrite=True))
    assert again.exit_code == 0, again.report
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data, rel
    results = open_results(str(out))
    assert_every_frame_once(results, rs.LENGTHS)
    assert set(results.videos()["store_height"].to_pylist()) == {16}
    assert len(os.listdir(out / "reports")) == 2  # the user's file and the new run's report


def test_overwrite_of_a_folder_without_a_run_of_the_tool_is_refused(tmp_path, videos, tiny_weights, local_exec):
    out = tmp_path / "project"
    (out / "reports").mkdir(parents=True)
    (out / "reports" / "q3.mp4").write_bytes(b"user video")
    (out / "config.json").write_text(json.dumps({"name": "my project", "version": 3}))
    for overwrite in (False, True):
        with pytest.raises(StateError, match="not written by tased-batch"):
            run_job(rs._config(videos, out, tiny_weights, overwrite=overwrite))
    assert (out / "reports" / "q3.mp4").read_bytes() == b"user video"
    assert sorted(os.listdir(out)) == ["config.json", "reports"]


def test_orphan_cleanup_never_leaves_the_output_or_touches_foreign_names(tmp_path):
    out = tmp_path / "out"
    rs._commit(out, "s0", ["a"], "fp")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "2019-photos").mkdir(parents=True)
    (elsewhere / "2019-photos" / "beach.jpg").write_bytes(b"jpeg")
    (elsewhere / "20200101T000000Z-cccccccccccc").mkdir()
    os.symlink(elsewhere, out / "shards" / "evil")
    os.symlink(elsewhere / "20200101T000000Z-cccccccccccc", out / "shards" / "s0" / "20200101T000000Z-dddddddddddd")
    mine = out / "shards" / "s0" / "2019-photos"  # sorts before any start time, but is no attempt name
    mine.mkdir()
    orphan = out / "shards" / "s0" / "20200101T000000Z-aaaaaaaaaaaa"
    orphan.mkdir()
    (orphan / "data.parquet").write_bytes(b"x")
    os.symlink(elsewhere / "2019-photos" / "beach.jpg", orphan / "link.jpg")  # a link inside an attempt
    removed = layout.remove_orphans(str(out), before="20990101T000000Z")
    assert removed == ["shards/s0/20200101T000000Z-aaaaaaaaaaaa"]
    assert (elsewhere / "2019-photos" / "beach.jpg").read_bytes() == b"jpeg"
    assert (elsewhere / "20200101T000000Z-cccccccccccc").is_dir() and mine.is_dir()
    assert not orphan.exists() and len(open_results(str(out))) == 1


def test_overwrite_never_follows_a_symlink(tmp_path, videos, tiny_weights, local_exec):
    out = tmp_path / "out"
    assert run_job(rs._config(videos, out, tiny_weights)).exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "20200101T000000Z-cccccccccccc").mkdir(parents=True)
    (elsewhere / "run-20200101T000000Z.json").write_text("{}")
    os.symlink(elsewhere, out / "shards" / "000009")
    os.symlink(elsewhere / "run-20200101T000000Z.json", out / "reports" / "run-20200102T000000Z.json")
    assert run_job(rs._config(videos, out, tiny_weights, store_size="16x32", overwrite=True)).exit_code == 0
    assert (elsewhere / "20200101T000000Z-cccccccccccc").is_dir()
    assert (elsewhere / "run-20200101T000000Z.json").read_text() == "{}"


@pytest.mark.parametrize("where", ["same", "inside", "inside-glob"])
def test_output_equal_to_or_inside_the_input_is_refused(tmp_path, videos, tiny_weights, where):
    output = {"same": videos, "inside": videos / "out", "inside-glob": videos / "sub" / "out"}[where]
    given = str(videos / "*.mp4") if where == "inside-glob" else str(videos)
    before = sorted(os.listdir(videos))
    with pytest.raises(ConfigError, match="input"):
        run_job(rs._config(videos, output, tiny_weights, input=given))
    assert sorted(os.listdir(videos)) == before  # not even a lease file was written
    result = CliRunner().invoke(app, ["run", given, str(output), "--weights", "random", "--size", "64x96"])
    assert result.exit_code == 2, result.output
    assert "inside the input" in result.output or "is the input" in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("error:")]) == 1


def test_output_beside_the_input_is_accepted(tmp_path, videos, tiny_weights, local_exec):
    assert run_job(rs._config(videos, tmp_path / "videos-out", tiny_weights)).exit_code == 0


def test_on_object_stores_only_the_tools_own_objects_are_deleted(s3):
    fs, bucket = s3["fs"], s3["bucket"]
    uri, root = f"s3://{bucket}/run", f"{bucket}/run"
    writer = open_shard_writer(
        uri,
        "s0",
        model_size=SMALL,
        store_size=(8, 16),
        run_info={"config_fingerprint": "fp", "weights": {"sha256": "0" * 64, "kind": "custom", "uri": "w"}},
        storage_options=s3["storage_options"],
    )
    writer.write(
        VideoResult(
            "a", "a", frame_indices=np.arange(2), timestamps=np.arange(2) / 10.0, maps=np.zeros((2, *SMALL), np.uint8)
        )
    )
    record = writer.commit()
    orphan = f"{root}/shards/s0/20200101T000000Z-aaaaaaaaaaaa/maps.parquet"
    user = [
        f"{root}/reports/holiday.mp4",
        f"{root}/shards/notes.txt",
        f"{root}/shards/s0/2019-photos/a.jpg",
        f"{root}/plan/storyboard.mp4",
    ]
    for path in [orphan, *user, f"{root}/reports/run-20200101T000000Z.json", f"{root}/plan/videos.parquet"]:
        fs.pipe_file(path, b"x")
    assert layout.remove_orphans(uri, s3["storage_options"], before="20990101T000000Z") == [
        "shards/s0/20200101T000000Z-aaaaaaaaaaaa"
    ]
    assert fs.exists(f"{root}/{record.attempt_prefix}/videos.parquet")
    for relative in ("_index", "_commits", "shards", "reports", "plan"):
        layout.remove_run_files(fs, root, relative)
    fs.invalidate_cache()
    left = sorted(fs.find(root))
    assert left == sorted(user), left
