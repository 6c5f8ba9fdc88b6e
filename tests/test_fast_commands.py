"""Commands that need no model answer fast: `status`, `export` and `--help` never import torch or Ray.

(`status` not even pandas; `export` at a size other than the stored one resamples with torch.)

Each command runs in a fresh interpreter (this test process has torch loaded already) that reports
which heavy packages its run left in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tased_batch.config import RunConfig
from tased_batch.core.records import VideoResult
from tased_batch.run.plan import prepare
from tased_batch.stores import open_shard_writer
from tased_batch.stores.synthetic import synthetic_saliency_maps

HEAVY = ("torch", "ray", "pandas")
RUN_INFO = {"config_fingerprint": "f", "weights": {"sha256": "0" * 64, "kind": "random", "uri": "random"}}

PROBE = f"""
import json, sys
from tased_batch.cli.main import app
try:
    app(sys.argv[1:], prog_name="tased-batch")
except SystemExit as e:
    code = e.code or 0
print(json.dumps({{"code": code, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}), file=sys.stderr)
"""


def _cli(*args: str) -> tuple[int, list[str], str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    report = json.loads(next(line for line in reversed(done.stderr.splitlines()) if line.startswith('{"code"')))
    return report["code"], report["loaded"], done.stdout


def _three_shard_run(tmp_path) -> str:
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b", "c"):
        (videos / f"{name}.mp4").write_bytes(b"listed, never decoded")
    out = str(tmp_path / "run")
    config = RunConfig(input=str(videos), output=out, shard_size=1, weights="random").validate()
    _, plan, _ = prepare(config, "0" * 64)
    assert len(plan.shard_ids) == 3
    return out


def test_status_loads_neither_torch_nor_ray(tmp_path):
    out = _three_shard_run(tmp_path)
    code, loaded, stdout = _cli("status", out, "--json")
    assert code == 0
    assert json.loads(stdout)["shards"] == {"total": 3, "done": 0, "pending": 3}
    assert loaded == []


def test_export_loads_neither_torch_nor_ray(tmp_path):
    uri = str(tmp_path / "store")
    maps = synthetic_saliency_maps(2, size=(32, 64), seed=1)
    frames = np.arange(2, dtype=np.int64)
    writer = open_shard_writer(uri, "s", store_size=(8, 16), model_size=(32, 64), run_info=RUN_INFO)
    writer.write(
        VideoResult(
            video_id="clip",
            source="/v/clip.mp4",
            n_frames=2,
            fps=30.0,
            width=64,
            height=32,
            duration=2 / 30,
            frame_indices=frames,
            timestamps=frames / 30.0,
            maps=maps,
        )
    )
    writer.commit()
    code, loaded, _ = _cli("export", uri, "clip", str(tmp_path / "png"), "--size", "stored")  # resizing uses torch
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "png" / "clip").iterdir()) == ["0001.png", "0002.png"]
    assert "torch" not in loaded and "ray" not in loaded


def test_help_loads_neither_torch_nor_ray():
    for args in ([], ["run"], ["predict"], ["status"]):
        code, loaded, _ = _cli(*args, "--help")
        assert code == 0
        assert loaded == []
