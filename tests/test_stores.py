"""Shard writers: round trips for every format on local disk and on a real S3 endpoint,
atomic commits, interrupted shards, and exact bytes of what comes back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tased_batch.core.errors import StoreError
from tased_batch.core.records import VideoResult
from tased_batch.stores import committed_shards, open_shard_writer, read_commit, remove_orphans
from tased_batch.stores.png import decode_png, png_name, write_png_maps
from tased_batch.stores.reader import open_results
from tased_batch.stores.resample import resize_maps
from tased_batch.stores.synthetic import synthetic_saliency_maps

MODEL = (32, 64)
STORE = (8, 16)
RUN_INFO = {
    "config_fingerprint": "cfg-123",
    "weights": {"sha256": "ab" * 32, "kind": "random", "uri": "random://seed=0"},
}
FORMATS = ["parquet", "zarr", "png"]

_MAPS = synthetic_saliency_maps(12, size=MODEL, seed=3)


def ok_result(video_id: str, n: int = 5, start: int = 0, seed: int = 0) -> VideoResult:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(_MAPS))[:n]
    frames = np.arange(start, start + 2 * n, 2, dtype=np.int64)
    return VideoResult(
        video_id=video_id,
        source=f"s3://in/{video_id}.mp4",
        n_frames=start + 2 * n,
        fps=25.0,
        width=96,
        height=54,
        duration=(start + 2 * n) / 25.0,
        frame_indices=frames,
        timestamps=frames / 25.0,
        maps=_MAPS[order].copy(),
    )


def failed_result(video_id: str) -> VideoResult:
    return VideoResult.failed(video_id, f"/in/{video_id}.mp4", "truncated", "moov atom not found", fps=30.0)


@pytest.fixture(params=["local", "s3"])
def where(request):
    return request.param


@pytest.fixture
def out(where, tmp_path, request):
    if where == "local":
        return str(tmp_path / "out"), None
    s3 = request.getfixturevalue("s3")
    return f"s3://{s3['bucket']}/run", s3["storage_options"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(fmt, out):
    uri, opts = out
    results = [ok_result("a/clip [1080p] one", 5, seed=1), failed_result("broken"), ok_result("b", 3, start=7, seed=2)]
    with open_shard_writer(
        uri, "s0001", format=fmt, store_size=STORE, model_size=MODEL, run_info=RUN_INFO, storage_options=opts
    ) as w:
        for r in results:
            w.write(r)
        record = w.commit()
    assert record.n_videos == 3 and record.n_ok == 2 and record.n_failed == 1 and record.n_maps == 8
    assert record.weights["kind"] == "random" and record.config_fingerprint == "cfg-123"
    assert [f.video_id for f in record.failures] == ["broken"] and record.failures[0].reason
    assert committed_shards(uri, opts) == {"s0001": record}

    res = open_results(uri, opts)
    table = res.videos()
    assert table["video_id"].to_pylist() == ["a/clip [1080p] one", "broken", "b"]
    assert table["status"].to_pylist() == ["ok", "failed", "ok"]
    assert table["error"].to_pylist() == [None, "moov atom not found", None]
    assert table["weights_kind"].to_pylist() == ["random"] * 3
    assert table["n_maps"].to_pylist() == [5, 0, 3]
    for r in (results[0], results[2]):
        expected = resize_maps(r.maps, STORE)
        got = res.maps(r.video_id)
        assert got.dtype == np.uint8 and got.shape == (len(r.maps), *STORE)
        np.testing.assert_array_equal(got, expected)  # lossless at store size: exact bytes
        np.testing.assert_array_equal(res.frame_indices(r.video_id), r.frame_indices)
        np.testing.assert_array_equal(res.timestamps(r.video_id), r.timestamps)
        np.testing.assert_array_equal(res.maps(r.video_id, size="model"), resize_maps(expected, MODEL))
        assert res.maps(r.video_id, size="source").shape == (len(r.maps), 54, 96)
        assert res.maps(r.video_id, size=(20, 30)).shape == (len(r.maps), 20, 30)
    with pytest.raises(StoreError, match="failed"):
        res.maps("broken")
    with pytest.raises(StoreError, match="no video"):
        res.maps("nope")
    items = list(res)
    assert [v.video_id for v in items] == ["a/clip [1080p] one", "broken", "b"]
    assert [len(v.maps) for v in items] == [5, 0, 3]
    res.verify()


def test_interrupted_shard_is_invisible_and_redone_without_duplicates(out):
    uri, opts = out
    # shard s1 committed, shard s2 interrupted after writing its data but before the record
    with open_shard_writer(uri, "s1", store_size=STORE, model_size=MODEL, run_info=RUN_INFO, storage_options=opts) as w:
        w.write(ok_result("v1", 4))
        w.commit()
    crashed = open_shard_writer(uri, "s2", store_size=STORE, model_size=MODEL, run_info=RUN_INFO, storage_options=opts)
    crashed.write(ok_result("v2", 6, seed=5))
    crashed.write(ok_result("v3", 2, seed=6))
    crashed._finish()  # data objects complete on storage, no commit record: a crash here
    fs = crashed.fs
    assert fs.exists(f"{crashed.root}/{crashed.prefix}/maps.parquet")

    assert set(committed_shards(uri, opts)) == {"s1"} and read_commit(uri, "s2", opts) is None
    res = open_results(uri, opts)
    assert res.videos()["video_id"].to_pylist() == ["v1"]
    assert "v2" not in res

    # the redo: a fresh attempt of s2 (with one more video), committed
    with open_shard_writer(uri, "s2", store_size=STORE, model_size=MODEL, run_info=RUN_INFO, storage_options=opts) as w:
        assert w.prefix != crashed.prefix
        for r in (ok_result("v2", 6, seed=5), ok_result("v3", 2, seed=6), failed_result("v4")):
            w.write(r)
        redo = w.commit()
    res = open_results(uri, opts)
    assert sorted(res.videos()["video_id"].to_pylist()) == ["v1", "v2", "v3", "v4"]
    assert res.maps("v2").shape == (6, *STORE) and res.maps("v3").shape == (2, *STORE)
    np.testing.assert_array_equal(res.frame_indices("v2"), np.arange(0, 12, 2))
    np.testing.assert_array_equal(res.maps("v2"), resize_maps(ok_result("v2", 6, seed=5).maps, STORE))
    # the crashed attempt's files are still there, unseen; the orphan sweep removes exactly them
    assert remove_orphans(uri, opts) == [crashed.prefix]
    assert not fs.exists(f"{crashed.root}/{crashed.prefix}")
    res = open_results(uri, opts)
    assert res.videos().num_rows == 4 and read_commit(uri, "s2", opts) == redo
    res.verify()


@pytest.mark.parametrize("fmt", ["zarr", "png"])
def test_interrupted_other_formats_invisible(fmt, tmp_path):
    uri = str(tmp_path / "o")
    crashed = open_shard_writer(uri, "x", format=fmt, store_size=STORE, model_size=MODEL, run_info=RUN_INFO)
    crashed.write(ok_result("v", 3))
    crashed._finish()
    assert open_results(uri).videos().num_rows == 0
    w = open_shard_writer(uri, "x", format=fmt, store_size=STORE, model_size=MODEL, run_info=RUN_INFO)
    w.write(ok_result("v", 3))
    w.commit()
    res = open_results(uri)
    assert res.videos()["video_id"].to_pylist() == ["v"] and res.maps("v").shape == (3, *STORE)


def test_abort_and_context_manager_leave_nothing(tmp_path):
    uri = str(tmp_path / "o")
    with pytest.raises(RuntimeError):
        with open_shard_writer(uri, "s", store_size=STORE, model_size=MODEL, run_info=RUN_INFO) as w:
            w.write(ok_result("v"))
            raise RuntimeError("worker died")
    assert committed_shards(uri) == {}
    assert not (tmp_path / "o" / "shards" / "s").exists() or not any((tmp_path / "o" / "shards" / "s").iterdir())


def test_commit_record_lists_every_file_with_checksums(tmp_path):
    uri = str(tmp_path / "o")
    w = open_shard_writer(uri, "s7", format="zarr", store_size=STORE, model_size=MODEL, run_info=RUN_INFO)
    w.write(ok_result("v"))
    record = w.commit()
    on_disk = json.loads((tmp_path / "o" / "_commits" / "s7.json").read_text())
    assert on_disk == record.to_dict()
    listed = {f.path for f in record.files}
    actual = {str(p.relative_to(tmp_path / "o")) for p in (tmp_path / "o" / "shards").rglob("*") if p.is_file()}
    assert listed == actual
    assert {"videos.parquet", "maps.zarr/zarr.json", "maps.zarr/v00000/zarr.json"} <= {
        p.split("/", 3)[3] for p in listed
    }
    # one shard object for the array's frames: object counts stay low
    assert sum("/c/" in p for p in listed) == 1


def test_damaged_file_fails_verify(tmp_path):
    uri = str(tmp_path / "o")
    w = open_shard_writer(uri, "s", store_size=STORE, model_size=MODEL, run_info=RUN_INFO)
    w.write(ok_result("v"))
    record = w.commit()
    path = tmp_path / "o" / record.files[0].path
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="does not match"):
        open_results(uri).verify()


def test_writer_rejects_bad_input(tmp_path):
    uri = str(tmp_path / "o")
    with pytest.raises(StoreError, match="format"):
        open_shard_writer(uri, "s", format="hdf5", store_size=STORE, model_size=MODEL, run_info=RUN_INFO)
    with pytest.raises(StoreError, match="shard id"):
        open_shard_writer(uri, "../x", store_size=STORE, model_size=MODEL, run_info=RUN_INFO)
    with pytest.raises(StoreError, match="does not fit"):
        open_shard_writer(uri, "s", store_size=(64, 64), model_size=MODEL, run_info=RUN_INFO)
    with pytest.raises(StoreError, match="kind"):
        open_shard_writer(
            uri,
            "s",
            store_size=STORE,
            model_size=MODEL,
            run_info={**RUN_INFO, "weights": {**RUN_INFO["weights"], "kind": "?"}},
        )
    w = open_shard_writer(uri, "s", store_size=STORE, model_size=MODEL, run_info=RUN_INFO)
    w.write(ok_result("v"))
    with pytest.raises(StoreError, match="twice"):
        w.write(ok_result("v"))
    bad = ok_result("w")
    bad.maps = bad.maps[:, :16]
    with pytest.raises(StoreError, match="model size"):
        w.write(bad)
    bad = ok_result("w")
    bad.frame_indices = bad.frame_indices[::-1].copy()
    with pytest.raises(StoreError, match="increasing"):
        w.write(bad)
    w.commit()
    with pytest.raises(StoreError, match="already committed"):
        w.write(ok_result("z"))


def test_default_store_size_is_used(tmp_path):
    from tased_batch.stores import default_store_size

    w = open_shard_writer(str(tmp_path / "o"), "s", store_size=None, model_size=(224, 384), run_info=RUN_INFO)
    assert w.store_size == default_store_size((224, 384))
    w.abort()


def test_duplicate_video_across_shards_is_an_error(tmp_path):
    uri = str(tmp_path / "o")
    for shard in ("a", "b"):
        w = open_shard_writer(uri, shard, store_size=STORE, model_size=MODEL, run_info=RUN_INFO)
        w.write(ok_result("same"))
        w.commit()
    with pytest.raises(StoreError, match="two committed shards"):
        open_results(uri)


def test_write_png_maps_layout(out):
    uri, opts = out
    maps = _MAPS[:3]
    paths = write_png_maps(uri, "clip 1", maps, np.array([0, 1, 9]), storage_options=opts)
    assert [p.rsplit("/", 2)[1:] for p in paths] == [
        ["clip 1", "0001.png"],
        ["clip 1", "0002.png"],
        ["clip 1", "0010.png"],
    ]
    res_fs = open_results(uri, opts).fs
    for path, image in zip(paths, maps):
        np.testing.assert_array_equal(decode_png(res_fs.cat_file(path)), image)
    assert png_name(9999) == "10000.png"


@pytest.mark.parametrize("fmt", FORMATS)
def test_video_with_no_maps_and_all_failed_shard(fmt, tmp_path):
    uri = str(tmp_path / fmt)
    empty = ok_result("empty", 0)
    w = open_shard_writer(uri, "s", format=fmt, store_size=STORE, model_size=MODEL, run_info=RUN_INFO)
    w.write(empty)
    w.commit()
    w = open_shard_writer(uri, "t", format=fmt, store_size=STORE, model_size=MODEL, run_info=RUN_INFO)
    w.write(failed_result("bad"))
    assert w.commit().n_maps == 0
    res = open_results(uri)
    assert res.maps("empty").shape == (0, *STORE) and res.frame_indices("empty").size == 0
    assert res.videos()["status"].to_pylist() == ["ok", "failed"]
    res.verify()


def test_verify_checks_png_files(tmp_path):
    uri = str(tmp_path / "o")
    w = open_shard_writer(uri, "s", format="png", store_size=STORE, model_size=MODEL, run_info=RUN_INFO)
    w.write(ok_result("v", 3))
    w.commit()
    open_results(uri).verify()
    next((tmp_path / "o").rglob("0003.png")).unlink()
    with pytest.raises(StoreError, match="0003.png"):
        open_results(uri).verify()


def test_late_zombie_commit_replaces_whole_shard_never_mixes(out):
    uri, opts = out
    kwargs = dict(store_size=STORE, model_size=MODEL, run_info=RUN_INFO, storage_options=opts)
    zombie = open_shard_writer(uri, "s", **kwargs)
    zombie.write(ok_result("v1", 3, seed=1))
    assert committed_shards(uri, opts) == {}  # nothing committed yet (on S3 nothing is even visible)
    zombie.write(ok_result("v2", 3, seed=2))
    redo = open_shard_writer(uri, "s", **kwargs)
    redo.write(ok_result("v1", 4, seed=3))
    redo.write(ok_result("v2", 4, seed=4))
    redo.commit()
    assert open_results(uri, opts).maps("v1").shape[0] == 4
    late = zombie.commit()  # the stalled worker wakes up and commits after the redo
    res = open_results(uri, opts)
    assert sorted(res.videos()["video_id"].to_pylist()) == ["v1", "v2"]
    assert res.shards["s"] == late
    np.testing.assert_array_equal(res.maps("v1"), resize_maps(ok_result("v1", 3, seed=1).maps, STORE))
    np.testing.assert_array_equal(res.maps("v2"), resize_maps(ok_result("v2", 3, seed=2).maps, STORE))
    assert remove_orphans(uri, opts) == [redo.prefix]
    res.verify()


def test_unconfirmed_commit_record_keeps_data(tmp_path, monkeypatch):
    from tased_batch.stores import layout

    uri = str(tmp_path / "o")
    w = open_shard_writer(uri, "s", store_size=STORE, model_size=MODEL, run_info=RUN_INFO)
    w.write(ok_result("v"))

    def lost(*args, **kwargs):
        raise StoreError("connection reset")

    monkeypatch.setattr(layout, "write_commit", lost)
    with pytest.raises(StoreError, match="not confirmed"):
        w.commit()
    with pytest.raises(StoreError, match="kept"):
        w.abort()
    assert (tmp_path / "o" / w.prefix / "maps.parquet").exists()
