"""Commit records and progress events are typed records with one serialisation each."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tased_batch import open_results
from tased_batch.core.errors import StoreError
from tased_batch.core.records import VideoResult
from tased_batch.run.progress import JsonLinesReporter
from tased_batch.run.runrecords import ShardCommitted, VideoFinished
from tased_batch.stores import committed_shards, open_shard_writer, read_commit
from tased_batch.stores.commit import CommitRecord

RUN_INFO = {"config_fingerprint": "fp-1", "weights": {"sha256": "0" * 64, "kind": "custom", "uri": "w.pt"}}


def _commit(uri: str, shard: str = "s1") -> CommitRecord:
    rng = np.random.default_rng(0)
    maps = rng.integers(0, 256, (3, 32, 64), dtype=np.uint8)
    ok = VideoResult(
        "clip",
        "/v/clip.mp4",
        n_frames=3,
        fps=30.0,
        width=64,
        height=32,
        duration=0.1,
        frame_indices=np.arange(3),
        timestamps=np.arange(3) / 30.0,
        maps=maps,
    )
    with open_shard_writer(uri, shard, store_size=(16, 32), model_size=(32, 64), run_info=RUN_INFO) as writer:
        writer.write(ok)
        writer.write(VideoResult.failed("gone", "/v/gone.mp4", "missing", "no such file"))
        return writer.commit()


def test_the_record_on_disk_reads_back_equal_and_names_its_files(tmp_path):
    uri = str(tmp_path / "out")
    record = _commit(uri)
    assert read_commit(uri, "s1") == record and committed_shards(uri) == {"s1": record}
    assert record.video_ids == ("clip", "gone") and record.n_videos == 2 and (record.n_ok, record.n_failed) == (1, 1)
    assert [(f.video_id, f.reason) for f in record.failures] == [("gone", "missing")]
    videos = record.file("videos.parquet")
    assert videos is not None and videos.rows == 2
    assert (tmp_path / "out" / videos.path).stat().st_size == videos.bytes
    assert record.file("no-such-file") is None
    stored = json.loads((tmp_path / "out" / "_commits" / "s1.json").read_text())
    assert stored["n_videos"] == 2 and stored["files"][0]["path"].startswith(record.attempt_prefix + "/")
    assert open_results(uri).shards["s1"] == record  # the reader's (index or record) view is the same record


@pytest.mark.parametrize(
    "damage",
    [
        lambda r: r.pop("n_ok"),
        lambda r: r.update(video_ids=["only-one"]),  # n_videos says 2
        lambda r: r.update(files=[{"path": "x"}]),  # no size, no checksum
        lambda r: r.update(model_size=[224]),
    ],
)
def test_a_damaged_record_is_refused_naming_its_file(tmp_path, damage):
    uri = str(tmp_path / "out")
    _commit(uri)
    path = tmp_path / "out" / "_commits" / "s1.json"
    data = json.loads(path.read_text())
    damage(data)
    path.write_text(json.dumps(data))
    with pytest.raises(StoreError) as err:
        read_commit(uri, "s1")
    assert "s1.json" in str(err.value) and "redo that shard" in str(err.value)


def test_a_record_of_another_version_is_refused(tmp_path):
    uri = str(tmp_path / "out")
    _commit(uri)
    path = tmp_path / "out" / "_commits" / "s1.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "version": 2}))
    with pytest.raises(StoreError, match="not a tased-batch v1 record"):
        read_commit(uri, "s1")


def test_progress_lines_are_one_serialisation_per_event(tmp_path, capsys):
    record = _commit(str(tmp_path / "out"))
    reporter = JsonLinesReporter(total_shards=1, total_videos=2)
    reporter.video(VideoFinished("s1", "clip", "ok", frames=3, source="/v/clip.mp4", traceback="never shown"))
    reporter.video(
        VideoFinished("s1", "gone", "failed", reason="missing", error="GET https://h/x?X-Amz-Signature=abc123 failed")
    )
    reporter.shard_done(ShardCommitted("s1", record, 1.23456))
    reporter.video_timeout("s1", "slow", 61.04)
    reporter.note("waiting for the lease")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines] == ["video", "video", "shard", "video_timeout", "note"]
    assert "traceback" not in lines[0] and lines[0]["frames"] == 3
    assert "abc123" not in json.dumps(lines[1]) and lines[1]["reason"] == "missing"
    assert {k: lines[2][k] for k in ("shard", "videos", "failed", "maps", "seconds")} == {
        "shard": "s1",
        "videos": 2,
        "failed": 1,
        "maps": 3,
        "seconds": 1.235,
    }
    assert lines[3]["video_id"] == "slow" and lines[3]["seconds"] == 61.0
    assert lines[2]["totals"]["shards_done"] == 1 and lines[2]["totals"]["videos_failed"] == 1
