"""The Ray Data plugin on a local Ray: same maps and encoding as `predict_video` + the Parquet store.

One Ray session for the module (each start costs seconds); option checks run without Ray.
"""

from __future__ import annotations

import importlib.util
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tased_batch.core.errors import ConfigError

from conftest import SMALL

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
OPTIONS = {"size": f"{SMALL[0]}x{SMALL[1]}", "output_fps": 5.0, "store_size": "16x32"}


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), WORKFLOWS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def local_ray():
    import ray

    if ray.is_initialized():  # another module's session: use it, leave it to its owner
        yield ray
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _expected(path, weights) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
    """What the store would hold for ``path``: predict_video, then the store's resize and encoding."""
    import torch

    from tased_batch.decode.options import DecodeOptions
    from tased_batch.engine.engine import Engine
    from tased_batch.model.weights import load_model
    from tased_batch.run.pipeline import predict_video
    from tased_batch.stores.parquet import encode_map
    from tased_batch.stores.resample import resize_maps

    # Ray runs a 1-CPU actor with one torch thread; the same thread count gives the same
    # float summation order, so the maps match bit for bit instead of within a grey level.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        engine = Engine(load_model(str(weights))[0], device="cpu", batch_size=4)
        result = predict_video(str(path), engine, size=SMALL, options=DecodeOptions(output_fps=OPTIONS["output_fps"]))
    finally:
        torch.set_num_threads(threads)
    assert result.ok, result.error
    blobs = [encode_map(m, "png") for m in resize_maps(result.maps, (16, 32))]
    return result.frame_indices, result.timestamps, blobs


def test_map_batches_matches_predict_video_and_store_encoding(local_ray, make_video, tiny_weights, tmp_path):
    from ray.data import ActorPoolStrategy

    from tased_batch.ray_data import SaliencyPredictor
    from tased_batch.stores.parquet import decode_map

    good = make_video("good.mp4", n_frames=24)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video")
    ds = local_ray.data.from_items([{"url": str(good), "caption": "a"}, {"url": str(bad), "caption": "b"}])
    rows = ds.map_batches(
        SaliencyPredictor,
        fn_constructor_kwargs={"weights": str(tiny_weights), "keep_cols": ["caption"], **OPTIONS},
        batch_size=2,
        compute=ActorPoolStrategy(size=1),
    ).take_all()
    by_id = {row["video_id"]: row for row in rows}
    assert sorted(by_id) == ["bad", "good"]

    failed = by_id["bad"]
    assert (failed["status"], failed["reason"], failed["caption"]) == ("failed", "not-video", "b")
    assert failed["error"] and len(failed["maps"]) == 0

    ok = by_id["good"]
    frames, times, blobs = _expected(good, tiny_weights)
    assert (ok["status"], ok["caption"], ok["encoding"], ok["height"], ok["width"]) == ("ok", "a", "png", 16, 32)
    assert list(ok["frame_indices"]) == frames.tolist()
    np.testing.assert_allclose(ok["timestamps"], times)
    assert len(ok["maps"]) == len(blobs) > 1
    got = np.stack([decode_map(b, "png", 16, 32) for b in ok["maps"]])
    want = np.stack([decode_map(b, "png", 16, 32) for b in blobs])
    np.testing.assert_array_equal(got, want)
    assert got.std() > 0  # real maps, not a constant image


def test_webdataset_example_keys_maps_by_sample_key(local_ray, make_video, tiny_weights, tmp_path):
    """workflows/ray_data_saliency.py: `read_webdataset` rows (``__key__`` + ``mp4`` bytes) keep their caption."""
    clip = make_video("clip.mp4", n_frames=12)
    caption = tmp_path / "caption.txt"
    caption.write_text("a red square")
    shard = tmp_path / "shard-00000.tar"
    with tarfile.open(shard, "w") as tar:
        tar.add(clip, arcname="000001.mp4")
        tar.add(caption, arcname="000001.txt")
    example = _load_example("ray_data_saliency.py")
    ds = local_ray.data.read_webdataset(str(shard))
    rows = example.saliency(ds, actors=1, gpus=0, rows_per_batch=1, weights=str(tiny_weights), **OPTIONS).take_all()
    assert len(rows) == 1
    row = rows[0]
    assert (row["video_id"], row["status"], row["txt"]) == ("000001", "ok", "a red square"), row["error"]
    assert len(row["maps"]) == len(row["frame_indices"]) > 0


def test_options_are_checked_by_the_run_schema(tiny_weights):
    from tased_batch.ray_data import SaliencyPredictor

    with pytest.raises(ConfigError, match="unknown option 'output_fsp'"):
        SaliencyPredictor(weights=str(tiny_weights), output_fsp=2)
    with pytest.raises(ConfigError, match="only apply to `tased-batch run`"):
        SaliencyPredictor(weights=str(tiny_weights), actors=2)
    with pytest.raises(ConfigError, match="multiples of 32"):
        SaliencyPredictor(weights=str(tiny_weights), size="30x60")
    with pytest.raises(ConfigError, match="encoding"):
        SaliencyPredictor(weights=str(tiny_weights), encoding="jpeg")
