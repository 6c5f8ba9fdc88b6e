"""Summaries in real stores: written next to the maps, read back by open_results, DuckDB and Polars."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tased_batch.core.records import VideoResult
from tased_batch.stores import open_shard_writer
from tased_batch.stores.reader import open_results
from tased_batch.stores.summaries import FRAME_COLUMNS, VIDEO_COLUMNS, frame_stats
from tased_batch.stores.synthetic import synthetic_saliency_maps

RUN_INFO = {"config_fingerprint": "f", "weights": {"sha256": "0" * 64, "kind": "released", "uri": "gdrive://TASED"}}
MODEL = (224, 384)

# How far statistics of a map read back at the default store size (38 x 64, area-downsized) may be
# from those the writer computed at model size (224 x 384); docs/summaries.md states the same.
STORE_SIZE_TOLERANCE = {
    "peak_x": 1.5 / 64,
    "peak_y": 1.5 / 38,
    "peak_value": 0.02,
    "mean_value": 0.001,
    "com_x": 0.002,
    "com_y": 0.002,
    "spread_x": 0.002,
    "spread_y": 0.002,
    "entropy": 0.1,
    "entropy_area": 0.005,
    "area50": 0.005,
    "area90": 0.005,
    "box90_x0": 2 / 64,
    "box90_y0": 2 / 38,
    "box90_x1": 2 / 64,
    "box90_y1": 2 / 38,
    "box90_mass": 0.03,
}


def video(video_id: str, maps: np.ndarray, fps: float = 25.0, width: int = 1920, height: int = 1080) -> VideoResult:
    frames = np.arange(len(maps), dtype=np.int64) * 2  # maps every 2nd frame
    return VideoResult(
        video_id=video_id,
        source=f"/v/{video_id}.mp4",
        n_frames=2 * len(maps),
        fps=fps,
        width=width,
        height=height,
        duration=2 * len(maps) / fps,
        frame_indices=frames,
        timestamps=frames / fps,
        maps=maps,
    )


def blob_maps(n: int, size: tuple[int, int], x: float) -> np.ndarray:
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    one = np.round(255 * np.exp(-((xx - x * w) ** 2 + (yy - h / 2) ** 2) / (2 * (0.05 * w) ** 2)))
    return np.repeat(one[None].astype(np.uint8), n, axis=0)


@pytest.fixture(scope="module")
def model_maps() -> dict[str, np.ndarray]:
    return {f"clip{seed}": synthetic_saliency_maps(4, size=MODEL, seed=seed) for seed in (1, 2, 3)}


@pytest.mark.parametrize("fmt", ["parquet", "zarr", "png"])
def test_stats_at_store_size_match_model_size(fmt, model_maps, tmp_path):
    uri = str(tmp_path / fmt)
    with open_shard_writer(uri, "s0", format=fmt, model_size=MODEL, run_info=RUN_INFO) as writer:
        for video_id, maps in model_maps.items():
            writer.write(video(video_id, maps))
        writer.commit()
    res = open_results(uri)
    table = res.frame_stats()
    assert table.num_rows == 12 and sorted(set(table["video_id"].to_pylist())) == sorted(model_maps)
    for video_id in model_maps:
        stored = res.frame_stats(video_id)
        assert stored["frame_index"].to_pylist() == [0, 2, 4, 6]
        assert stored["timestamp"].to_pylist() == pytest.approx([0, 0.08, 0.16, 0.24])
        back = frame_stats(torch.from_numpy(res.maps(video_id)))  # at store size, 38 x 64
        for column in FRAME_COLUMNS:
            written = stored[column.name].to_numpy()
            assert np.all((written >= 0) & (written <= 1)), column.name
            np.testing.assert_allclose(
                back[column.name].numpy(), written, atol=STORE_SIZE_TOLERANCE[column.name], err_msg=column.name
            )
    videos = res.videos()
    assert videos.schema.field("focus").type == pa.float64()
    assert all(v is not None for v in videos["com_x_mean"].to_pylist())
    assert videos["crop_aspect"].to_pylist() == [None] * 3  # no --crop
    assert res.crop_track().num_rows == 0


def test_crop_track_in_the_store_and_at_read_time(tmp_path):
    uri = str(tmp_path / "o")
    with open_shard_writer(
        uri, "s0", format="zarr", store_size=(16, 32), model_size=(96, 160), run_info=RUN_INFO, crop="9:16"
    ) as writer:
        writer.write(video("left", blob_maps(6, (96, 160), 0.25)))
        writer.write(VideoResult.failed("bad", "/v/bad.mp4", "decode-error", "broken"))
        record = writer.commit()
    assert any(f.path.endswith("crop.parquet") for f in record.files)
    res = open_results(uri)
    track = res.crop_track("left")
    assert track.num_rows == 6 and set(track["crop_w"].to_pylist()) == {606}
    assert track["crop_x"].to_pylist() == pytest.approx([0.25 * 1920 - 303] * 6, abs=15)
    row = res.videos().filter(pa.compute.equal(res.videos()["video_id"], "left")).to_pylist()[0]
    assert (row["crop_aspect"], row["crop_width"], row["crop_height"]) == ("9:16", 606, 1080)
    assert row["crop_mass_mean"] > 0.99
    assert res.crop_track("bad").num_rows == 0
    # another aspect: computed now from the stored 16 x 32 maps
    square = res.crop_track("left", "1:1")
    assert set(square["crop_w"].to_pylist()) == {1080} and square["crop_aspect"][0].as_py() == "1:1"
    assert square["crop_x"].to_pylist() == pytest.approx([0.25 * 1920 - 540] * 6, abs=1920 / 32)


def test_outputs_without_summaries_still_read(tmp_path):
    """An output written before the summaries: its tables lack the columns; maps still read."""
    uri = str(tmp_path / "old")
    maps = blob_maps(3, (32, 64), 0.5)
    with open_shard_writer(uri, "s0", store_size=(16, 32), model_size=(32, 64), run_info=RUN_INFO) as writer:
        writer.write(video("v", maps))
        record = writer.commit()
    old_columns = {"videos.parquet": len(VIDEO_COLUMNS), "maps.parquet": len(FRAME_COLUMNS)}
    for entry in record.files:
        name = entry.path.rsplit("/", 1)[1]
        path = tmp_path / "old" / entry.path
        table = pq.read_table(path)
        pq.write_table(table.select(table.column_names[: table.num_columns - old_columns[name]]), path)
    # the older version's commit record listed those files as they were then
    record_path = tmp_path / "old" / "_commits" / "s0.json"
    data = json.loads(record_path.read_text())
    for entry in data["files"]:
        content = (tmp_path / "old" / entry["path"]).read_bytes()
        entry.update(bytes=len(content), sha256=hashlib.sha256(content).hexdigest())
    record_path.write_text(json.dumps(data))
    res = open_results(uri)
    assert res.videos()["focus"].to_pylist() == [None] and res.videos()["n_maps"].to_pylist() == [3]
    assert res.frame_stats().num_rows == 0 and res.frame_stats("v").num_rows == 0
    assert res.maps("v").shape == (3, 16, 32)

    # An index folded by an older version (its video rows without the columns), then a newer shard folded in.
    from tased_batch.stores import index, layout

    fs, root = layout.open_fs(uri)
    index.fold(fs, root)
    (folded,) = (tmp_path / "old" / "_index").glob("videos-*.parquet")
    table = pq.read_table(folded)
    pq.write_table(table.drop_columns([c.name for c in VIDEO_COLUMNS]), folded)
    assert open_results(uri).videos()["focus"].to_pylist() == [None]
    with open_shard_writer(uri, "s1", store_size=(16, 32), model_size=(32, 64), run_info=RUN_INFO) as writer:
        writer.write(video("w", maps))
        writer.commit()
    index.fold(fs, root)
    focus = dict(zip(*(open_results(uri).videos()[c].to_pylist() for c in ("video_id", "focus"))))
    assert focus["v"] is None and focus["w"] is not None


def _two_shard_store(tmp_path) -> tuple[str, str]:
    uri = str(tmp_path / "run")
    for shard, (video_id, x) in enumerate((("cat", 0.2), ("dog", 0.7))):
        with open_shard_writer(
            uri, f"s{shard}", store_size=(16, 32), model_size=(96, 160), run_info=RUN_INFO
        ) as writer:
            writer.write(video(video_id, blob_maps(5, (96, 160), x)))
            if shard:
                writer.write(VideoResult.failed("owl", "/v/owl.mp4", "not-video", "not a video"))
            writer.commit()
    manifest = tmp_path / "captions.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows(
            [["video_id", "caption"], ["cat", "a cat on the left"], ["dog", "a dog"], ["owl", "an owl"]]
        )
    return uri, str(manifest)


def test_duckdb_joins_summaries_to_a_captions_manifest(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    uri, manifest = _two_shard_store(tmp_path)
    res = open_results(uri)
    # as README.md shows it: relations over the committed files, queried by their Python names
    videos = duckdb.read_parquet(res.table_files("videos.parquet"))  # noqa: F841
    maps = duckdb.read_parquet(res.table_files("maps.parquet"))  # noqa: F841
    rows = duckdb.sql(
        f"""
        SELECT c.video_id, c.caption, v.focus, v.com_x_mean, count(m.frame_index) AS maps, avg(m.com_x) AS com_x
        FROM read_csv('{manifest}') c
        LEFT JOIN videos v USING (video_id)
        LEFT JOIN maps m USING (video_id)
        GROUP BY ALL ORDER BY c.video_id
        """
    ).fetchall()
    assert [r[:2] for r in rows] == [("cat", "a cat on the left"), ("dog", "a dog"), ("owl", "an owl")]
    (cat, dog, owl) = rows
    assert cat[4] == dog[4] == 5 and owl[4] == 0 and owl[2] is None  # the failed video has no summaries
    assert cat[3] == pytest.approx(0.2, abs=0.01) and cat[5] == pytest.approx(0.2, abs=0.01)
    assert dog[3] == pytest.approx(0.7, abs=0.01) and dog[2] > 0.9
    types = dict(duckdb.sql("SELECT column_name, column_type FROM (DESCRIBE maps)").fetchall())
    assert types["com_x"] == "FLOAT" and types["frame_index"] == "BIGINT"


def test_polars_joins_summaries_to_a_captions_manifest(tmp_path):
    pl = pytest.importorskip("polars")
    uri, manifest = _two_shard_store(tmp_path)
    res = open_results(uri)
    videos = pl.scan_parquet(res.table_files("videos.parquet"))
    captions = pl.scan_csv(manifest)
    joined = (
        captions.join(videos.select("video_id", "focus", "com_x_mean"), on="video_id", how="left")
        .sort("video_id")
        .collect()
    )
    assert joined["video_id"].to_list() == ["cat", "dog", "owl"]
    assert joined["com_x_mean"][0] == pytest.approx(0.2, abs=0.01) and joined["focus"][2] is None
    frames = pl.scan_parquet(res.table_files("maps.parquet")).select("video_id", "frame_index", "peak_x").collect()
    assert frames.height == 10


def test_readme_polars_join_keeps_zero_padded_ids(tmp_path):
    """video2dataset keys (000000, 000001) must join as text: scan_csv alone reads them as integers."""
    pl = pytest.importorskip("polars")
    uri = str(tmp_path / "run")
    with open_shard_writer(uri, "s0", store_size=(16, 32), model_size=(96, 160), run_info=RUN_INFO) as writer:
        for i, key in enumerate(("000000", "000001")):
            writer.write(video(key, blob_maps(3, (96, 160), 0.2 + 0.5 * i)))
        writer.commit()
    manifest = tmp_path / "captions.csv"
    manifest.write_text("video_id,caption\n000000,first\n000001,second\n")
    videos = pl.scan_parquet(open_results(uri).table_files("videos.parquet"))
    with pytest.raises(pl.exceptions.PolarsError):  # what the README showed: i64 against str
        pl.scan_csv(manifest).join(videos.select("video_id", "focus"), on="video_id").collect()
    joined = (
        pl.scan_csv(manifest, schema_overrides={"video_id": pl.String})  # as README.md shows it
        .join(videos.select("video_id", "focus"), on="video_id")
        .sort("video_id")
        .collect()
    )
    assert joined["video_id"].to_list() == ["000000", "000001"] and joined["caption"].to_list() == ["first", "second"]


def test_streaming_summaries_keep_only_closed_videos(tmp_path):
    """The streaming writer's use: batches per video, then close, or drop when the video fails part-way."""
    from tased_batch.stores.base import ShardSummaries

    maps = blob_maps(6, (32, 64), 0.3)
    summaries = ShardSummaries("1:1", in_maps=False)
    good, bad = summaries.open_video("good", 640, 360), summaries.open_video("bad", 640, 360)
    for start in (0, 3):  # two batches each, interleaved
        for summary in (good, bad):
            frames = np.arange(start, start + 3)
            summaries.add_rows(
                summary.add(frames, frames / 25.0, frame_stats(torch.from_numpy(maps[start : start + 3])))
            )
    summaries.close_video(good)
    summaries.drop_video("bad")
    with open_shard_writer(
        str(tmp_path / "o"), "s0", format="png", store_size=(16, 32), model_size=(32, 64), run_info=RUN_INFO
    ) as writer:
        entries = summaries.write(writer)
        tables = {e.path.rsplit("/", 1)[1]: pq.read_table(tmp_path / "o" / e.path) for e in entries}
    assert tables["frame_stats.parquet"]["video_id"].to_pylist() == ["good"] * 6
    assert tables["frame_stats.parquet"]["frame_index"].to_pylist() == list(range(6))
    assert tables["crop.parquet"]["video_id"].to_pylist() == ["good"] * 6
    assert set(summaries.videos) == {"good"} and summaries.videos["good"]["crop_width"] == 360


