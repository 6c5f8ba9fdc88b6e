"""Window reuse (engine/reuse.py) gives the plain path's maps at a fraction of its work."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import tased_batch.engine.engine as engine_module
from tased_batch.decode.sample import synthetic_frames
from tased_batch.decode.sampling import Sampling, VideoInfo
from tased_batch.decode.streams import FrameChunk, StreamEnd, StreamStart
from tased_batch.engine.engine import Engine, MapBatch, normalise, window_end, window_start
from tased_batch.engine.reuse import SequenceCache, Stages, assemble
from tased_batch.model import WINDOW
from tased_batch.model.network import TASEDNet

from conftest import SMALL

REUSED: list[int] = []  # windows the last _maps call computed from shared features


def _maps(model, frames, *, reuse, targets=None, chunk=16, batch=4, first_windows="reversed"):
    engine = Engine(model, batch_size=batch, reuse=reuse, first_windows=first_windows)
    counted = engine._reused_forward
    REUSED.clear()

    def reused_forward(windows):
        REUSED.append(len(windows))
        return counted(windows)

    engine._reused_forward = reused_forward  # type: ignore[method-assign]
    maps = engine.predict(frames, targets=targets, chunk=chunk)
    assert reuse != "off" or not REUSED
    return maps


def _reused() -> int:
    """How many windows the last ``reuse="auto"`` call took from shared features (the comparison is not vacuous)."""
    return sum(REUSED)


def _close(on: np.ndarray, off: np.ndarray) -> None:
    assert on.shape == off.shape
    diff = np.abs(on.astype(int) - off.astype(int))
    print(f"within 1 grey level: {(diff <= 1).mean():.4%}, max diff {diff.max()}")
    assert (diff <= 1).mean() >= 0.99, ((diff <= 1).mean(), diff.max())


@pytest.mark.parametrize("n", [1, 40, 63, 64, 200])
def test_reuse_gives_the_plain_maps_at_every_length(tiny_model, n):
    frames = synthetic_frames(n, *SMALL, seed=n)
    on = _maps(tiny_model, frames, reuse="auto")
    assert _reused() == n  # every map came from shared features
    _close(on, _maps(tiny_model, frames, reuse="off"))


@pytest.mark.parametrize("every", [1, 2, 3])
def test_reuse_with_every_nth_frame(tiny_model, every):
    frames = synthetic_frames(90, *SMALL, seed=every)
    targets = list(range(0, 90, every))
    on = _maps(tiny_model, frames, reuse="auto", targets=targets)
    assert _reused() == len(targets)
    _close(on, _maps(tiny_model, frames, reuse="off", targets=targets))


def test_released_first_windows_stay_plain_and_the_rest_reuse(tiny_model):
    frames = synthetic_frames(70, *SMALL, seed=5)
    on = _maps(tiny_model, frames, reuse="auto", first_windows="released")
    assert _reused() == 70 - 31  # the 31 released head windows run plain
    off = _maps(tiny_model, frames, reuse="off", first_windows="released")
    np.testing.assert_array_equal(on[:31], off[:31])  # the same plain computation, same batch shape
    _close(on, off)


def test_shared_features_equal_each_windows_own(tiny_model):
    """The exact part: a = base1(x) and b = base2(maxp2(a)) of every window, from shared features, within fp32 rounding."""
    torch.manual_seed(0)
    frames = normalise(torch.as_tensor(synthetic_frames(80, *SMALL, seed=9)))
    net = copy.deepcopy(tiny_model).eval()
    stages = Stages(net, torch.contiguous_format)
    forward, head = SequenceCache(direction=1), SequenceCache(direction=-1)
    reversed_head = frames[:, list(range(61, -1, -1))]
    with torch.inference_mode():
        for batch in ([0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [30, 31, 33, 48]):
            forward.prepare(stages, lambda lo, hi: frames[:, lo:hi], batch, (0, 80))
            head_starts = [s for s in batch if s <= 30]
            head.prepare(stages, lambda lo, hi: reversed_head[:, lo:hi], head_starts, (0, 62))
            windows = [(forward, s) for s in batch] + [(head, s) for s in head_starts]
            a, b = assemble(stages, windows)
            for row, (cache, s) in enumerate(windows):
                source = frames if cache is forward else reversed_head
                x = source[:, s : s + WINDOW][None]
                a0 = net.base1(x)
                b0 = net.base2(net.maxp2(a0))
                scale = float(a0.abs().max())
                assert float((a[row] - a0[0]).abs().max()) <= 1e-4 * scale, (cache.direction, s)
                assert float((b[row] - b0[0]).abs().max()) <= 1e-4 * float(b0.abs().max()), (cache.direction, s)


def _streams(key, video_id, frames, parts):
    """One video's stream starts and frames, cut at target counts ``parts`` (each segment with its history)."""
    n = len(frames)
    sampling = Sampling(np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64), 30.0)
    info = VideoInfo(n_frames=n, fps=30.0, width=SMALL[1], height=SMALL[0], duration=n / 30)
    bounds = np.cumsum([0, *parts])
    out = []
    for s, (a, b) in enumerate(zip(bounds, bounds[1:])):
        chosen = sampling.targets[a:b]
        first = window_start(int(chosen[0]))
        last = n if len(parts) == 1 else max(window_end(int(t)) for t in chosen) + 1
        out.append(
            (StreamStart(key + s, video_id, video_id, info, sampling, chosen, first, last, s, len(parts)), first, last)
        )
    return out


