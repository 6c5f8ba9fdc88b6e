"""`tased-batch run --format webdataset` on tar shards with a real local Ray: a driver killed
mid-run and `resume` leave every output tar whole, each sample once, aligned with its input."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from tased_batch import open_results
from tased_batch.config import RunConfig
from tased_batch.core.errors import ConfigError
from tased_batch.run.plan import build_plan

from conftest import SMALL
from runhelpers import kill_ray, killpg, run_cli, start_cli

wds = pytest.importorskip("webdataset")

SIZE = f"{SMALL[0]}x{SMALL[1]}"
SHARDS = {"00000": {"k0": 12, "k1": 9}, "00001": {"k2": 10, "k3": 0}, "00002": {"k4": 8}}  # 0 frames: a broken video


def make_shards(folder, make_video) -> None:
    folder.mkdir()
    seed = 0
    for name, samples in SHARDS.items():
        with tarfile.open(folder / f"{name}.tar", "w") as tar:
            for key, n in samples.items():
                seed += 1
                video = make_video(f"src/{key}.mp4", n_frames=n, seed=seed).read_bytes() if n else b"not a video"
                for member, data in ((f"{key}.mp4", video), (f"{key}.txt", f"caption of {key}".encode())):
                    info = tarfile.TarInfo(member)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def test_killed_driver_then_resume_leaves_whole_aligned_tars(tmp_path, make_video, tiny_weights, ray_tmp):
    shards = tmp_path / "shards"
    make_shards(shards, make_video)
    out = tmp_path / "out"
    args = ["run", str(shards), str(out), "--format", "webdataset", "--weights", str(tiny_weights), "--size", SIZE]
    proc = start_cli([*args, "--actors", "1", "--cpus-per-actor", "1", "--lease-ttl", "4", "--log-json"], ray_tmp)
    try:
        for line in proc.stdout:
            if '"event": "shard"' in line:
                break
        killpg(proc)
        proc.wait(timeout=30)
    finally:
        killpg(proc)
    kill_ray(ray_tmp)
    middle = json.loads(run_cli(["status", str(out), "--json"], ray_tmp).stdout)
    assert middle["shards"]["total"] == 3 and 1 <= middle["shards"]["done"] < 3
    for path in (out / "webdataset").iterdir():  # whatever the kill left: only whole tars under final names
        assert path.suffix == ".tar" and tarfile.open(path).getnames()

    resumed = run_cli(["resume", str(out), "--actors", "1", "--cpus-per-actor", "1", "--quiet"], ray_tmp, timeout=400)
    assert resumed.returncode == 3, resumed.stderr[-3000:]  # one video failed: exit 3, the rest done
    final = json.loads(run_cli(["status", str(out), "--json"], ray_tmp).stdout)
    assert final["shards"] == {"total": 3, "done": 3, "pending": 0}

    res = open_results(str(out))
    res.verify()  # every tar matches its commit record's size and sha256
    assert sorted(p.name for p in (out / "webdataset").iterdir()) == ["00000.tar", "00001.tar", "00002.tar"]
    for name, samples in SHARDS.items():
        inputs = list(wds.WebDataset(str(shards / f"{name}.tar"), shardshuffle=False))
        outputs = list(wds.WebDataset(str(out / "webdataset" / f"{name}.tar"), shardshuffle=False).decode())
        assert [s["__key__"] for s in outputs] == [s["__key__"] for s in inputs] == list(samples)
        for sample, (key, n) in zip(outputs, samples.items()):
            meta = sample["saliency.json"]
            if n:
                assert meta["status"] == "ok" and meta["frame_indices"] == list(range(n))
                np.testing.assert_array_equal(sample["saliency.npy"], res.maps(key))
            else:
                assert meta["status"] == "failed" and meta["error"]
                assert sample["saliency.npy"].shape[0] == 0


def test_webdataset_format_refuses_inputs_outside_tars(tmp_path, make_video):
    make_video("videos/a.mp4", n_frames=4)
    config = RunConfig(input=str(tmp_path / "videos"), output=str(tmp_path / "out"), format="webdataset")
    with pytest.raises(ConfigError, match="not in a tar"):
        build_plan(config.validate())
