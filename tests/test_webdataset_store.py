"""`--format webdataset`: output tars aligned with the input tars, read back by the real
`webdataset` loader key by key, whole-or-nothing and byte-identical when a shard is redone."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from tased_batch.core.records import VideoResult
from tased_batch.stores import committed_shards, open_shard_writer
from tased_batch.stores.reader import open_results
from tased_batch.stores.resample import resize_maps
from tased_batch.stores.synthetic import synthetic_saliency_maps
from tased_batch.stores.webdataset_store import TarShardIds

wds = pytest.importorskip("webdataset")

MODEL = (32, 64)
STORE = (8, 16)
RUN_INFO = {
    "config_fingerprint": "cfg-wds",
    "weights": {"sha256": "cd" * 32, "kind": "random", "uri": "random://seed=0"},
}
_MAPS = synthetic_saliency_maps(12, size=MODEL, seed=5)


def ok(video_id: str, source: str, n: int, seed: int) -> VideoResult:
    order = np.random.default_rng(seed).permutation(len(_MAPS))[:n]
    frames = np.arange(0, 3 * n, 3, dtype=np.int64)
    return VideoResult(
        video_id=video_id,
        source=source,
        n_frames=3 * n,
        fps=30.0,
        width=96,
        height=54,
        frame_indices=frames,
        timestamps=frames / 30.0,
        maps=_MAPS[order].copy(),
    )


KEYS = ["000170001", "000170002", "000170003"]


def input_tar(path, keys: list[str]) -> str:
    """A video2dataset-style shard: KEY.mp4 (stand-in bytes; the last one ``KEY.v2.mp4``), KEY.txt, KEY.json."""
    with tarfile.open(path, "w") as tar:
        for key in keys:
            video = "v2.mp4" if key == keys[-1] else "mp4"
            for ext, data in ((video, b"video-" + key.encode()), ("txt", f"caption {key}".encode()), ("json", b"{}")):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return str(path)


def write_shard(out: str, tar: str, results: list[VideoResult], format: str = "webdataset") -> None:
    with open_shard_writer(
        out, "00017", format=format, store_size=STORE, model_size=MODEL, run_info=RUN_INFO
    ) as writer:
        for result in results:
            writer.write(result)
        writer.commit()


def shard_results(tar: str) -> list[VideoResult]:
    return [
        ok("000170001", f"{tar}::000170001.mp4", 4, seed=1),
        VideoResult.failed("000170002", f"{tar}::000170002.mp4", "truncated", "moov atom not found"),
        ok("000170003~ab12cd34", f"{tar}::000170003.v2.mp4", 3, seed=2),  # an id the allocator suffixed; a dotted name
    ]


def test_output_tar_reads_alongside_the_input_key_by_key(tmp_path):
    tar = input_tar(tmp_path / "00017.tar", KEYS)
    out = str(tmp_path / "out")
    results = shard_results(tar)
    write_shard(out, tar, results)

    inputs = list(wds.WebDataset(tar, shardshuffle=False))
    outputs = list(wds.WebDataset(str(tmp_path / "out/webdataset/00017.tar"), shardshuffle=False).decode())
    assert [s["__key__"] for s in outputs] == [s["__key__"] for s in inputs] == ["000170001", "000170002", "000170003"]
    res = open_results(out)
    for sample, result in zip(outputs, results):
        meta = sample["saliency.json"]
        assert meta["video_id"] == result.video_id and meta["status"] == result.status
        assert meta["weights_kind"] == "random" and meta["weights_sha256"] == "cd" * 32
        if result.ok:
            np.testing.assert_array_equal(sample["saliency.npy"], res.maps(result.video_id))
            np.testing.assert_array_equal(sample["saliency.npy"], resize_maps(result.maps, STORE))
            assert meta["frame_indices"] == result.frame_indices.tolist()
            assert meta["timestamps"] == pytest.approx(result.timestamps.tolist())
            stats = pq.read_table(io.BytesIO(sample["saliency.parquet"]))  # bytes: webdataset has no parquet decoder
            assert stats["frame_index"].to_pylist() == result.frame_indices.tolist()
        else:  # a failed sample is marked, with the same members so a loader's fields stay uniform
            assert meta["reason"] == "truncated" and meta["error"] == "moov atom not found"
            assert sample["saliency.npy"].shape == (0, *STORE)
    np.testing.assert_array_equal(res.frame_indices("000170003~ab12cd34"), results[2].frame_indices)
    res.verify()


def test_a_redone_shard_gives_the_same_bytes_and_a_crash_leaves_no_tar(tmp_path):
    tar = input_tar(tmp_path / "00017.tar", KEYS)
    out = tmp_path / "out"
    crashed = open_shard_writer(
        str(out), "00017", format="webdataset", store_size=STORE, model_size=MODEL, run_info=RUN_INFO
    )
    for result in shard_results(tar)[:2]:
        crashed.write(result)
    del crashed  # the actor died mid-shard: nothing under the final name, no commit record
    assert not (out / "webdataset").exists() and committed_shards(str(out)) == {}

    write_shard(str(out), tar, shard_results(tar))
    first = (out / "webdataset/00017.tar").read_bytes()
    write_shard(str(out), tar, shard_results(tar))  # redone (e.g. after a crash before the commit record)
    assert (out / "webdataset/00017.tar").read_bytes() == first
    assert [p.name for p in (out / "webdataset").iterdir()] == ["00017.tar"]  # no temporary files left


def test_copy_option_adds_the_members_to_every_input_sample(tmp_path):
    tar = input_tar(tmp_path / "00017.tar", KEYS)
    out = tmp_path / "out"
    write_shard(str(out), tar, shard_results(tar), format="webdataset-copy")
    copied = list(wds.WebDataset(str(out / "webdataset/00017.tar"), shardshuffle=False).decode())
    inputs = list(wds.WebDataset(tar, shardshuffle=False).decode())
    assert [s["__key__"] for s in copied] == [s["__key__"] for s in inputs]
    for got, original in zip(copied, inputs):
        assert got["txt"] == original["txt"] and got["json"] == original["json"]  # the user's members untouched
        assert {"saliency.json", "saliency.npy", "saliency.parquet"} <= set(got)
    assert copied[2]["v2.mp4"] == inputs[2]["v2.mp4"] == b"video-000170003"
    np.testing.assert_array_equal(copied[0]["saliency.npy"], open_results(str(out)).maps("000170001"))


def test_shard_ids_follow_the_input_tar_names():
    ids = TarShardIds()
    assert ids("s3://b/shards/00017.tar") == "00017"
    assert ids("/data/00018.tar.gz") == "00018"
    assert ids("s3://b/shards/00017.tar") == "00017"  # the same tar: the same shard
    other = ids("s3://b/other/00017.tar")  # a name taken by another tar stays unique, from its URI alone
    assert other.startswith("00017-") and other != "00017"
    assert ids("/x/we ird#.tar").startswith("we_ird_-")


def test_the_webdataset_workflow_is_a_webdataset_run():
    from pathlib import Path

    from tased_batch.config import RunConfig, read_config_file

    path = Path(__file__).resolve().parents[1] / "workflows" / "webdataset-saliency.yaml"
    config = RunConfig(**read_config_file(str(path))).validate()
    assert config.format == "webdataset" and config.input.endswith("{00000..00127}.tar")
