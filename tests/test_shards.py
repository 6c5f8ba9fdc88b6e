"""One shard without Ray: retries of transient errors, recorded skips, nothing committed on failure."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import tased_batch.shards as shards
from tased_batch import open_results
from tased_batch.config import RunConfig
from tased_batch.records import VideoResult
from tased_batch.sources import VideoSource
from tased_batch.stores import committed_shards
from tased_batch.weights import WeightsInfo

from conftest import SMALL


@pytest.fixture
def processor(tmp_path, tiny_model):
    buffer = io.BytesIO()
    torch.save(tiny_model.state_dict(), buffer)
    info = WeightsInfo(kind="custom", uri="tiny", sha256="0" * 64)
    config = RunConfig(input="x", output=str(tmp_path / "out"), size=f"{SMALL[0]}x{SMALL[1]}", weights="tiny").validate()
    return shards.ShardProcessor(config, buffer.getvalue(), info, shards.run_info(config, info, "fp"), threads=1)


def test_transient_errors_are_retried(processor, make_video, monkeypatch):
    video = make_video("a.mp4", n_frames=33)
    real = shards.predict_video
    calls = []

    def flaky(source, *args, **kwargs):
        calls.append(source.video_id)
        if len(calls) < 3:
            return VideoResult.failed(source.video_id, source.uri, "io-error", "connection reset")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(shards, "predict_video", flaky)
    monkeypatch.setattr(shards, "_sleep", lambda seconds: None)
    record = processor.process("000000", [VideoSource("a", str(video))])
    assert calls == ["a", "a", "a"]
    assert record["n_ok"] == 1 and record["n_maps"] == 33


def test_permanent_errors_are_not_retried_and_skips_are_recorded(processor, make_video, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"")
    good = make_video("g.mp4", n_frames=10)
    events = []
    record = processor.process(
        "000001",
        [VideoSource("bad", str(bad)), VideoSource("crashy", str(good)), VideoSource("g", str(good))],
        skip={"crashy": "the worker died 2 times while processing this video"},
        progress=events.append,
    )
    assert record["n_ok"] == 1 and record["n_failed"] == 2
    reasons = {f["video_id"]: f["reason"] for f in record["failures"]}
    assert reasons["crashy"] == "worker-crash" and reasons["bad"] != "io-error"
    assert [e["video_id"] for e in events if e["event"] == "video"] == ["bad", "crashy", "g"]
    res = open_results(processor.config.output)
    np.testing.assert_array_equal(res.frame_indices("g"), np.arange(10))


def test_a_failing_write_leaves_the_shard_uncommitted(processor, make_video, monkeypatch):
    video = make_video("a.mp4", n_frames=5)

    def broken_write(self, result):
        raise OSError("disk full")

    monkeypatch.setattr("tased_batch.stores.base.ShardWriter.write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        processor.process("000002", [VideoSource("a", str(video))])
    assert committed_shards(processor.config.output) == {}
