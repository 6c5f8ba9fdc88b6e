"""The bench's baseline must be the released algorithm, and its report must add up."""

import copy
import json

import numpy as np
import torch
from typer.testing import CliRunner

from tased_batch.bench import reference_frames, reference_maps
from tased_batch.cli.main import app
from tased_batch.decode import open_video
from tased_batch.engine import Engine
from tased_batch.sample import synthetic_frames, write_video

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


def test_bench_command_reports_consistent_figures():
    result = CliRunner().invoke(app, ["bench", "--size", "32x64", "--frames", "40", "--json", "--source-size", "72x128"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("reference_fps", "pipeline_fps", "model_fps"):
        assert report[key] > 0
    assert np.isclose(report["speedup"], report["pipeline_fps"] / report["reference_fps"])
    assert np.isclose(report["efficiency"], report["pipeline_fps"] / report["model_fps"])
    assert report["size"] == [32, 64] and report["frames"] == 40 and report["precision"] == "fp32"
    assert report["weights"] == "random" and isinstance(report["batch_size"], int)
    assert 0 <= report["parity_within_1"] <= 1 and report["parity_max_diff"] >= 0 and -1 <= report["pipeline_cc"] <= 1
    assert all(len(v) == 1 for v in report["runs"].values())
