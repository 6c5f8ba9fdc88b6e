"""Every source kind: files, folders, globs, frame folders, manifests, tar shards, S3."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tased_batch.core.errors import ConfigError, SourceError
from tased_batch.decode import open_video
from tased_batch.decode.sources import VideoSource, expand_braces, iter_sources, parse_storage_options, sample_key


def _ids(sources):
    return [s.video_id for s in sources]


def _write_frames(folder: Path, n: int = 3) -> Path:
    import cv2

    from tased_batch.decode.sample import synthetic_frames

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(synthetic_frames(n, 36, 64)):
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), frame[..., ::-1])
    return folder


def _make_shard(path: Path, videos: dict[str, bytes], captions: bool = True) -> Path:
    """A WebDataset shard: each sample has <key>.mp4 (+ <key>.txt / <key>.json)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, data in videos.items():
            members = {f"{key}.mp4": data}
            if captions:
                members[f"{key}.txt"] = f"caption of {key}".encode()
                members[f"{key}.json"] = json.dumps({"key": key}).encode()
            for name, blob in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    return path


def test_single_file_and_pickle(make_video):
    path = make_video("clip.mp4")
    (src,) = list(iter_sources(str(path)))
    assert src == VideoSource("clip", str(path), size=path.stat().st_size)
    assert pickle.loads(pickle.dumps(src)) == src
    assert len(pickle.dumps(src)) < 300  # a plan may hold a million


def test_directory_recursive_filters_and_orders(make_video, tmp_path):
    make_video("root/b.mp4")
    make_video("root/a/x.mkv", n_frames=8)
    make_video("root/a/y.webm", n_frames=8, codec="libvpx-vp9")
    (tmp_path / "root" / "notes.txt").write_text("not a video")
    (tmp_path / "root" / "a" / "meta.json").write_text("{}")
    first = list(iter_sources(str(tmp_path / "root")))
    assert _ids(first) == ["a/x", "a/y", "b"]
    assert all(Path(s.uri).is_file() and s.size for s in first)
    assert list(iter_sources(str(tmp_path / "root") + "/")) == first  # deterministic, trailing slash


def test_same_stem_collision_is_deterministic(make_video, tmp_path):
    make_video("d/clip.mp4")
    make_video("d/clip.mov")
    ids = _ids(iter_sources(str(tmp_path / "d")))
    assert ids[0] == "clip" and ids[1].startswith("clip~") and len(ids[1]) == len("clip~") + 8
    assert _ids(iter_sources(str(tmp_path / "d"))) == ids


def test_glob(make_video, tmp_path):
    for name in ("g/s1/one.mp4", "g/s2/two.mp4", "g/s2/three.avi"):
        make_video(name, n_frames=4)
    assert _ids(iter_sources(str(tmp_path / "g" / "*" / "*.mp4"))) == ["s1/one", "s2/two"]
    # matched folders are listed recursively, ids still relative to the glob's fixed part
    assert _ids(iter_sources(str(tmp_path / "g" / "s*"))) == ["s1/one", "s2/three", "s2/two"]
    with pytest.raises(SourceError, match="matches nothing"):
        list(iter_sources(str(tmp_path / "g" / "*.nothing")))


def test_frame_folders_are_videos(tmp_path, make_video):
    _write_frames(tmp_path / "ds" / "0001" / "images")
    _write_frames(tmp_path / "ds" / "0002" / "images")
    make_video("ds/0003/video.mp4", n_frames=4)
    # a poster next to a video is not a frame folder
    _write_frames(tmp_path / "ds" / "0003", n=1)
    assert _ids(iter_sources(str(tmp_path / "ds"))) == ["0003/video", "0001/images", "0002/images"]
    (only,) = iter_sources(str(tmp_path / "ds" / "0001" / "images"))
    assert only.video_id == "images" and only.uri == str(tmp_path / "ds" / "0001" / "images")


def test_missing_input_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        list(iter_sources(str(tmp_path / "nope")))
    with pytest.raises(SourceError):
        list(iter_sources(""))


def _manifest_videos(make_video):
    a = make_video("m/videos/a.mp4", n_frames=4)
    b = make_video("m/videos/sub/b.mp4", n_frames=4)
    return a, b


