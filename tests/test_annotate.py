"""`tased-batch annotate`: a store's per-video summaries added to a user's Lance and Parquet
clip tables by id (never by position), unmatched ids null and counted, a rerun changes nothing."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tased_batch.cli.main import app
from tased_batch.core.records import VideoResult
from tased_batch.stores import open_shard_writer
from tased_batch.stores.reader import open_results
from tased_batch.stores.synthetic import synthetic_saliency_maps

lance = pytest.importorskip("lance")

MODEL = (32, 64)
SHA = "1a2b3c4d" + "0" * 56
RUN_INFO = {"config_fingerprint": "cfg-a", "weights": {"sha256": SHA, "kind": "random", "uri": "random://0"}}
FOCUS = "saliency_tased_1a2b3c4d_focus"
ENTROPY = "saliency_tased_1a2b3c4d_entropy_mean"


@pytest.fixture
def store(tmp_path):
    maps = synthetic_saliency_maps(12, size=MODEL, seed=2)
    out = str(tmp_path / "store")
    with open_shard_writer(out, "000000", store_size=(8, 16), model_size=MODEL, run_info=RUN_INFO) as writer:
        for i, vid in enumerate(["clip-a", "clip-b", "clip-c"]):
            frames = np.arange(4, dtype=np.int64)
            writer.write(
                VideoResult(
                    vid,
                    f"/v/{vid}.mp4",
                    n_frames=4,
                    fps=25.0,
                    width=96,
                    height=54,
                    frame_indices=frames,
                    timestamps=frames / 25.0,
                    maps=maps[3 * i : 3 * i + 4],
                )
            )
        writer.write(VideoResult.failed("clip-bad", "/v/bad.mp4", "truncated", "moov atom not found"))
        writer.commit()
    videos = open_results(out).videos()
    truth = dict(
        zip(videos["video_id"].to_pylist(), zip(videos["focus"].to_pylist(), videos["entropy_mean"].to_pylist()))
    )
    return out, truth


# The user's clip table: its own order, a caption column, ids the store lacks, one video twice.
CLIPS = {"clip_id": ["clip-c", "nope", "clip-a", "clip-bad", "clip-a"], "caption": ["c", "x", "a", "bad", "a2"]}


def check(table: pa.Table, truth: dict) -> None:
    assert table["clip_id"].to_pylist() == CLIPS["clip_id"] and table["caption"].to_pylist() == CLIPS["caption"]
    for vid, focus, entropy in zip(table["clip_id"].to_pylist(), table[FOCUS].to_pylist(), table[ENTROPY].to_pylist()):
        if vid in ("nope", "clip-bad"):  # no committed video (or one with no maps): nulls
            assert focus is None and entropy is None
        else:
            assert math.isclose(focus, truth[vid][0]) and math.isclose(entropy, truth[vid][1])


def test_annotate_a_lance_table_in_place_as_a_new_version(tmp_path, store):
    out, truth = store
    uri = str(tmp_path / "clips.lance")
    lance.write_dataset(pa.table(CLIPS), uri)
    result = CliRunner().invoke(app, ["annotate", uri, "--from", out, "--id-col", "clip_id"])
    assert result.exit_code == 0, result.output
    assert "5 rows: 3 matched, 2 without a committed video" in result.output
    dataset = lance.dataset(uri)
    check(dataset.to_table(), truth)
    assert lance.dataset(uri, version=1).schema.names == ["clip_id", "caption"]  # the old version stays readable
    version = dataset.version
    again = CliRunner().invoke(app, ["annotate", uri, "--from", out, "--id-col", "clip_id"])
    assert again.exit_code == 0 and "nothing changed" in again.output
    assert lance.dataset(uri).version == version


def test_annotate_a_parquet_table_as_a_joined_copy(tmp_path, store):
    out, truth = store
    path = tmp_path / "clips.parquet"
    pq.write_table(pa.table(CLIPS), path)
    before = path.read_bytes()
    result = CliRunner().invoke(app, ["annotate", str(path), "--from", out, "--id-col", "clip_id"])
    assert result.exit_code == 0, result.output
    copy = tmp_path / "clips.saliency.parquet"
    check(pq.read_table(copy), truth)
    assert path.read_bytes() == before  # the user's table is never rewritten
    first = copy.read_bytes()
    again = CliRunner().invoke(app, ["annotate", str(path), "--from", out, "--id-col", "clip_id"])
    assert again.exit_code == 0 and copy.read_bytes() == first
    on_copy = CliRunner().invoke(app, ["annotate", str(copy), "--from", out, "--id-col", "clip_id"])
    assert on_copy.exit_code == 0 and "nothing changed" in on_copy.output


def test_a_missing_id_column_is_a_usage_error(tmp_path, store):
    path = tmp_path / "clips.parquet"
    pq.write_table(pa.table(CLIPS), path)
    result = CliRunner().invoke(app, ["annotate", str(path), "--from", store[0], "--id-col", "video"])
    assert result.exit_code == 2 and "no column 'video'" in result.output


def test_the_clip_table_workflow_reads_a_lance_table_by_bytes():
    from pathlib import Path

    from tased_batch.config import RunConfig, read_config_file

    path = Path(__file__).resolve().parents[1] / "workflows" / "lance-clip-table.yaml"
    config = RunConfig(**read_config_file(str(path))).validate()
    assert config.format == "lance" and config.bytes_col == "mp4" and config.input.endswith(".lance")
