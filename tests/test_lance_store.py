"""`--format lance`: workers write fragments, the driver appends committed shards once;
a crashed or redone shard never shows twice; maps read back by video id."""

from __future__ import annotations

import numpy as np
import pytest

from tased_batch.core.records import VideoResult
from tased_batch.stores import committed_shards, open_shard_writer
from tased_batch.stores.reader import open_results
from tased_batch.stores.resample import resize_maps
from tased_batch.stores.synthetic import synthetic_saliency_maps

lance = pytest.importorskip("lance")
from tased_batch.stores.lance_store import append_committed  # noqa: E402

MODEL = (32, 64)
STORE = (8, 16)
RUN_INFO = {"config_fingerprint": "cfg-l", "weights": {"sha256": "ef" * 32, "kind": "random", "uri": "random://0"}}
_MAPS = synthetic_saliency_maps(12, size=MODEL, seed=7)


def ok(video_id: str, n: int, seed: int) -> VideoResult:
    order = np.random.default_rng(seed).permutation(len(_MAPS))[:n]
    frames = np.arange(0, 2 * n, 2, dtype=np.int64)
    return VideoResult(
        video_id,
        f"/in/{video_id}.mp4",
        n_frames=2 * n,
        fps=25.0,
        width=96,
        height=54,
        frame_indices=frames,
        timestamps=frames / 25.0,
        maps=_MAPS[order].copy(),
    )


def write(out: str, shard: str, results: list[VideoResult], commit: bool = True):
    writer = open_shard_writer(out, shard, format="lance", store_size=STORE, model_size=MODEL, run_info=RUN_INFO)
    for result in results:
        writer.write(result)
    return writer.commit() if commit else writer


def rows_per_video(out: str) -> dict[str, int]:
    table = lance.dataset(f"{out}/maps.lance").to_table(columns=["video_id"])
    ids = table["video_id"].to_pylist()
    return {v: ids.count(v) for v in sorted(set(ids))}


def test_committed_shards_are_appended_once_and_read_by_id(tmp_path):
    out = str(tmp_path / "out")
    a, b = ok("a", 5, 1), ok("it's b", 3, 2)
    write(out, "s1", [a, VideoResult.failed("bad", "/in/bad.mp4", "truncated", "moov atom not found")])
    write(out, "s2", [b])
    crashed = write(out, "s3", [ok("c", 4, 3)], commit=False)  # fragments written, no commit record
    crashed._flush()
    records = committed_shards(out)
    assert append_committed(out, records) == 2
    assert append_committed(out, records) == 0  # reconciling again appends nothing
    assert rows_per_video(out) == {"a": 5, "it's b": 3}  # nothing of the uncommitted shard
    videos = lance.dataset(f"{out}/videos.lance").to_table().sort_by("video_id")
    assert videos["video_id"].to_pylist() == ["a", "bad", "it's b"]
    assert videos["status"].to_pylist() == ["ok", "failed", "ok"]

    res = open_results(out)
    for r in (a, b):
        np.testing.assert_array_equal(res.maps(r.video_id), resize_maps(r.maps, STORE))
        np.testing.assert_array_equal(res.frame_indices(r.video_id), r.frame_indices)
    hit = lance.dataset(f"{out}/maps.lance").to_table(filter="video_id = 'a'")
    assert hit.num_rows == 5 and hit["entropy"].to_pylist() == res.frame_stats("a")["entropy"].to_pylist()


def test_a_redone_shard_replaces_its_rows_and_old_versions_stay_readable(tmp_path):
    out = str(tmp_path / "out")
    write(out, "s1", [ok("a", 5, 1)])
    append_committed(out, committed_shards(out))
    first = lance.dataset(f"{out}/maps.lance").version
    write(out, "s1", [ok("a", 4, 9)])  # redone (e.g. --retry-failed): a new attempt replaces the record
    append_committed(out, committed_shards(out))
    assert rows_per_video(out) == {"a": 4}
    assert lance.dataset(f"{out}/maps.lance", version=first).count_rows() == 5
    np.testing.assert_array_equal(open_results(out).maps("a"), resize_maps(ok("a", 4, 9).maps, STORE))
