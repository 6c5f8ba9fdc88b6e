"""Maps stream into a shard batch by batch: long videos do not accumulate, failed videos leave nothing readable."""

from __future__ import annotations

import glob

import numpy as np
import pyarrow.parquet as pq
import pytest

from tased_batch.core.records import VideoMeta
from tased_batch.stores import open_shard_writer, parquet, zarr_store
from tased_batch.stores.reader import open_results
from tased_batch.stores.resample import resize_maps
from tased_batch.stores.synthetic import synthetic_saliency_maps

MODEL = (32, 64)
STORE = (8, 16)
RUN_INFO = {"config_fingerprint": "cfg-1", "weights": {"sha256": "cd" * 32, "kind": "random", "uri": "random://seed=0"}}
FORMATS = ["parquet", "zarr", "png"]


@pytest.fixture
def small_limits(monkeypatch):
    """Spill / shard thresholds small enough that a 40-map video crosses them several times."""
    monkeypatch.setattr(parquet, "SPILL_BYTES", 2_000)
    monkeypatch.setattr(parquet, "ROW_GROUP_BYTES", 1_000)
    monkeypatch.setattr(zarr_store, "CHUNK_FRAMES", 4)
    monkeypatch.setattr(zarr_store, "SHARD_BYTES", 8 * STORE[0] * STORE[1])  # 8 frames a shard


def stream(sink, maps, frames, batch):
    for i in range(0, len(maps), batch):
        sink.append(frames[i : i + batch], frames[i : i + batch] / 25.0, maps[i : i + batch])


@pytest.mark.parametrize("fmt", FORMATS)
def test_streamed_videos_read_back_whole_and_failed_ones_leave_nothing(fmt, tmp_path, small_limits):
    out = str(tmp_path / "out")
    long_maps = synthetic_saliency_maps(40, size=MODEL, seed=1)
    short_maps = synthetic_saliency_maps(3, size=MODEL, seed=2)
    writer = open_shard_writer(out, "s0", format=fmt, store_size=STORE, model_size=MODEL, run_info=RUN_INFO)
    meta = VideoMeta(n_frames=80, fps=25.0, width=96, height=54, duration=3.2)
    long = writer.open_video("long", "/in/long.mp4", meta)
    broken = writer.open_video("broken", "/in/broken.mp4", meta)
    short = writer.open_video("short", "/in/short.mp4", meta)
    frames = np.arange(0, 80, 2, dtype=np.int64)
    for i in range(0, 40, 3):  # three videos open at once, batches interleaved
        long.append(frames[i : i + 3], frames[i : i + 3] / 25.0, long_maps[i : i + 3])
        if i < 30:
            broken.append(frames[i : i + 3], frames[i : i + 3] / 25.0, long_maps[i : i + 3])
    stream(short, short_maps, np.array([1, 2, 5]), 2)
    broken.fail("decode-error", "corrupt packet at 1.2 s")
    long.close()
    short.close()
    writer.commit()

    results = open_results(out)
    np.testing.assert_array_equal(results.maps("long"), resize_maps(long_maps, STORE))
    np.testing.assert_array_equal(results.frame_indices("long"), frames)
    np.testing.assert_array_equal(results.timestamps("long"), frames / 25.0)
    np.testing.assert_array_equal(results.maps("short"), resize_maps(short_maps, STORE))
    row = {r["video_id"]: r for r in results.videos().to_pylist()}
    assert (
        row["broken"]["status"] == "failed"
        and row["broken"]["n_maps"] == 0
        and row["broken"]["reason"] == "decode-error"
    )
    assert row["long"]["n_maps"] == 40
    results.verify()
    # a plain read of the attempt's data, without the reader, holds no row of the failed video
    attempt = glob.glob(f"{out}/shards/s0/*/")[0]
    if fmt == "parquet":
        files = sorted(glob.glob(f"{attempt}maps*.parquet"))
        assert len(files) == 2  # the shared file and the long video's own part file
        ids = set()
        for f in files:
            ids |= set(pq.read_table(f)["video_id"].to_pylist())
        assert ids == {"long", "short"}
    elif fmt == "zarr":
        import zarr

        group = zarr.open_group(f"{attempt}maps.zarr", mode="r")
        assert sorted(group.array_keys()) == sorted({row["long"]["location"][10:], row["short"]["location"][10:]})
    else:
        assert not glob.glob(f"{attempt}png/broken")


def test_zarr_long_video_writes_each_shard_object_once(tmp_path, small_limits, monkeypatch):
    writes = []
    original = zarr_store._ZarrVideo._store
    monkeypatch.setattr(
        zarr_store._ZarrVideo, "_store", lambda self, maps: writes.append(len(maps)) or original(self, maps)
    )
    writer = open_shard_writer(str(tmp_path), "z", format="zarr", store_size=STORE, model_size=MODEL, run_info=RUN_INFO)
    sink = writer.open_video("v", "/in/v.mp4")
    maps = synthetic_saliency_maps(21, size=MODEL, seed=4)
    stream(sink, maps, np.arange(21), 5)
    sink.close()
    writer.commit()
    assert writes == [8, 8, 5]  # whole shards as they fill, then the tail
    np.testing.assert_array_equal(open_results(str(tmp_path)).maps("v"), resize_maps(maps, STORE))


def test_sink_refuses_frames_out_of_order_and_use_after_close(tmp_path):
    from tased_batch.core.errors import StoreError

    writer = open_shard_writer(
        str(tmp_path), "o", format="parquet", store_size=STORE, model_size=MODEL, run_info=RUN_INFO
    )
    sink = writer.open_video("v", "/in/v.mp4")
    maps = synthetic_saliency_maps(4, size=MODEL, seed=5)
    sink.append(np.array([3, 4]), np.array([0.1, 0.2]), maps[:2])
    with pytest.raises(StoreError, match="strictly increasing"):
        sink.append(np.array([4, 5]), np.array([0.2, 0.3]), maps[2:])
    sink.close()
    with pytest.raises(StoreError, match="already closed"):
        sink.append(np.array([6]), np.array([0.4]), maps[:1])
    with pytest.raises(StoreError, match="twice"):
        writer.open_video("v", "/in/v.mp4")
