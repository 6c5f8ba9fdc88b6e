"""The quickstart: make a few sample videos, run the main job on them, render one overlay.

Needs nothing set up: the videos are synthesised, Ray is started locally, and when the
released weights are not cached and cannot be downloaded (no internet) the run says so in
one line and uses the labelled random stand-in (``--weights random``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from tased_batch.config import RunConfig
from tased_batch.core.errors import WeightsError
from tased_batch.decode.sample import make_sample_videos
from tased_batch.model.weights import RANDOM, download_released, released_path
from tased_batch.run.job import JobResult, run_job


def choose_weights(weights: str | None, say: Callable[[str], None]) -> str:
    """The given weights, else the released file (downloading it if needed), else the random stand-in."""
    if weights:
        return weights
    if released_path().exists():
        return str(released_path())
    try:
        return download_released(quiet=True)["file"]
    except WeightsError as e:
        say(
            f"released weights unavailable ({e.message}): running on the random stand-in (--weights random); "
            "the maps show the pipeline working, not real saliency"
        )
        return RANDOM


def run_demo(
    directory: str, weights: str | None, size: str | None, say: Callable[[str], None]
) -> tuple[JobResult, Path]:
    root = Path(directory)
    videos = make_sample_videos(root / "videos")
    say(f"made {len(videos)} sample videos in {root / 'videos'}")
    chosen = choose_weights(weights, say)
    size = size or ("224x384" if torch.cuda.is_available() else "96x160")
    say(f"model size {size}{'' if torch.cuda.is_available() else ' (no GPU: a smaller size keeps the demo short)'}")
    config = RunConfig(
        input=str(root / "videos"), output=str(root / "saliency"), weights=chosen, size=size, shard_size=1, log="rich"
    ).validate()
    result = run_job(config)
    overlay = root / "overlay.mp4"
    if result.report["videos"]["done"]:
        from tased_batch.analysis.render import render

        render(str(root / "saliency"), videos[0].stem, str(videos[0]), str(overlay), side_by_side=True)
    return result, overlay