@pytest.mark.parametrize("kind", ["txt", "csv", "tsv", "jsonl", "parquet"])
def test_manifests_resolve_relative_paths(kind, make_video, tmp_path):
    a, b = _manifest_videos(make_video)
    rows = [("videos/a.mp4", "first"), (str(b), "second")]  # one relative, one absolute
    path = tmp_path / "m" / f"list.{kind}"
    if kind == "txt":
        path.write_text("# comment\n" + "\n".join(u for u, _ in rows) + "\n\n")
    elif kind in ("csv", "tsv"):
        sep = "," if kind == "csv" else "\t"
        path.write_text(f"link{sep}name\n" + "".join(f"{u}{sep}{i}\n" for u, i in rows))
    elif kind == "jsonl":
        path.write_text("".join(json.dumps({"link": u, "name": i}) + "\n" for u, i in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"link": [u for u, _ in rows], "name": [i for _, i in rows]}), path)
    kwargs = {} if kind == "txt" else {"url_col": "link"}
    sources = list(iter_sources(str(path), **kwargs))
    assert [s.uri for s in sources] == [str(a), str(b)]
    assert _ids(sources) == ["a", "b"]
    if kind != "txt":
        assert _ids(iter_sources(str(path), url_col="link", id_col="name")) == ["first", "second"]
        with pytest.raises(SourceError, match="no column|no 'url' field"):
            list(iter_sources(str(path)))  # default url_col "url" is absent


def test_manifest_rows_are_not_checked_when_listing(tmp_path):
    """No per-row requests: a missing row fails later, when decoded, as a typed VideoError."""
    manifest = tmp_path / "big.csv"
    with manifest.open("w") as f:
        f.write("url\n")
        for i in range(20000):
            f.write(f"v/{i % 1000}.mp4\n")  # each name 20 times: collisions resolved by hash
    sources = list(iter_sources(str(manifest)))
    assert len(sources) == 20000 and len(set(_ids(sources))) == 20000
    assert sources[0].video_id == "0" and sources[1000].video_id.startswith("0~")


def test_bad_manifest_lines(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"url": "a.mp4"}\nnot json\n')
    with pytest.raises(SourceError, match="line 2"):
        list(iter_sources(str(bad)))


def test_tar_shards_local(make_video, tmp_path):
    data = {
        key: make_video(f"src/{key}.mp4", n_frames=6, seed=i).read_bytes()
        for i, key in enumerate(["000000001", "000000002"])
    }
    shard = _make_shard(tmp_path / "shards" / "00000.tar", data)
    _make_shard(tmp_path / "shards" / "00001.tar", {"000000003": data["000000001"]})
    sources = list(iter_sources(str(tmp_path / "shards" / "{00000..00001}.tar")))
    assert _ids(sources) == ["000000001", "000000002", "000000003"]
    first = sources[0]
    assert first.uri == str(shard) and first.member == "000000001.mp4" and first.size == len(data["000000001"])
    with open(shard, "rb") as f:
        f.seek(first.offset)
        assert f.read(first.size) == data["000000001"]
    with open_video(first, (32, 64)) as reader:
        assert reader.info.n_frames == 6
        assert sum(len(c) for c in reader.iter_frames(np.arange(6))) == 6
    # a folder of shards lists every member, keyed by folder/sample
    assert _ids(iter_sources(str(tmp_path / "shards"))) == ["000000001", "000000002", "000000003"]


def test_broken_shard_in_folder_becomes_a_failing_source(tmp_path, make_video):
    from tased_batch.core.errors import VideoError

    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "bad.tar").write_bytes(b"\x01" * 700)
    (src,) = iter_sources(str(tmp_path / "s"))
    assert src.member is None
    with pytest.raises(VideoError) as e, open_video(src, (32, 64)) as reader:
        reader.info
    assert e.value.reason == "bad-shard"
    with pytest.raises(SourceError):
        list(iter_sources(str(tmp_path / "s" / "bad.tar")))


def test_sample_key_and_braces():
    assert sample_key("00001/000000042.mp4") == "00001/000000042"
    assert sample_key("a.b.c.mp4") == "a"
    assert expand_braces("s-{000..002}.tar") == ["s-000.tar", "s-001.tar", "s-002.tar"]
    assert expand_braces("{a,b}/{1..2}") == ["a/1", "a/2", "b/1", "b/2"]


def test_parse_storage_options():
    opts = parse_storage_options(
        ["endpoint_url=http://h:9000", "anon=false", "client_kwargs.region_name=eu-west-1", "n=3"]
    )
    assert opts == {
        "endpoint_url": "http://h:9000",
        "anon": False,
        "client_kwargs": {"region_name": "eu-west-1"},
        "n": 3,
    }
    with pytest.raises(ConfigError):
        parse_storage_options(["novalue"])


