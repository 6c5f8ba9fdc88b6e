"""Windows across streams: batches mix videos and segments, maps stay those of each video alone."""

import numpy as np
import pytest
import torch

from tased_batch.decode import Sampling, VideoInfo
from tased_batch.decode.sample import synthetic_frames
from tased_batch.decode.streams import FrameChunk, StreamEnd, StreamFailed, StreamStart
from tased_batch.engine.engine import Engine, window_end, window_start
from tased_batch.engine.streams import MapBatch, StreamDone

from conftest import SMALL, WindowProbe


def segment_streams(key, video_id, frames, parts, targets=None):
    """Events of one video split at target indices ``parts`` (a list of target counts), one list per stream."""
    n = len(frames)
    sampling = Sampling(
        np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64) if targets is None else targets, 30.0
    )
    info = VideoInfo(n_frames=n, fps=30.0, width=SMALL[1], height=SMALL[0], duration=n / 30)
    bounds = np.cumsum([0, *parts])
    assert bounds[-1] == len(sampling.targets)
    streams = []
    for s, (a, b) in enumerate(zip(bounds, bounds[1:])):
        chosen = sampling.targets[a:b]
        first = window_start(int(chosen[0]))
        last = n if len(parts) == 1 else max(window_end(int(t)) for t in chosen) + 1
        start = StreamStart(key + s, video_id, video_id, info, sampling, chosen, first, last, s, len(parts))
        streams.append((start, frames[first:last], first))
    return streams


def interleave(streams, chunk_sizes=(5, 8, 3), fail=None):
    """Round-robin the streams' chunks (sizes cycling), starts first; ``fail``: key -> position to fail at."""
    events = [start for start, _, _ in streams]
    cursors = [0] * len(streams)
    turn = 0
    live = set(range(len(streams)))
    while live:
        for i in sorted(live):
            start, frames, first = streams[i]
            size = chunk_sizes[turn % len(chunk_sizes)]
            turn += 1
            if fail and start.key in fail and cursors[i] >= fail[start.key]:
                events.append(StreamFailed(start.key, "decode-error", "broken bytes"))
                live.discard(i)
                continue
            piece = frames[cursors[i] : cursors[i] + size]
            if len(piece):
                events.append(FrameChunk(start.key, first + cursors[i], piece))
                cursors[i] += len(piece)
            if cursors[i] >= len(frames):
                events.append(StreamEnd(start.key))
                live.discard(i)
    return events


def collect(engine, events):
    maps, extras, done, batch_sizes = {}, {}, {}, []
    original = engine.forward
    engine.forward = lambda w: batch_sizes.append(len(w)) or original(w)
    for out in engine.run_streams(events):
        if isinstance(out, MapBatch):
            assert out.key not in done, "maps after the stream's StreamDone"
            maps.setdefault(out.key, []).append((out.positions, out.maps))
            for name, value in out.extras.items():
                extras.setdefault((out.key, name), []).append(value)
        else:
            assert isinstance(out, StreamDone) and out.key not in done
            done[out.key] = out
    engine.forward = original
    return maps, extras, done, batch_sizes


def mixed_videos():
    return {
        "one": synthetic_frames(1, *SMALL, seed=1),
        "twenty": synthetic_frames(20, *SMALL, seed=2),
        "forty": synthetic_frames(40, *SMALL, seed=3),
        "long": synthetic_frames(150, *SMALL, seed=4),
    }


def mixed_streams(videos):
    streams = []
    streams += segment_streams(0, "one", videos["one"], [1])
    streams += segment_streams(10, "long", videos["long"], [50, 60, 40])  # 3 overlapping segments
    streams += segment_streams(20, "twenty", videos["twenty"], [20])
    streams += segment_streams(30, "forty", videos["forty"], [40])
    return streams


def video_maps(maps, keys):
    """A video's maps from its segment streams, in order; checks positions are consecutive."""
    positions = np.concatenate([p for key in keys for p, _ in maps[key]])
    assert np.array_equal(positions, np.arange(len(positions)))
    return np.concatenate([m for key in keys for _, m in maps[key]])


