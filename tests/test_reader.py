"""Reader and export: sizes, fidelity of the default stored size, Parquet layout, CLI."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from tased_batch.core.errors import StoreError
from tased_batch.core.records import VideoResult
from tased_batch.stores import default_store_size, open_shard_writer
from tased_batch.stores.png import decode_png
from tased_batch.stores.reader import open_results
from tased_batch.stores.resample import parse_size, resize_maps
from tased_batch.stores.summaries import FRAME_COLUMNS
from tased_batch.stores.synthetic import synthetic_saliency_maps

RUN_INFO = {"config_fingerprint": "f", "weights": {"sha256": "0" * 64, "kind": "released", "uri": "gdrive://TASED"}}
MODEL = (224, 384)


def result(video_id: str, maps: np.ndarray, first: int = 0) -> VideoResult:
    frames = np.arange(first, first + len(maps), dtype=np.int64)
    return VideoResult(
        video_id=video_id,
        source=f"/v/{video_id}.mp4",
        n_frames=first + len(maps),
        fps=30.0,
        width=640,
        height=360,
        duration=(first + len(maps)) / 30.0,
        frame_indices=frames,
        timestamps=frames / 30.0,
        maps=maps,
    )


def cc(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.fixture(scope="module")
def full_maps() -> np.ndarray:
    return synthetic_saliency_maps(6, size=MODEL, seed=11)


@pytest.mark.parametrize("fmt", ["parquet", "zarr", "png"])
def test_default_store_size_keeps_fidelity(fmt, full_maps, tmp_path):
    uri = str(tmp_path / fmt)
    w = open_shard_writer(uri, "s", format=fmt, store_size=None, model_size=MODEL, run_info=RUN_INFO)
    w.write(result("v", full_maps))
    w.commit()
    res = open_results(uri)
    back = res.maps("v", size="model")
    assert back.shape == full_maps.shape
    for original, restored in zip(full_maps, back):
        assert cc(original, restored) >= 0.999
    stored = res.maps("v")
    assert stored.shape[1:] == default_store_size(MODEL)
    np.testing.assert_array_equal(stored, resize_maps(full_maps, default_store_size(MODEL)))


def test_parquet_layout_zstd_no_blob_dictionary_and_byte_sized_row_groups(monkeypatch, tmp_path):
    import tased_batch.stores.parquet as pqstore

    monkeypatch.setattr(pqstore, "ROW_GROUP_BYTES", 1)  # every video flushes its own row group
    uri = str(tmp_path / "o")
    maps = synthetic_saliency_maps(4, size=(64, 96), seed=2)
    w = open_shard_writer(uri, "s", store_size=(16, 24), model_size=(64, 96), run_info=RUN_INFO)
    for name, first in (("b", 0), ("a", 10), ("c", 20)):
        w.write(result(name, maps, first))
    record = w.commit()
    path = tmp_path / "o" / next(f.path for f in record.files if f.path.endswith("maps.parquet"))
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 3 and meta.num_rows == 12
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    assert names[:7] == ["video_id", "frame_index", "timestamp", "encoding", "height", "width", "data"]
    assert names[7:] == [c.name for c in FRAME_COLUMNS]  # the saliency statistics follow the blob
    for g in range(3):
        blob = meta.row_group(g).column(6)
        assert blob.compression == "ZSTD"
        assert not any("DICTIONARY" in e for e in blob.encodings)
        assert blob.statistics is None or not blob.statistics.has_min_max
    table = pq.read_table(path)
    assert set(table["encoding"].to_pylist()) == {"png"}
    res = open_results(uri)
    np.testing.assert_array_equal(res.frame_indices("a"), [10, 11, 12, 13])
    np.testing.assert_array_equal(res.maps("a"), resize_maps(maps, (16, 24)))


def test_iteration_sizes_and_timestamps(tmp_path):
    uri = str(tmp_path / "o")
    maps = synthetic_saliency_maps(3, size=(32, 64), seed=4)
    for shard, vid in (("s1", "x"), ("s2", "y")):
        w = open_shard_writer(uri, shard, format="zarr", store_size=(8, 16), model_size=(32, 64), run_info=RUN_INFO)
        w.write(result(vid, maps, first=5))
        w.commit()
    res = open_results(uri)
    assert len(res) == 2 and sorted(v.video_id for v in res) == ["x", "y"]
    for item in res:
        np.testing.assert_array_equal(item.frame_indices, [5, 6, 7])
        np.testing.assert_allclose(item.timestamps, np.array([5, 6, 7]) / 30.0)
        assert item.maps.shape == (3, 8, 16)
    assert res.maps("x", size="source").shape == (3, 360, 640)
    assert res.maps("x", size=(4, 4)).shape == (3, 4, 4)
    with pytest.raises(StoreError, match="invalid size"):
        res.maps("x", size="huge")


def test_an_output_without_commits_reads_as_empty_and_a_missing_one_raises(tmp_path):
    (tmp_path / "started" / "_commits").mkdir(parents=True)  # a run that committed nothing yet
    res = open_results(str(tmp_path / "started"))
    assert res.videos().num_rows == 0 and list(res) == []
    assert "video_id" in res.videos().column_names
    with pytest.raises(StoreError, match="nothing-here does not exist"):
        open_results(str(tmp_path / "nothing-here"))  # a mistyped path is no empty result


def test_damaged_commit_record_is_reported(tmp_path):
    (tmp_path / "o" / "_commits").mkdir(parents=True)
    (tmp_path / "o" / "_commits" / "s.json").write_text("{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        open_results(str(tmp_path / "o"))


def test_lazy_package_export(tmp_path):
    import tased_batch

    assert tased_batch.open_results is open_results


def test_parse_size():
    assert parse_size("56x96") == (56, 96) and parse_size("7X9") == (7, 9)
    for bad in ("56", "0x9", "ax9", "5x-1"):
        with pytest.raises(StoreError):
            parse_size(bad)


@pytest.fixture
def cli_app():
    import typer

    from tased_batch.cli import results as results_cli

    app = typer.Typer()
    app.callback()(lambda: None)
    results_cli.register(app)
    return app


def test_cli_export(cli_app, tmp_path):
    from typer.testing import CliRunner

    uri = str(tmp_path / "o")
    maps = synthetic_saliency_maps(3, size=(32, 64), seed=8)
    w = open_shard_writer(uri, "s", store_size=(8, 16), model_size=(32, 64), run_info=RUN_INFO)
    w.write(result("clip", maps, first=0))
    w.commit()
    runner = CliRunner()
    out = tmp_path / "png"
    done = runner.invoke(cli_app, ["export", uri, "clip", str(out)])
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in (out / "clip").iterdir()) == ["0001.png", "0002.png", "0003.png"]
    expected = open_results(uri).maps("clip", size="model")
    for i in range(3):
        np.testing.assert_array_equal(decode_png((out / "clip" / f"{i + 1:04d}.png").read_bytes()), expected[i])
    done = runner.invoke(cli_app, ["export", uri, "clip", str(tmp_path / "small"), "--size", "4x6"])
    assert done.exit_code == 0 and decode_png((tmp_path / "small" / "clip" / "0002.png").read_bytes()).shape == (4, 6)
    done = runner.invoke(cli_app, ["export", uri, "nope", str(out)])
    assert done.exit_code == 2 and "no video 'nope'" in done.output


def test_iterating_a_shard_reads_each_row_group_once(monkeypatch, tmp_path):
    calls = []
    original = pq.ParquetFile.read_row_group

    def counting(self, i, *args, **kwargs):
        calls.append(i)
        return original(self, i, *args, **kwargs)

    uri = str(tmp_path / "o")
    maps = synthetic_saliency_maps(2, size=(32, 64), seed=1)
    w = open_shard_writer(uri, "s", store_size=(8, 16), model_size=(32, 64), run_info=RUN_INFO)
    for name in ("c", "a", "b"):
        w.write(result(name, maps))
    w.commit()
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    assert [v.maps.shape for v in open_results(uri)] == [(2, 8, 16)] * 3
    assert calls == [0]