# ---- S3 through a real local endpoint (moto server) ------------------------------------


def test_s3_prefix_manifest_and_shard(s3, make_video, tmp_path):
    fs, bucket = s3["fs"], s3["bucket"]
    clip = make_video("clip.mp4", n_frames=10)
    fs.put(str(clip), f"{bucket}/videos/a/clip.mp4")
    fs.put(str(clip), f"{bucket}/videos/b.mp4")
    fs.pipe(f"{bucket}/videos/readme.txt", b"hello")
    shard = _make_shard(tmp_path / "s.tar", {"k1": clip.read_bytes()})
    fs.put(str(shard), f"{bucket}/shards/00000.tar")
    fs.pipe(f"{bucket}/lists/m.csv", b"url,id\n../videos/b.mp4,bee\n../shards/00000.tar,\n")

    # The endpoint comes from AWS_ENDPOINT_URL (set by the fixture), credentials from the env chain.
    prefix = list(iter_sources(f"s3://{bucket}/videos/"))
    assert [(s.video_id, s.uri) for s in prefix] == [
        ("a/clip", f"s3://{bucket}/videos/a/clip.mp4"),
        ("b", f"s3://{bucket}/videos/b.mp4"),
    ]
    assert prefix[0].size == clip.stat().st_size
    listed = list(iter_sources(f"s3://{bucket}/lists/m.csv", id_col="id", storage_options=s3["storage_options"]))
    assert [(s.video_id, s.uri, s.member) for s in listed] == [
        ("bee", f"s3://{bucket}/videos/b.mp4", None),
        ("k1", f"s3://{bucket}/shards/00000.tar", "k1.mp4"),
    ]
    for src in (prefix[1], listed[1]):
        with open_video(src, (32, 64), storage_options=s3["storage_options"]) as reader:
            assert reader.info.n_frames == 10
            frames = np.concatenate(list(reader.iter_frames(np.arange(10))))
            assert frames.shape == (10, 32, 64, 3)
    with pytest.raises(SourceError, match="does not exist"):
        list(iter_sources(f"s3://{bucket}/nothing-here/"))


def test_s3_glob_shard_prefix_frame_folder_and_explicit_options(s3, make_video, tmp_path, monkeypatch):
    import cv2

    fs, bucket = s3["fs"], s3["bucket"]
    clip = make_video("clip.mp4", n_frames=6)
    fs.put(str(clip), f"{bucket}/v/x/one.mp4")
    fs.put(str(clip), f"{bucket}/v/y/two.mkv")
    shard = _make_shard(tmp_path / "s.tar", {"00000/k1": clip.read_bytes(), "00000/k2": clip.read_bytes()})
    fs.put(str(shard), f"{bucket}/shards/00000.tar")
    frames = _write_frames(tmp_path / "frames", n=4)
    for p in sorted(frames.iterdir()):
        fs.put(str(p), f"{bucket}/f/clip01/{p.name}")

    assert _ids(iter_sources(f"s3://{bucket}/v/*/*.mp4")) == ["x/one"]
    members = list(iter_sources(f"s3://{bucket}/shards/"))
    assert [(s.video_id, s.member) for s in members] == [("00000/k1", "00000/k1.mp4"), ("00000/k2", "00000/k2.mp4")]
    assert members[1].offset is not None
    (folder,) = iter_sources(f"s3://{bucket}/f/")
    assert folder.video_id == "clip01" and folder.uri == f"s3://{bucket}/f/clip01"
    with open_video(folder, (32, 64)) as reader:
        assert reader.backend == "frames" and reader.info.n_frames == 4
        got = np.concatenate(list(reader.iter_frames(np.arange(4))))
    local = sorted(frames.iterdir())
    expected = np.stack([cv2.cvtColor(cv2.resize(cv2.imread(str(p)), (64, 32)), cv2.COLOR_BGR2RGB) for p in local])
    assert np.array_equal(got, expected)

    # --storage-option alone (no endpoint variable) reaches the same store
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    options = parse_storage_options([f"endpoint_url={s3['endpoint']}"])
    assert _ids(iter_sources(f"s3://{bucket}/v/", storage_options=options)) == ["x/one", "y/two"]
    with open_video(members[1], (32, 64), storage_options=options) as reader:
        assert reader.info.n_frames == 6
