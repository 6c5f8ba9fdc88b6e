"""Stage clocks on one shard without Ray: a slow decoder reads decode-bound, a slow model model-bound.

Delays are injected (a decoder stand-in that sleeps before each chunk; a forward that sleeps
per batch). Tolerance: the model's wait for frames is within 15% (plus 0.5 s of real decoding)
of the injected decoder delay, and the busy fraction is at most 1 - that delay's share of the
wall time (+0.05); with a slow model the busy fraction is at least the injected delay's share
(-0.02) and the forward seconds at least the injected delay.
"""

from __future__ import annotations

import io
import time
from dataclasses import replace

import pytest
import torch

import tased_batch.run.shards as shards
from tased_batch.config import RunConfig
from tased_batch.decode.sources import VideoSource
from tased_batch.decode.streams import FrameChunk
from tased_batch.model.weights import WeightsInfo
from tased_batch.run.runrecords import StageTimes, event_to_dict
from tased_batch.run.timing import TimeBook, judge

from conftest import SMALL

DECODE_DELAY = 2.0  # seconds before each chunk of frames (2 frames a chunk)
MODEL_DELAY = 3.0  # seconds per batch (4 maps a batch)
FRAMES = 8


@pytest.fixture
def processor(tmp_path, tiny_model):
    buffer = io.BytesIO()
    torch.save(tiny_model.state_dict(), buffer)
    info = WeightsInfo(kind="custom", uri="tiny", sha256="0" * 64)
    config = RunConfig(
        input="x",
        output=str(tmp_path / "out"),
        size=f"{SMALL[0]}x{SMALL[1]}",
        weights="tiny",
        reuse="off",  # every window through Engine.forward, which the slow-model test slows down
        batch_size=4,
    ).validate()
    processor = shards.ShardProcessor(config, buffer.getvalue(), info, shards.run_info(config, info, "fp"), threads=1)
    processor.options = replace(processor.options, chunk=2)
    return processor


def _run(processor, videos) -> tuple[TimeBook, list[StageTimes], float]:
    events: list[StageTimes] = []
    book = TimeBook()
    began = time.perf_counter()
    processor.process("000000", videos, progress=lambda e: events.append(e) if isinstance(e, StageTimes) else None)
    wall = time.perf_counter() - began
    for event in events:
        book.add(event, 0.0)
    return book, events, wall


def test_a_slow_decoder_is_reported_decode_bound(processor, make_video):
    video = make_video("a.mp4", n_frames=FRAMES)
    real = processor.producer
    injected = 0.0

    def slow(sources):
        nonlocal injected
        for event in real(sources):
            if isinstance(event, FrameChunk):
                time.sleep(DECODE_DELAY)
                injected += DECODE_DELAY
            yield event

    processor.producer = slow
    book, events, wall = _run(processor, [VideoSource("a", str(video))])
    verdict = book.verdict()
    assert verdict is not None and verdict.limit == "decode"
    assert injected == 4 * DECODE_DELAY
    assert verdict.stages["feed"] == pytest.approx(injected, rel=0.15, abs=0.5)
    covered = sum(e.seconds for e in events)
    assert covered == pytest.approx(wall, rel=0.05)  # the events cover the shard's wall time, once
    assert verdict.model_busy <= 1 - injected / wall + 0.05
    assert "--decode-workers" in verdict.advice
    assert sum(e.frames for e in events) == FRAMES


def test_a_slow_model_is_reported_model_bound(processor, make_video, monkeypatch):
    video = make_video("a.mp4", n_frames=FRAMES)
    forward = processor.engine.forward
    injected = 0.0

    def slow(windows):
        nonlocal injected
        time.sleep(MODEL_DELAY)
        injected += MODEL_DELAY
        return forward(windows)

    monkeypatch.setattr(processor.engine, "forward", slow)
    book, events, wall = _run(processor, [VideoSource("a", str(video))])
    verdict = book.verdict()
    assert verdict is not None and verdict.limit == "model"
    assert injected == 2 * MODEL_DELAY  # 8 maps in batches of 4
    assert verdict.stages["model"] >= injected  # the injected delay plus the real forward
    assert injected / wall - 0.02 <= verdict.model_busy <= 1.0
    assert verdict.model_busy >= 0.6
    assert verdict.stages["feed"] < 0.2 * wall
    assert "--precision" in verdict.advice
    assert event_to_dict(events[-1])["event"] == "stages"  # what --log-json prints


def test_verdicts_name_writing_and_storage():
    write = judge({"feed": 1.0, "model": 2.0, "write_wait": 7.0}, 10.0, 2, 8)
    assert write.limit == "write" and "--store-size" in write.advice
    storage = judge({"feed": 6.0, "fetch": 20.0, "decode": 3.0, "model": 2.0, "commit": 1.0}, 10.0, 2, 8)
    assert storage.limit == "storage"
    decode = judge({"feed": 6.0, "fetch": 1.0, "decode": 30.0, "model": 3.0}, 10.0, 2, 8)
    assert decode.limit == "decode" and "`--decode-workers 4`" in decode.advice and "5 idle CPU" in decode.advice


def test_a_clock_hands_over_each_second_once():
    from tased_batch.core.clocks import StageClock

    def slow_items():
        for item in range(2):
            time.sleep(0.05)
            yield item

    clock = StageClock()
    with clock.time("model"):
        time.sleep(0.05)
    got = []
    for item in clock.timed(slow_items(), "feed"):  # the time waited for each item, not the caller's
        got.append(item)
        time.sleep(0.15)
    first = clock.take()
    assert got == [0, 1]
    assert 0.05 <= first["model"] < 0.15 and 0.1 <= first["feed"] < 0.25
    assert clock.take() == {}
