"""One shard without Ray: retries of transient errors, recorded skips, nothing committed on failure."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import tased_batch.run.shards as shards
from tased_batch import open_results
from tased_batch.config import RunConfig
from tased_batch.decode.sources import VideoSource
from tased_batch.decode.streams import StreamFailed
from tased_batch.model.weights import WeightsInfo
from tased_batch.run.runrecords import VideoFinished
from tased_batch.stores import committed_shards

from conftest import SMALL


@pytest.fixture
def processor(tmp_path, tiny_model):
    buffer = io.BytesIO()
    torch.save(tiny_model.state_dict(), buffer)
    info = WeightsInfo(kind="custom", uri="tiny", sha256="0" * 64)
    config = RunConfig(
        input="x", output=str(tmp_path / "out"), size=f"{SMALL[0]}x{SMALL[1]}", weights="tiny"
    ).validate()
    return shards.ShardProcessor(config, buffer.getvalue(), info, shards.run_info(config, info, "fp"), threads=1)


def test_transient_errors_are_retried(processor, make_video, monkeypatch):
    video = make_video("a.mp4", n_frames=33)
    real = processor.producer
    calls = []

    def flaky(sources):
        calls.append([s.video_id for s in sources])
        if len(calls) < 3:  # the video cannot be fetched at first: a lone failure (key = index)
            return iter([StreamFailed(0, "io-error", "connection reset")])
        return real(sources)

    processor.producer = flaky
    monkeypatch.setattr(shards, "_sleep", lambda seconds: None)
    record = processor.process("000000", [VideoSource("a", str(video))]).record
    assert calls == [["a"], ["a"], ["a"]]
    assert record.n_ok == 1 and record.n_maps == 33


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
    ).record
    assert record.n_ok == 1 and record.n_failed == 2
    reasons = {f.video_id: f.reason for f in record.failures}
    assert reasons["crashy"] == "worker-crash" and reasons["bad"] != "io-error"
    # one "video" event each, in the order they finish (a skip is known at once)
    assert sorted(e.video_id for e in events if isinstance(e, VideoFinished)) == ["bad", "crashy", "g"]
    assert record.video_ids == ("bad", "crashy", "g")  # the shard's table keeps the given order
    res = open_results(processor.config.output)
    np.testing.assert_array_equal(res.frame_indices("g"), np.arange(10))


def test_a_failing_write_leaves_the_shard_uncommitted(processor, make_video, monkeypatch):
    video = make_video("a.mp4", n_frames=5)

    def broken_append(self, *args):
        raise OSError("disk full")

    monkeypatch.setattr("tased_batch.stores.base.VideoSink.append", broken_append)
    with pytest.raises(OSError, match="disk full"):
        processor.process("000002", [VideoSource("a", str(video))])
    assert committed_shards(processor.config.output) == {}


def test_segments_of_a_long_video_are_put_back_in_order_and_failures_stay_per_video(tmp_path, make_video):
    """A producer that splits a video into segments finishing out of order, plus one that fails midway."""
    from tased_batch.decode.streams import FrameChunk, StreamEnd, StreamStart
    from tased_batch.engine.engine import Engine, window_end, window_start
    from tased_batch.run.pipeline import serial_streams
    from tased_batch.stores.summaries import FRAME_COLUMNS, frame_stats, frame_stats_numpy

    from conftest import WindowProbe

    config = RunConfig(
        input="x", output=str(tmp_path / "out"), size=f"{SMALL[0]}x{SMALL[1]}", weights="tiny"
    ).validate()
    info = WeightsInfo(kind="custom", uri="probe", sha256="0" * 64)
    engine = Engine(WindowProbe(), batch_size=3, channels_last=False, map_stats=frame_stats)  # as engine_for builds it
    processor = shards.ShardProcessor.with_engine(config, engine, shards.run_info(config, info, "fp"))
    long, broken = make_video("long.mp4", n_frames=100), make_video("broken.mp4", n_frames=50, seed=2)

    def split(sources):
        whole = list(serial_streams(sources, SMALL))
        starts = {e.key: e for e in whole if isinstance(e, StreamStart)}
        frames = {
            k: np.concatenate([e.frames for e in whole if isinstance(e, FrameChunk) and e.key == k]) for k in starts
        }
        events, tails = [], []
        for key, start in starts.items():
            parts = np.array_split(start.targets, 2)
            for segment, chosen in enumerate(parts):
                first = window_start(int(chosen[0]))
                last = len(start.sampling.sequence) if segment else max(window_end(int(t)) for t in chosen) + 1
                skey = key * 10 + segment
                events.append(
                    StreamStart(
                        skey, start.video_id, start.source, start.info, start.sampling, chosen, first, last, segment, 2
                    )
                )
                body = [FrameChunk(skey, first, frames[key][first:last])]
                if sources[key].video_id == "broken" and segment == 1:
                    body.append(StreamFailed(skey, "decode-error", "corrupt packet"))
                else:
                    body.append(StreamEnd(skey))
                tails.append(body)
        for body in reversed(tails):  # second segments first
            events.extend(body)
        return iter(events)

    processor.producer = split
    record = processor.process("000009", [VideoSource("long", str(long)), VideoSource("broken", str(broken))]).record
    assert record.n_ok == 1 and record.failures[0].video_id == "broken", record.failures
    res = open_results(config.output)
    np.testing.assert_array_equal(res.frame_indices("long"), np.arange(100))
    from tased_batch.run.pipeline import predict_video
    from tased_batch.stores import default_store_size
    from tased_batch.stores.resample import resize_maps

    alone = predict_video(str(long), processor.engine, size=SMALL)
    store = config.store_shape or default_store_size(SMALL)
    np.testing.assert_array_equal(res.maps("long"), resize_maps(alone.maps, store))
    # The statistics of the held (second) segment come with its maps from the engine, at model size,
    # not from the store-size maps it waited as; the failed video leaves no statistics behind.
    stats, expected = res.frame_stats("long"), frame_stats_numpy(alone.maps)
    np.testing.assert_array_equal(stats["frame_index"].to_numpy(), np.arange(100))
    for column in FRAME_COLUMNS:
        np.testing.assert_allclose(stats[column.name].to_numpy(), expected[column.name], rtol=1e-5, atol=1e-6)
    assert res.frame_stats("broken").num_rows == 0
    rows = {row["video_id"]: row for row in res.videos().to_pylist()}
    assert rows["long"]["focus"] is not None and rows["broken"]["focus"] is None


def test_decode_workers_feed_the_engine_with_the_same_maps(tmp_path, tiny_model, make_video):
    """--decode-workers N: worker processes decode (a long video in segments); maps equal in-thread decoding."""
    buffer = io.BytesIO()
    torch.save(tiny_model.state_dict(), buffer)
    info = WeightsInfo(kind="custom", uri="tiny", sha256="0" * 64)
    size = f"{SMALL[0]}x{SMALL[1]}"
    sources = [
        VideoSource("long", str(make_video("long.mp4", n_frames=150))),
        VideoSource("short", str(make_video("short.mp4", n_frames=20))),
        VideoSource("bad", str(tmp_path / "missing.mp4")),
    ]
    maps = {}
    for workers in (0, 2):
        config = RunConfig(
            input="x",
            output=str(tmp_path / f"out{workers}"),
            size=size,
            weights="tiny",
            decode_workers=workers,
            reuse="off",  # identical bits across segment cuts is the plain path's (reuse: within 1 grey level)
        ).validate()
        processor = shards.ShardProcessor(
            config, buffer.getvalue(), info, shards.run_info(config, info, "fp"), threads=1
        )
        assert processor.decode_workers == workers
        if workers:  # segments small enough that the long video is split across workers
            real_feed = processor._feed

            def small_segments(videos, real_feed=real_feed):
                from tased_batch.decode import feed

                original = feed.DecodeFeed.__init__

                def init(self, *args, **kwargs):
                    original(self, *args, **{**kwargs, "segment": 64})

                feed.DecodeFeed.__init__ = init
                try:
                    return real_feed(videos)
                finally:
                    feed.DecodeFeed.__init__ = original

            processor.producer = small_segments
        record = processor.process("000000", sources).record
        assert record.n_ok == 2 and record.n_failed == 1
        results = open_results(str(tmp_path / f"out{workers}"))
        maps[workers] = {v: results.maps(v, size="stored") for v in ("long", "short")}
        assert list(results.frame_indices("long")) == list(range(150))
    for video in ("long", "short"):
        assert np.array_equal(maps[0][video], maps[2][video])
    assert shards.decode_workers("auto", "cpu", 8) == 0 and shards.decode_workers("auto", "cuda:0", 8) == 7


def test_an_actor_reports_progress_while_a_video_delivers_maps(processor, make_video, monkeypatch):
    """The executor restarts a video's deadline on these: a long video on a slow device is not a hang."""
    from tased_batch.run.runrecords import StageTimes, VideoProgress, VideoStarted

    monkeypatch.setattr(shards, "PROGRESS_EVERY", 0.0)
    video = make_video("long.mp4", n_frames=40)
    events = []
    done = processor.process("000003", [VideoSource("long", str(video))], progress=events.append)
    assert isinstance(events[-1], StageTimes)  # the shard's last stage times (its commit included) close it
    events = [e for e in events if not isinstance(e, StageTimes)]
    assert isinstance(events[0], VideoStarted) and isinstance(events[-1], VideoFinished)
    progress = [e for e in events if isinstance(e, VideoProgress)]
    assert progress and all(e.shard == "000003" and e.video_id == "long" for e in progress)
    counts = [e.maps for e in progress]
    assert counts == sorted(counts) and counts[-1] == done.record.n_maps == 40