def test_long_video_in_segments_and_cross_video_batches(tiny_model):
    """Two videos, one cut in two segments (each with its 31 frames of history), share batches."""
    long = synthetic_frames(150, *SMALL, seed=1)
    short = synthetic_frames(45, *SMALL, seed=2)
    streams = [(start, long, first, last) for start, first, last in _streams(0, "long", long, [80, 70])]
    streams += [(start, short, first, last) for start, first, last in _streams(2, "short", short, [45])]
    assert streams[1][2] == 80 - WINDOW + 1  # the second segment starts with its 31 frames of history

    def events():
        for start, _, _, _ in streams:
            yield start
        for at in range(0, 150, 16):  # chunks of all streams interleave
            for start, frames, first, last in streams:
                lo, hi = max(at, first), min(at + 16, last)
                if lo < hi:
                    yield FrameChunk(start.key, lo, frames[lo:hi])
        for start, _, _, _ in streams:
            yield StreamEnd(start.key)

    def run(reuse):
        out: dict[int, list[np.ndarray]] = {}
        engine = Engine(tiny_model, batch_size=4, reuse=reuse)
        for item in engine.run_streams(events()):
            if isinstance(item, MapBatch):
                out.setdefault(item.key, []).append(item.maps)
            else:
                assert item.ok, item
        return {k: np.concatenate(v) for k, v in out.items()}

    on, off = run("auto"), run("off")
    assert {k: len(v) for k, v in on.items()} == {0: 80, 1: 70, 2: 45}
    whole_on = np.concatenate([on[0], on[1]])
    for key in on:
        _close(on[key], off[key])
    _close(whole_on, _maps(tiny_model, long, reuse="off"))  # segments give the unsplit video's maps


def test_reuse_keeps_bounded_state_per_stream(tiny_model, monkeypatch):
    """Shared features are dropped as windows pass: the cache does not grow with the video."""
    sizes = []
    original = engine_module._Stream.trim

    def trim(self):
        original(self)
        sizes.append(sum(c.nbytes() for c in self.caches.values()))

    monkeypatch.setattr(engine_module._Stream, "trim", trim)
    Engine(tiny_model, batch_size=4).predict(synthetic_frames(300, *SMALL, seed=3), targets=range(31, 300))
    steady = max(sizes[len(sizes) // 4 : len(sizes) // 2])
    assert 0 < max(sizes[len(sizes) // 2 :]) <= steady * 1.2


def test_reuse_does_at_most_62_percent_of_a_plain_windows_work():
    """Convolution FLOPs at 224x384 (meta tensors: counted, not computed), steady state, per window."""
    net = TASEDNet().eval().to("meta")
    size = (224, 384)
    with FlopCounterMode(display=False) as plain, torch.no_grad():
        net(torch.zeros(1, 3, WINDOW, *size, device="meta"))
    frames = torch.zeros(3, 200, *size, device="meta")
    stages = Stages(net, torch.contiguous_format)
    cache = SequenceCache(direction=1)
    starts = list(range(0, 160))
    with FlopCounterMode(display=False) as reused, torch.no_grad():
        for i in range(0, len(starts), 4):
            batch = starts[i : i + 4]
            cache.prepare(stages, lambda lo, hi: frames[:, lo:hi], batch, (batch[0], 200))
            a, b = assemble(stages, [(cache, s) for s in batch])
            net.forward_from(a, b)
            cache.keep(batch[-1] + 1, 1 << 62)
    per_window = reused.get_total_flops() / len(starts)
    print(f"plain {plain.get_total_flops() / 1e9:.1f} GFLOP, reused {per_window / 1e9:.1f} GFLOP per window")
    assert 150e9 < plain.get_total_flops() < 165e9
    assert per_window <= 0.62 * plain.get_total_flops()  # 94.7 of 156.9 GFLOP


def test_reuse_off_and_auto_are_the_only_modes(tiny_model):
    with pytest.raises(ValueError, match="reuse"):
        Engine(tiny_model, reuse="on")


def test_torch_2_9_0_is_refused_on_cuda_only():
    from tased_batch.engine.fastpath import torch_problem

    assert "2.9.1" in torch_problem("cuda", "2.9.0+cu128")
    assert torch_problem("cpu", "2.9.0") is None
    assert torch_problem("cuda", "2.9.1") is None
