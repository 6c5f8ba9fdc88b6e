"""Speed options must not change what is computed: auto batch size, precision, compile, overlap threads."""

import copy
import threading

import numpy as np
import pytest
import torch

from tased_batch.decode.sample import synthetic_frames
from tased_batch.engine import engine as engine_module
from tased_batch.engine.engine import AUTO, CPU_AUTO_BATCH, Engine, precision_supported
from tased_batch.run.pipeline import BackgroundWriter, prefetch

from conftest import SMALL
from conftest import WindowProbe as Probe


class _Memory:
    def __init__(self, available: int) -> None:
        self.available = available


def _batches_run(monkeypatch, free_windows: float, window_bytes: int) -> tuple[list[int], np.ndarray]:
    """Batch sizes an auto engine sends through the model when ``free_windows`` windows of memory are free.

    The per-window cost is set here (a known number of bytes per input pixel), and so is the free
    memory; what is checked is what the engine then does, not the arithmetic it uses.
    """
    import psutil

    h, w = SMALL
    monkeypatch.setattr(engine_module, "CPU_BYTES_PER_PIXEL", window_bytes // (h * w))
    monkeypatch.setattr(psutil, "virtual_memory", lambda: _Memory(int(free_windows * window_bytes)))
    engine = Engine(Probe(), batch_size=AUTO, channels_last=False)
    assert engine.batch_size is None  # resolved at the first chunk: it depends on the frame size
    calls: list[int] = []
    original = engine.forward
    engine.forward = lambda windows: calls.append(len(windows)) or original(windows)
    maps = engine.predict(synthetic_frames(40, h, w, seed=1), chunk=40)
    return calls, maps


def test_auto_batch_fits_the_free_memory_and_uses_it(monkeypatch):
    window = 1000 * SMALL[0] * SMALL[1]
    one_at_a_time = Engine(Probe(), batch_size=1, channels_last=False).predict(synthetic_frames(40, *SMALL, seed=1))
    largest = []
    for free in (0.5, 1, 2.5, 3.9, 6, 1000):
        calls, maps = _batches_run(monkeypatch, free, window)
        assert sum(calls) == 40  # every frame's window, exactly once
        np.testing.assert_array_equal(maps, one_at_a_time)
        biggest = max(calls)
        if free >= 1:
            assert biggest <= free, (free, calls)  # the batch fits in what is free
        else:
            assert biggest == 1  # below one window it still runs, one window at a time
        largest.append(biggest)
    assert largest == sorted(largest)  # more free memory never means smaller batches
    assert largest[-1] == CPU_AUTO_BATCH > largest[0]  # plenty of memory: the measured CPU choice


@pytest.mark.parametrize("bad", [0, -2, "four", "8"])
def test_bad_batch_sizes_are_refused(bad):
    with pytest.raises(ValueError):
        Engine(Probe(), batch_size=bad)


def test_unsupported_precision_is_refused(monkeypatch):
    monkeypatch.setattr(
        engine_module, "precision_problem", lambda p, device: None if p == "fp32" else f"{p}: no kernels"
    )
    with pytest.raises(ValueError, match="bf16"):
        Engine(Probe(), precision="bf16")
    with pytest.raises(ValueError):
        Engine(Probe(), precision="fp8")


def test_tf32_is_refused_off_cuda_with_what_to_do():
    with pytest.raises(ValueError, match="tf32 is a CUDA precision.*use fp32"):
        Engine(Probe(), precision="tf32")


def test_cuda_fp32_is_strict_and_tf32_explicit_inside_the_forward_only():
    """PyTorch's default lets cuDNN use TF32 for fp32 convolutions: the engine decides per forward, then restores."""
    from tased_batch.engine.fastpath import precision_context

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        with precision_context("fp32", torch.device("cuda")):
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        with precision_context("tf32", torch.device("cuda")):
            assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_cpu_bf16_support_follows_onednn():
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    assert precision_supported("bf16", "cpu") == bool(probe is not None and probe())
    assert precision_supported("fp32", "cpu")


@pytest.mark.skipif(not precision_supported("bf16", "cpu"), reason="this CPU has no bf16 kernels")
def test_bf16_maps_correlate_with_fp32(tiny_model):
    frames = synthetic_frames(36, *SMALL, seed=9)
    targets = [3, 35]
    fp32 = Engine(copy.deepcopy(tiny_model), batch_size=2).predict(frames, targets).astype(np.float64)
    bf16 = Engine(copy.deepcopy(tiny_model), batch_size=2, precision="bf16").predict(frames, targets).astype(np.float64)
    cc = np.corrcoef(fp32.ravel(), bf16.ravel())[0, 1]
    # The untrained stand-in amplifies rounding (raw-output CC about 0.6 at this size; see
    # docs/benchmarks.md), so this checks that bf16 computes the same maps, not its accuracy.
    assert cc > 0.7, cc


def test_compile_pads_short_batches_to_one_shape(monkeypatch):
    shapes = []

    def fake_compile(module, dynamic, options):
        assert dynamic is False and options == {"freezing": True}

        def run(x):
            shapes.append(tuple(x.shape))
            return module(x)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    frames = synthetic_frames(42, *SMALL, seed=2)
    compiled = Engine(Probe(), batch_size=4, channels_last=False, compile=True).predict(frames, chunk=9)
    plain = Engine(Probe(), batch_size=4, channels_last=False).predict(frames, chunk=9)
    np.testing.assert_array_equal(compiled, plain)
    assert len(set(shapes)) == 1 and shapes[0][0] == 4  # 42 maps = 10 full batches + a padded 2


def test_prefetch_decodes_ahead_in_another_thread():
    produced_second = threading.Event()
    threads = set()

    def produce():
        for i in range(4):
            threads.add(threading.current_thread().name)
            if i == 1:
                produced_second.set()
            yield i

    seen = []
    for item in prefetch(produce(), depth=2):
        if item == 0:  # the second item arrives while the consumer still holds the first
            assert produced_second.wait(timeout=10)
        seen.append(item)
    assert seen == [0, 1, 2, 3]
    assert threads == {"tased-prefetch"}


def test_prefetch_raises_producer_errors_and_stops_when_closed():
    def broken():
        yield 1
        raise RuntimeError("decoder broke")

    with pytest.raises(RuntimeError, match="decoder broke"):
        list(prefetch(broken()))

    stopped = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            stopped.set()

    stream = prefetch(endless(), depth=1)
    assert next(stream) == 0
    stream.close()  # joins the thread: it must notice and leave, not block on a full queue
    assert not any(t.name == "tased-prefetch" for t in threading.enumerate())


def test_background_writer_writes_in_order_and_reports_errors():
    written = []
    gate = threading.Event()

    class Sink:
        def write(self, result):
            gate.wait(timeout=10)
            written.append(result)

    with BackgroundWriter(Sink(), depth=4) as writer:
        for i in range(3):
            writer.submit(i)  # returns although the sink is still blocked
        assert written == []
        gate.set()
    assert written == [0, 1, 2]

    class Failing:
        def write(self, result):
            raise OSError("disk full")

    writer = BackgroundWriter(Failing())
    writer.submit(1)
    with pytest.raises(OSError, match="disk full"):
        writer.close()


def test_predict_command_checks_the_speed_options(tiny_weights, make_video, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tased_batch.cli.main import app

    video = make_video(n_frames=8)
    runner = CliRunner()
    bad_batch = runner.invoke(app, ["predict", str(video), str(tmp_path), "-w", str(tiny_weights), "-b", "zero"])
    assert bad_batch.exit_code == 2 and "auto" in bad_batch.output
    monkeypatch.setattr(
        engine_module, "precision_problem", lambda p, device: None if p == "fp32" else f"{p}: no kernels"
    )
    bad_precision = runner.invoke(
        app, ["predict", str(video), str(tmp_path), "-w", str(tiny_weights), "--precision", "bf16"]
    )
    assert bad_precision.exit_code == 2 and "bf16: no kernels" in bad_precision.output