def test_mixed_short_and_segmented_videos_equal_each_video_alone():
    engine = Engine(WindowProbe(), batch_size=3, channels_last=False)
    videos = mixed_videos()
    maps, _, done, sizes = collect(engine, interleave(mixed_streams(videos)))
    assert all(d.ok for d in done.values()) and sorted(done) == [0, 10, 11, 12, 20, 30]
    for name, keys in {"one": [0], "long": [10, 11, 12], "twenty": [20], "forty": [30]}.items():
        alone = engine.predict(videos[name], chunk=16)
        np.testing.assert_array_equal(video_maps(maps, keys), alone, err_msg=name)
    total = 1 + 150 + 20 + 40
    assert sizes == [3] * (total // 3) + ([total % 3] if total % 3 else [])  # full except the very end


@pytest.mark.parametrize("channels_last", [False, True])
def test_tased_net_maps_do_not_depend_on_the_batch_they_share(tiny_model, channels_last):
    """The real network on the CPU: a window's map is the same bits whatever else is in its batch.

    Few windows (the real net is slow here): a 1-frame clip, 3 targets of a 20-frame clip and 4
    targets of a 100-frame video in two segments, against each video alone at the same batch size.
    The plain path (``reuse="off"``); window reuse shares features within a stream and is held to
    the plain maps within 1 grey level in tests/test_reuse.py.
    """
    engine = Engine(tiny_model, batch_size=3, channels_last=channels_last, reuse="off")
    short, clip, long = (synthetic_frames(n, *SMALL, seed=n) for n in (1, 20, 100))
    clip_targets, long_targets = np.array([0, 7, 19]), np.arange(0, 100, 25)
    streams = segment_streams(0, "short", short, [1])
    streams += segment_streams(1, "clip", clip, [3], targets=clip_targets)
    streams += segment_streams(2, "long", long, [2, 2], targets=long_targets)
    maps, _, done, sizes = collect(engine, interleave(streams, chunk_sizes=(16, 7)))
    assert all(d.ok for d in done.values()) and sizes == [3, 3, 2]
    np.testing.assert_array_equal(np.concatenate([m for _, m in maps[0]]), engine.predict(short))
    np.testing.assert_array_equal(np.concatenate([m for _, m in maps[1]]), engine.predict(clip, clip_targets))
    got = np.concatenate([m for key in (2, 3) for _, m in maps[key]])
    np.testing.assert_array_equal(got, engine.predict(long, long_targets))


def test_targets_every_n_across_segments_and_stats_per_row():
    frames = synthetic_frames(130, *SMALL, seed=6)
    targets = np.arange(0, 130, 7, dtype=np.int64)

    def stats(maps):
        return {"peak": maps.amax(dim=(1, 2)), "mean": maps.float().mean(dim=(1, 2))}

    engine = Engine(WindowProbe(), batch_size=4, channels_last=False, map_stats=stats)
    streams = segment_streams(0, "v", frames, [6, 6, len(targets) - 12], targets=targets)
    streams += segment_streams(5, "w", synthetic_frames(25, *SMALL, seed=7), [25])
    maps, extras, done, _ = collect(engine, interleave(streams, chunk_sizes=(9, 4)))
    assert all(d.ok for d in done.values())
    got = np.concatenate([m for key in (0, 1, 2) for _, m in maps[key]])
    positions = np.concatenate([p for key in (0, 1, 2) for p, _ in maps[key]])
    np.testing.assert_array_equal(positions, targets)
    np.testing.assert_array_equal(got, engine.predict(frames, targets=targets))
    for key in (0, 1, 2, 5):
        own = np.concatenate([m for _, m in maps[key]])
        np.testing.assert_array_equal(np.concatenate(extras[(key, "peak")]), own.max(axis=(1, 2)))
        np.testing.assert_allclose(np.concatenate(extras[(key, "mean")]), own.mean(axis=(1, 2)), rtol=1e-5)


def test_a_failed_stream_does_not_disturb_the_others():
    engine = Engine(WindowProbe(), batch_size=3, channels_last=False)
    videos = mixed_videos()
    maps, _, done, _ = collect(engine, interleave(mixed_streams(videos), fail={11: 20, 20: 5}))
    assert not done[11].ok and done[11].reason == "decode-error" and done[11].error == "broken bytes"
    assert not done[20].ok and done[20].reason == "decode-error"
    assert all(done[k].ok for k in (0, 10, 12, 30))
    np.testing.assert_array_equal(video_maps(maps, [30]), engine.predict(videos["forty"]))
    np.testing.assert_array_equal(video_maps(maps, [0]), engine.predict(videos["one"]))
    np.testing.assert_array_equal(np.concatenate([m for _, m in maps[12]]), engine.predict(videos["long"])[110:])


def test_streams_cut_short_are_truncated():
    engine = Engine(WindowProbe(), batch_size=2, channels_last=False)
    frames = synthetic_frames(100, *SMALL, seed=9)
    (seg0, f0, _), (seg1, f1, first1) = segment_streams(0, "v", frames, [50, 50])
    events = [seg0, seg1, FrameChunk(0, 0, f0), StreamEnd(0), FrameChunk(1, first1, f1[:40]), StreamEnd(1)]
    maps, _, done, _ = collect(engine, events)
    assert done[0].ok and not done[1].ok and done[1].reason == "truncated"
    assert "only" in done[1].error and "of 50" in done[1].error
    # the input itself stops before a stream's end: truncated too, and nothing hangs
    _, _, done, _ = collect(engine, [seg0, FrameChunk(0, 0, f0[:30])])
    assert done[0].reason == "truncated"


def test_buffers_stay_bounded_per_stream():
    engine = Engine(WindowProbe(), batch_size=2, channels_last=False)
    sizes = []
    original = engine._compute

    def spy(groups):
        sizes.extend(stream.buffer.shape[1] for stream, _ in groups)
        return original(groups)

    engine._compute = spy
    frames = synthetic_frames(400, *SMALL, seed=10)
    streams = segment_streams(0, "a", frames, [400]) + segment_streams(1, "b", frames, [400])
    collect(engine, interleave(streams, chunk_sizes=(8,)))
    assert max(sizes) <= 63 + 8


def test_chunks_already_on_the_device_are_used_as_they_are():
    engine = Engine(WindowProbe(), batch_size=2, channels_last=False)
    frames = synthetic_frames(40, *SMALL, seed=11)
    ((start, _, _),) = segment_streams(0, "t", frames, [40])
    events = [start, FrameChunk(0, 0, torch.from_numpy(frames[:17])), FrameChunk(0, 17, frames[17:]), StreamEnd(0)]
    maps, _, done, _ = collect(engine, events)
    assert done[0].ok
    np.testing.assert_array_equal(np.concatenate([m for _, m in maps[0]]), engine.predict(frames))
