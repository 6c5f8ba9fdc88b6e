"""The bench's baseline must be the released algorithm, and its figures must match outside clocks."""

import copy
import json
import time

import numpy as np
import torch
from typer.testing import CliRunner

from tased_batch.bench.bench import reference_frames, reference_maps
from tased_batch.cli.main import app
from tased_batch.decode import open_video
from tased_batch.decode.sample import synthetic_frames, write_video
from tased_batch.engine.engine import Engine

from conftest import SMALL
from reference import released_loop


def contiguous_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The released script's memory format (engines turn the shared fixture channels-last)."""
    return copy.deepcopy(model).to(memory_format=torch.contiguous_format)


def test_reference_is_the_released_loop(tiny_model):
    """Same maps, bit for bit, as tests/reference.py's independent copy of the released loop."""
    model = contiguous_copy(tiny_model)
    frames = synthetic_frames(40, *SMALL, seed=12)
    released = released_loop(model, frames)  # under 63 frames: maps 0..8 and 31..39 only
    ours = reference_maps(model, list(frames))
    assert sorted(released) == list(range(9)) + list(range(31, 40))
    for i, expected in released.items():
        np.testing.assert_array_equal(ours[i], expected)


def test_engine_maps_equal_the_reference_within_tolerance(tiny_model, tmp_path):
    frames = synthetic_frames(45, *SMALL, seed=11)
    reference = reference_maps(contiguous_copy(tiny_model), list(frames), str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir())[:2] == ["0001.png", "0002.png"]
    ours = Engine(copy.deepcopy(tiny_model), batch_size=4).predict(frames, chunk=16)
    diff = np.abs(ours.astype(int) - reference.astype(int))
    assert (diff <= 1).mean() >= 0.97, (diff <= 1).mean()


def test_reference_frames_are_the_exact_resize_path(tmp_path):
    """(a) reads frames with OpenCV as the released script; decode.py's exact resize gives the same."""
    video = write_video(tmp_path / "v.mp4", synthetic_frames(12, 72, 128, seed=3))
    ours = reference_frames(str(video), SMALL)
    with open_video(str(video), SMALL, decoder="pyav", resize="exact") as reader:
        decoded = np.concatenate(list(reader.iter_frames(np.arange(reader.info.n_frames))))
    assert len(ours) == len(decoded) == 12
    diff = np.abs(np.stack(ours).astype(int) - decoded.astype(int))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 3  # two FFmpeg YUV->RGB conversions


def test_bench_figures_agree_with_independent_timing(monkeypatch):
    """frames/s come from each stage's own time, and (b) writes one map per frame.

    The released algorithm is slowed by a known second, and every stage is timed here from the
    outside: the reported figures must match those clocks (so a swapped, miscounted or
    mis-divided figure fails), not just their own definitions.
    """
    from tased_batch.bench import bench

    delay, frames = 1.0, 36
    walls: dict[str, list[float]] = {}  # every call of a stage (the precision table calls the model again)
    pipeline_maps = []

    def timed(name, function, keep=None):
        def run(*args, **kwargs):
            start = time.perf_counter()
            result = function(*args, **kwargs)
            walls.setdefault(name, []).append(time.perf_counter() - start)
            if keep is not None:
                keep.append(result[1])
            return result

        return run

    original_maps = bench.reference_maps

    def slow_reference_maps(*args, **kwargs):
        time.sleep(delay)
        return original_maps(*args, **kwargs)

    monkeypatch.setattr(bench, "reference_maps", slow_reference_maps)
    monkeypatch.setattr(bench, "run_reference", timed("reference", bench.run_reference))
    monkeypatch.setattr(bench, "run_pipeline", timed("pipeline", bench.run_pipeline, pipeline_maps))
    monkeypatch.setattr(bench, "run_model", timed("model", bench.run_model))
    result = CliRunner().invoke(
        app, ["bench", "--size", "32x64", "--frames", str(frames), "--json", "--source-size", "72x128"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])

    # the pipeline runs with window reuse (b), then once more without it for the reuse comparison (d)
    assert len(pipeline_maps) == 2 and all(m.shape == (frames, 32, 64) for m in pipeline_maps)  # a map per frame
    seconds = {k: frames / report[f"{k}_fps"] for k in ("reference", "pipeline", "model")}
    for stage, reported in seconds.items():
        # a stage's time lies within its (first, fp32) call, and is most of it
        assert 0.5 * walls[stage][0] <= reported <= walls[stage][0] * 1.001, (stage, reported, walls)
    assert seconds["reference"] >= delay  # the slowed stage is the one reported as (a)
    outside = walls["reference"][0] / walls["pipeline"][0]  # (b)/(a) speed-up, from the outside clocks
    assert 0.6 < report["speedup"] / outside < 1.6, (report["speedup"], outside)
    assert report["size"] == [32, 64] and report["frames"] == frames and report["weights"] == "random"
    assert report["parity_within_1"] >= 0.97  # same frames in, near-identical maps out
