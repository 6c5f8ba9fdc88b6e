"""The decode feed: the frames it delivers are the reader's, long videos split into exact
segments, bad and hanging videos fail alone, memory stays bounded, workers are recycled and
die with their consumer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tased_batch.decode import open_video, sample_frames
from tased_batch.decode.feed import DecodeFeed, DecoderPool
from tased_batch.decode.streams import FrameChunk, StreamEnd, StreamFailed, StreamStart

SIZE = (32, 64)


def _collect(feed) -> dict:
    """Per video: starts, delivered frames by position, and how each stream ended."""
    starts: dict[int, StreamStart] = {}
    frames: dict[int, dict[int, np.ndarray]] = {}
    ends: dict[int, object] = {}
    for event in feed:
        if isinstance(event, StreamStart):
            assert event.key not in starts
            starts[event.key] = event
            frames[event.key] = {}
        elif isinstance(event, FrameChunk):
            assert event.key in starts and event.key not in ends
            got = frames[event.key]
            expected_next = starts[event.key].first + sum(len(f) for f in got.values())
            assert event.start == expected_next, "chunks of a stream arrive in position order"
            got[event.start] = np.asarray(event.frames)
        else:
            assert isinstance(event, (StreamEnd, StreamFailed)) and event.key in starts and event.key not in ends
            ends[event.key] = event
    assert set(ends) == set(starts), "every stream ends"
    videos: dict[str, list] = {}
    for key, start in starts.items():
        delivered = np.concatenate(list(frames[key].values())) if frames[key] else np.zeros((0, *SIZE, 3), np.uint8)
        videos.setdefault(start.video_id, []).append((start, delivered, ends[key]))
    return videos


def _reference(path, **sampling) -> tuple[np.ndarray, np.ndarray]:
    with open_video(str(path), SIZE) as reader:
        s = sample_frames(reader.info, **sampling)
        return np.concatenate(list(reader.iter_frames(s.sequence))), s.targets


@pytest.mark.parametrize("workers", [0, 2])
def test_feed_delivers_the_readers_frames_and_splits_long_videos_exactly(make_video, tmp_path, workers):
    clips = [make_video(f"c{i}.mp4", n_frames=n, seed=i) for i, n in enumerate([40, 12, 230])]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 50)
    sources = [str(clips[0]), str(bad), str(clips[1]), str(clips[2])]
    with DecodeFeed(sources, SIZE, workers=workers, chunk=16, segment=64, every=3) as feed:
        videos = _collect(feed)
    [(start, delivered, end)] = videos["bad"]
    assert isinstance(end, StreamFailed) and end.reason == "not-video" and "bad.mp4" in end.error
    assert start.info.n_frames == 0 and len(delivered) == 0
    for path in clips:
        reference, targets = _reference(path, every=3)
        parts = sorted(videos[path.stem], key=lambda p: p[0].segment)
        assert all(isinstance(end, StreamEnd) for _, _, end in parts)
        assert [p[0].segment for p in parts] == list(range(len(parts))) and parts[0][0].segments == len(parts)
        assert np.array_equal(np.concatenate([p[0].targets for p in parts]), targets), "each map exactly once"
        for start, delivered, _ in parts:
            assert np.array_equal(delivered, reference[start.first : start.last])
            for t in start.targets:  # every window of the segment's targets lies in what it delivered
                lo, hi = (t - 31, t) if t >= 31 else (t, t + 31)
                assert (len(reference) < 63 and start.first == 0 and start.last == len(reference)) or (
                    start.first <= lo and hi < start.last
                )
    assert len(videos["c2"]) == 4  # 230 positions, 64 per segment
    assert len(videos["c0"]) == 1 and len(videos["c1"]) == 1  # short videos are never split


def test_slow_consumer_keeps_few_chunks_alive(make_video):
    """Decoders block when the consumer does not read: chunks in flight stay bounded."""
    clips = [make_video(f"c{i}.mp4", n_frames=160, size=(144, 256), seed=i) for i in range(2)]
    size = (128, 256)  # 16 frames = 1.5 MB a chunk, far over a pipe's buffer
    with DecodeFeed([str(c) for c in clips], size, workers=2, chunk=16, segment=10_000) as feed:
        chunks = 0
        for event in feed:
            if isinstance(event, FrameChunk):
                chunks += 1
                time.sleep(0.05)
    assert chunks == 20
    assert feed.peak_buffered <= 2  # one chunk per worker at most waits in this process


def test_a_fifo_is_failed_at_once_and_the_rest_complete(make_video, tmp_path):
    clip = make_video("ok.mp4", n_frames=20)
    fifo = tmp_path / "hangs.mp4"
    os.mkfifo(fifo)  # nobody writes: opening it would block forever
    began = time.monotonic()
    with DecodeFeed([str(fifo), str(clip)], SIZE, workers=1, video_timeout=30) as feed:
        videos = _collect(feed)
    assert time.monotonic() - began < 20  # refused by its file type, not after the 30 s timeout
    [(_, _, end)] = videos["hangs"]
    assert isinstance(end, StreamFailed) and end.reason == "not-regular" and "hangs.mp4" in end.error
    [(_, delivered, end)] = videos["ok"]
    assert isinstance(end, StreamEnd) and len(delivered) == 20


def test_workers_are_recycled(make_video):
    clips = [make_video(f"c{i}.mp4", n_frames=8, seed=i) for i in range(5)]
    with DecodeFeed([str(c) for c in clips], SIZE, workers=1, max_videos_per_worker=2) as feed:
        videos = _collect(feed)
    assert len(videos) == 5 and all(isinstance(parts[0][2], StreamEnd) for parts in videos.values()), [
        p[0][2] for p in videos.values()
    ]
    assert feed.decoders_started == 3


def _watched(feed: DecodeFeed) -> tuple[dict, set[int]]:
    """``_collect`` of a feed, and the worker processes it used."""
    pids: set[int] = set()

    def events():
        for event in feed:
            pids.update(feed.worker_pids())
            yield event

    return _collect(events()), pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie (exited, not yet reaped) is not alive
        return fh.read().split(") ", 1)[1][0] != "Z"


def test_a_pool_keeps_idle_workers_between_feeds_and_their_frames_are_the_same(make_video, tmp_path):
    """A shard processor's next shard decodes at once: its feed reuses the previous feed's idle workers."""
    clips = [str(make_video(f"p{i}.mp4", n_frames=40, seed=i)) for i in range(3)]
    pool = DecoderPool()
    try:
        first = DecodeFeed(clips[:2], SIZE, workers=2, pool=pool)
        pids = _watched(first)[1]
        assert len(pids) == 2 and len(pool) == 2 and all(_alive(p) for p in pids)
        second = DecodeFeed(clips, SIZE, workers=2, pool=pool, max_videos_per_worker=10)
        pooled, again = _watched(second)
        assert again == pids and second.decoders_started == 2
        alone = _collect(DecodeFeed(clips, SIZE, workers=0))
        for video_id, parts in alone.items():
            np.testing.assert_array_equal(pooled[video_id][0][1], parts[0][1])
        hung = tmp_path / "hung.mp4"
        os.mkfifo(hung)  # a feed closed while a worker is busy: that worker is killed, not pooled
        feed = DecodeFeed([str(hung)], SIZE, workers=1, pool=pool)
        feed._start_decoder()  # the first steps of iterating, without blocking on the video
        feed._feed_decoders()
        [busy] = feed.worker_pids()
        assert busy in pids and len(pool) == 1
        feed.close()
        assert len(pool) == 1 and not _alive(busy)
    finally:
        pool.close()
    assert len(pool) == 0 and not any(_alive(p) for p in pids)


def test_workers_die_with_their_consumer(tmp_path):
    """Ray SIGKILLs actors: their decode workers must not live on."""
    fifo = tmp_path / "hangs.mp4"
    os.mkfifo(fifo)
    code = textwrap.dedent(f"""
        import sys
        from tased_batch.decode.feed import DecodeFeed, DecoderPool
        feed = DecodeFeed([{str(fifo)!r}], (32, 64), workers=1)
        events = iter(feed)
        import threading
        threading.Thread(target=lambda: next(events), daemon=True).start()
        import time
        while not feed.worker_pids():
            time.sleep(0.05)
        print(feed.worker_pids()[0], flush=True)
        time.sleep(60)
    """)
    consumer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(consumer.stdout.readline())
        os.kill(worker, 0)  # alive
        ring = f"tased-feed-{consumer.pid}-"
        up = time.monotonic() + 30
        while [n for n in os.listdir("/dev/shm") if n.startswith(ring)] and time.monotonic() < up:
            time.sleep(0.1)  # the worker maps its shared-memory ring, then unlinks the file
        consumer.send_signal(signal.SIGKILL)
        consumer.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(worker, signal.SIGKILL)
            pytest.fail("the decode worker outlived its consumer")
        assert not [n for n in os.listdir("/dev/shm") if n.startswith(ring)], "nothing is left in /dev/shm"
    finally:
        consumer.kill()


def test_objects_are_prefetched_and_shared_by_segments(s3, make_video, tmp_path, monkeypatch):
    from tased_batch.decode import SPOOL_DIR_ENV, _Spool

    spool = tmp_path / "spool"
    monkeypatch.setenv(SPOOL_DIR_ENV, str(spool))
    monkeypatch.setattr(_Spool, "_dir", None)
    fs, bucket = s3["fs"], s3["bucket"]
    long_clip = make_video("long.mp4", n_frames=200)
    short = make_video("short.mp4", n_frames=30, seed=1)
    for clip in (long_clip, short):
        fs.put(str(clip), f"{bucket}/v/{clip.name}")
    uris = [f"s3://{bucket}/v/long.mp4", f"s3://{bucket}/v/gone.mp4", f"s3://{bucket}/v/short.mp4"]
    with DecodeFeed(uris, SIZE, workers=2, chunk=32, segment=64, storage_options=s3["storage_options"]) as feed:
        videos = _collect(feed)
    assert isinstance(videos["gone"][0][2], StreamFailed) and videos["gone"][0][2].reason == "missing"
    for clip in (long_clip, short):
        reference, _ = _reference(clip)
        parts = videos[clip.stem]
        assert all(isinstance(end, StreamEnd) for _, _, end in parts)
        for start, delivered, _ in parts:
            assert start.source.startswith("s3://") and np.array_equal(delivered, reference[start.first : start.last])
    assert len(videos["long"]) == 3
    assert not list(spool.rglob("*.mp4")), "spooled copies are removed when their last segment is done"


def test_bench_feed_prints_one_json_object(tmp_path, monkeypatch):
    import json
    import tempfile

    from typer.testing import CliRunner

    from tased_batch.cli.main import app

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the synthesised workloads go there
    done = CliRunner().invoke(
        app, ["bench", "--feed", "--json", "--size", "32x64", "--feed-clips", "3", "--feed-long-frames", "64"]
    )
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout.strip().splitlines()[-1])
    points = {(p["workload"], p["decode_workers"], p["decoder_threads"]) for p in result["feed"]}
    assert points == {(w, n, t) for w in ("long", "clips") for n, t in ((1, 1), (2, 1), (1, 0))}
    assert all(p["frames_per_s"] > 0 for p in result["feed"]) and result["clip_overhead_ms"] >= 0


def test_frames_travel_through_the_pipe_where_shared_memory_is_missing(make_video, tmp_path, monkeypatch):
    from tased_batch.decode import feed as feed_module

    monkeypatch.setattr(feed_module, "SHM_DIR", str(tmp_path / "no-shm"))
    clip = make_video("c.mp4", n_frames=40)
    with DecodeFeed([str(clip)], SIZE, workers=1, chunk=16) as feed:
        videos = _collect(feed)
    [(_, delivered, end)] = videos["c"]
    assert isinstance(end, StreamEnd) and np.array_equal(delivered, _reference(clip)[0])
