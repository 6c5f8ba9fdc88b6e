"""The engine must give the released script's maps: its windows, its post-processing."""

import numpy as np
import pytest
import torch

from tased_batch.decode.sample import synthetic_frames
from tased_batch.engine.engine import Engine, PostProcessor, blur_matrix, parse_size, window_frames

from conftest import SMALL, WindowProbe
from reference import looped_reference, released_loop, released_postprocess


def test_window_frames_follow_the_released_script():
    assert window_frames(40, 100) == list(range(9, 41))
    assert window_frames(31, 100) == list(range(0, 32))
    assert window_frames(0, 100) == list(range(31, -1, -1))
    assert window_frames(30, 100) == list(range(61, 29, -1))
    assert window_frames(0, 1) == [0] * 32
    assert window_frames(3, 10) == [(34 - k) % 10 for k in range(32)]


def test_parse_size():
    assert parse_size("224x384") == (224, 384)
    for bad in ("224x380", "0x32", "abc", "32"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_maps_vary_with_input(tiny_model):
    a = Engine(tiny_model, batch_size=2).predict(synthetic_frames(33, *SMALL, seed=1), targets=[31, 32])
    b = Engine(tiny_model, batch_size=2).predict(synthetic_frames(33, *SMALL, seed=2), targets=[31, 32])
    assert a.std() > 3 and b.std() > 3  # a sigma-7 blur on a 32x64 map leaves little contrast
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 2


def test_engine_equals_released_loop_exactly_at_batch_one(tiny_model, clip70):
    frames, ref = clip70
    ours = Engine(tiny_model, batch_size=1, channels_last=False).predict(frames, chunk=16)
    np.testing.assert_array_equal(ours, ref)


def test_released_first_windows_reproduce_the_released_code_to_the_letter(tiny_model):
    """run_example.py flips the colour channels of the first windows, not time: that mode is exact too."""
    frames = synthetic_frames(63, *SMALL, seed=8)
    ref = released_loop(tiny_model, frames, flip_dim=1)
    engine = Engine(tiny_model, batch_size=1, channels_last=False, first_windows="released")
    ours = engine.predict(frames, targets=range(0, 40), chunk=16)
    np.testing.assert_array_equal(ours[:31], np.stack([ref[i] for i in range(31)]))
    default = Engine(tiny_model, batch_size=3, channels_last=False).predict(frames, targets=range(0, 31), chunk=16)
    assert np.abs(default.astype(int) - ours[:31].astype(int)).mean() > 1  # the two modes really differ
    assert window_frames(0, 100, "released") == list(range(0, 32))
    assert window_frames(5, 10, "released") == [(5 + k) % 10 for k in range(32)]


def test_batched_channels_last_engine_is_within_parity(tiny_model, clip70):
    """Batching and channels-last change float rounding only: nearly all pixels within 1 level."""
    frames, ref = clip70
    ours = Engine(tiny_model, batch_size=4, channels_last=True).predict(frames, chunk=10)
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert (diff <= 1).mean() >= 0.97, (diff <= 1).mean()


def test_short_video_is_looped_not_skipped(tiny_model):
    frames = synthetic_frames(20, *SMALL, seed=20)
    ours = Engine(tiny_model, batch_size=1, channels_last=False).predict(frames, chunk=7)
    assert ours.shape == (20, *SMALL)
    np.testing.assert_array_equal(ours, looped_reference(tiny_model, frames))


@pytest.mark.parametrize("n", [1, 2, 31, 32, 40, 62, 63])
def test_every_short_length_matches_the_looped_reference(n):
    probe = WindowProbe()
    frames = synthetic_frames(n, *SMALL, seed=n)
    ours = Engine(probe, batch_size=3, channels_last=False).predict(frames, chunk=5)
    np.testing.assert_array_equal(ours, looped_reference(probe, frames))


def test_streaming_chunks_and_targets_give_the_same_maps():
    frames = synthetic_frames(75, *SMALL, seed=4)
    engine = Engine(WindowProbe(), batch_size=3, channels_last=False)
    whole = engine.predict(frames, chunk=1000)
    for chunk in (1, 5, 64):
        np.testing.assert_array_equal(engine.predict(frames, chunk=chunk), whole)
    targets = [0, 10, 30, 31, 50, 74]
    calls = []
    original = engine.forward
    engine.forward = lambda w: calls.append(len(w)) or original(w)
    picked = engine.predict(frames, targets=targets, chunk=8)
    assert sum(calls) == len(targets)  # only the chosen windows run
    np.testing.assert_array_equal(picked, whole[targets])


def test_stream_yields_in_frame_order_and_bounds_its_buffer():
    engine = Engine(WindowProbe(), batch_size=2, channels_last=False)
    frames = synthetic_frames(140, *SMALL, seed=5)
    seen = []
    sizes = []
    original = engine._compute

    def spy(groups):
        sizes.extend(stream.buffer.shape[1] for stream, _ in groups)
        return original(groups)

    engine._compute = spy
    for positions, maps in engine.run(frames[i : i + 8] for i in range(0, 140, 8)):
        assert len(positions) == len(maps)
        seen.extend(positions.tolist())
    assert seen == list(range(140))
    assert max(sizes) <= 63 + 8  # never more than the first 63 frames plus one chunk


@pytest.mark.parametrize("shape", [(32, 64), (64, 96), (224, 384), (40, 30)])
def test_device_postprocessing_matches_scipy(shape):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    raw = []
    for _ in range(3):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (shape[1] / 6) ** 2))
        raw.append(0.2 + 0.7 * blob + 0.1 * rng.random(shape))
    raw = np.stack(raw).astype(np.float32)
    ours = PostProcessor(*shape)(torch.from_numpy(raw)).numpy()
    ref = np.stack([released_postprocess(r) for r in raw])
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() <= 1
    assert (diff == 0).mean() > 0.999


def test_blur_matrix_is_scipy_reflect_even_when_narrower_than_the_kernel():
    x = np.random.default_rng(1).random(20)
    from scipy.ndimage import gaussian_filter1d

    np.testing.assert_allclose(blur_matrix(20) @ x, gaussian_filter1d(x, 7.0, mode="reflect"), atol=1e-12)