def test_decode_workers_outlive_a_shard_and_serve_the_next(tmp_path, tiny_model, make_video):
    """The next shard decodes at once: the processor's feed reuses the workers the last shard left idle."""
    buffer = io.BytesIO()
    torch.save(tiny_model.state_dict(), buffer)
    info = WeightsInfo(kind="custom", uri="tiny", sha256="0" * 64)
    config = RunConfig(
        input="x", output=str(tmp_path / "out"), size=f"{SMALL[0]}x{SMALL[1]}", weights="tiny", decode_workers=1
    ).validate()
    processor = shards.ShardProcessor(config, buffer.getvalue(), info, shards.run_info(config, info, "fp"), threads=1)
    try:
        clips = [make_video(f"c{i}.mp4", n_frames=12 + i) for i in range(2)]
        first = processor.process("000000", [VideoSource("c0", str(clips[0]))]).record
        [worker] = [d.proc.pid for d in processor._pool._idle]
        second = processor.process("000001", [VideoSource("c1", str(clips[1]))]).record
        assert [d.proc.pid for d in processor._pool._idle] == [worker]
        assert (first.n_maps, second.n_maps) == (12, 13)
        res = open_results(config.output)
        np.testing.assert_array_equal(res.frame_indices("c1"), np.arange(13))
    finally:
        processor.close()
    assert len(processor._pool) == 0