@pytest.mark.parametrize("fmt", ["parquet", "png"])
def test_summaries_on_object_storage(fmt, s3):
    uri = f"s3://{s3['bucket']}/run"
    opts = s3["storage_options"]
    with open_shard_writer(
        uri,
        "s0",
        format=fmt,
        store_size=(16, 32),
        model_size=(96, 160),
        run_info=RUN_INFO,
        storage_options=opts,
        crop="9:16",
    ) as writer:
        writer.write(video("v", blob_maps(4, (96, 160), 0.6)))
        writer.commit()
    res = open_results(uri, storage_options=opts)
    assert res.frame_stats("v")["com_x"].to_numpy() == pytest.approx([0.6] * 4, abs=0.01)
    assert res.crop_track("v").num_rows == 4
    files = res.table_files("videos.parquet")
    assert len(files) == 1 and files[0].startswith(f"s3://{s3['bucket']}/run/shards/s0/")
    with s3["fs"].open(files[0], "rb") as handle:  # plain Parquet at the listed URI
        assert pq.read_table(handle, columns=["video_id", "focus"])["focus"][0].as_py() > 0.9


@pytest.mark.parametrize("fmt", ["parquet", "zarr"])
def test_sinks_write_the_statistics_of_complete_videos_only(fmt, tmp_path, monkeypatch):
    """Sinks fed batch by batch (with the engine's statistics, or none): a long video spilled to its
    own Parquet part file keeps its statistics, a restarted video has its rows once, a failed one none."""
    import tased_batch.stores.parquet as parquet
    from tased_batch.core.records import VideoMeta

    monkeypatch.setattr(parquet, "SPILL_BYTES", 1)  # every Parquet video goes to its own part file
    uri = str(tmp_path / "run")
    maps = blob_maps(8, (32, 64), 0.3)
    frames = np.arange(8, dtype=np.int64)
    meta = VideoMeta(n_frames=8, fps=25.0, width=640, height=360, duration=0.32)
    with open_shard_writer(
        uri, "s0", format=fmt, store_size=(16, 32), model_size=(32, 64), run_info=RUN_INFO, crop="1:1"
    ) as writer:
        long, retried, broken = (writer.open_video(v, f"/v/{v}.mp4", meta) for v in ("long", "retried", "broken"))
        for start in (0, 4):
            part = slice(start, start + 4)
            extras = {k: v.numpy() for k, v in frame_stats(torch.from_numpy(maps[part])).items()}
            long.append(frames[part], frames[part] / 25.0, maps[part], extras)
            retried.append(frames[part], frames[part] / 25.0, maps[part])  # no extras: computed by the sink
            broken.append(frames[part], frames[part] / 25.0, maps[part], extras)
        retried.restart()
        retried.append(frames, frames / 25.0, maps)
        broken.fail("decode-error", "corrupt packet")
        long.close()
        retried.close()
        writer.commit()
    res = open_results(uri)
    stats = res.frame_stats()
    assert stats["video_id"].to_pylist() == ["long"] * 8 + ["retried"] * 8
    assert stats["frame_index"].to_pylist() == list(range(8)) * 2
    expected = frame_stats(torch.from_numpy(maps))
    for column in FRAME_COLUMNS:  # both ways give the statistics of the model-size maps
        for video_id in ("long", "retried"):
            got = res.frame_stats(video_id)[column.name].to_numpy()
            np.testing.assert_allclose(got, expected[column.name].numpy(), rtol=1e-6, atol=1e-7)
    if fmt == "parquet":
        assert len(res.table_files("maps.parquet")) == 3  # the shared file and the two videos' part files
    rows = {row["video_id"]: row for row in res.videos().to_pylist()}
    assert rows["broken"]["focus"] is None and rows["long"]["crop_width"] == 360
    assert res.crop_track()["video_id"].to_pylist() == ["long"] * 8 + ["retried"] * 8
