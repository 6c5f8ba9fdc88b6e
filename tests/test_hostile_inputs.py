"""Hostile inputs: whatever a file, a name or a config claims, nothing is dropped, mixed up,
hung or allowed to take unbounded memory (issue 22, the inputs half)."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from tased_batch.config import read_config_file
from tased_batch.core.errors import ConfigError
from tased_batch.decode import open_video
from tased_batch.decode.sources import iter_sources

pytestmark = pytest.mark.timeout(60)


# ---- config files ------------------------------------------------------------------------

_BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
)


@pytest.mark.parametrize("where", ["input", "storage_options"])
def test_yaml_alias_bomb_is_refused_before_it_expands(tmp_path, where):
    # 9 levels of 9 aliases: ~400 million strings once expanded, under 600 bytes on disk.
    body = "\n".join("  " + line for line in _BOMB.splitlines())
    config = tmp_path / "bomb.yaml"
    config.write_text(f"output: out\n{where}:\n{body}\n")
    assert config.stat().st_size < 700
    with pytest.raises(ConfigError, match=r"alias \*a at line \d+ is not allowed"):
        read_config_file(str(config))


def test_plain_yaml_config_still_reads(tmp_path):
    config = tmp_path / "ok.yaml"
    config.write_text("input: videos/\noutput: out\nstorage_options:\n  client_kwargs:\n    region_name: eu-west-1\n")
    values = read_config_file(str(config))
    assert values["input"] == "videos/"
    assert values["storage_options"] == {"client_kwargs": {"region_name": "eu-west-1"}}


def test_oversized_config_file_is_refused(tmp_path):
    config = tmp_path / "big.yaml"
    config.write_text("input: x\n" + "# filler\n" * 200_000)
    with pytest.raises(ConfigError, match="over 1 MiB"):
        read_config_file(str(config))


@pytest.mark.parametrize(
    "options",
    [
        "storage_options:\n  client_kwargs:\n    aws_secret_access_key: abc\n",
        "storage_options:\n  headers:\n    Authorization: Bearer abc\n",
        "storage_options:\n  config_kwargs:\n    s3:\n      Secret-Key: abc\n",
    ],
)
def test_nested_credentials_in_a_config_file_are_refused(tmp_path, options):
    config = tmp_path / "creds.yaml"
    config.write_text("input: videos/\n" + options)
    with pytest.raises(ConfigError, match="credentials in a config file") as err:
        read_config_file(str(config))
    assert "abc" not in str(err.value)


# ---- names with '#', '?' and glob characters: listed, never dropped -----------------------

ODD_NAMES = ["take#1.mp4", "what?.mp4", "a[1].mp4", "star*.mp4", "sub#x/in.mp4", "q?/deep.mkv"]
ODD_IDS = ["a[1]", "q?/deep", "star*", "sub#x/in", "take#1", "what?"]


def _tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, blob in members:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def _first_frame(source, **kw) -> np.ndarray:
    with open_video(str(source) if isinstance(source, Path) else source, (32, 64), **kw) as reader:
        return next(iter(reader.iter_frames(np.arange(1))))[0]


def _clips(make_video, n: int) -> list[bytes]:
    return [make_video(f"c{i}.mp4", n_frames=4, size=(32, 64), seed=i).read_bytes() for i in range(n)]


def test_odd_file_names_in_folders_globs_and_tars_are_listed(make_video, tmp_path):
    clips = _clips(make_video, len(ODD_NAMES))
    root = tmp_path / "in"
    for name, blob in zip(ODD_NAMES, clips, strict=True):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(blob)

    folder = list(iter_sources(str(root)))
    assert sorted(s.video_id for s in folder) == ODD_IDS
    # each id reads its own file's bytes
    for src in folder:
        name = next(n for n in ODD_NAMES if n.rsplit(".", 1)[0] == src.video_id)
        assert Path(src.uri).read_bytes() == clips[ODD_NAMES.index(name)]
        assert _first_frame(src).shape == (32, 64, 3)
    assert sorted(s.video_id for s in iter_sources(str(root / "*.mp4"))) == ["a[1]", "star*", "take#1", "what?"]
    assert sorted(s.video_id for s in iter_sources(str(root / "*" / "*"))) == ["q?/deep", "sub#x/in"]
    # a folder or file whose name holds glob characters is taken as written, not as a pattern
    assert [s.video_id for s in iter_sources(str(root / "a[1].mp4"))] == ["a[1]"]
    assert [s.video_id for s in iter_sources(str(root / "q?"))] == ["deep"]

    for suffix, mode in ((".tar", "w"), (".tar.gz", "w:gz")):
        shard = _tar(tmp_path / f"shard{suffix}", list(zip(ODD_NAMES, clips, strict=True)), mode)
        members = list(iter_sources(str(shard)))
        assert sorted(s.video_id for s in members) == ODD_IDS
        for src in members:
            expected = _first_frame(root / src.member)
            assert np.array_equal(_first_frame(src), expected), src.member


def test_odd_object_keys_under_an_s3_prefix_are_listed_and_read(s3, make_video, tmp_path):
    fs, bucket = s3["fs"], s3["bucket"]
    clips = _clips(make_video, len(ODD_NAMES))
    for name, blob in zip(ODD_NAMES, clips, strict=True):
        fs.pipe(f"{bucket}/v/{name}", blob)
    listed = list(iter_sources(f"s3://{bucket}/v/"))
    assert sorted(s.video_id for s in listed) == ODD_IDS
    for src in listed:
        name = next(n for n in ODD_NAMES if n.rsplit(".", 1)[0] == src.video_id)
        assert src.uri == f"s3://{bucket}/v/{name}"
        local = tmp_path / "copy.mp4"
        local.write_bytes(clips[ODD_NAMES.index(name)])
        assert np.array_equal(_first_frame(src), _first_frame(local))
    assert sorted(s.video_id for s in iter_sources(f"s3://{bucket}/v/*.mp4")) == ["a[1]", "star*", "take#1", "what?"]
    assert [s.video_id for s in iter_sources(f"s3://{bucket}/v/what?.mp4")] == ["what?"]


def test_web_urls_still_drop_their_query_for_the_id(tmp_path):
    manifest = tmp_path / "m.txt"
    manifest.write_text("https://example.com/v/clip.mp4?X-Amz-Signature=abc#t=3\n")
    (src,) = iter_sources(str(manifest))
    assert src.video_id == "clip"


# ---- duplicate member names in a compressed tar -----------------------------------------


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_same_named_tar_members_each_read_their_own_bytes(make_video, tmp_path, mode):
    first, second = _clips(make_video, 2)
    shard = _tar(tmp_path / ("s.tar" if mode == "w" else "s.tar.gz"), [("k.mp4", first), ("k.mp4", second)], mode)
    a, b = iter_sources(str(shard))
    assert a.member == b.member == "k.mp4" and a.video_id != b.video_id
    (tmp_path / "1.mp4").write_bytes(first)
    (tmp_path / "2.mp4").write_bytes(second)
    one, two = _first_frame(tmp_path / "1.mp4"), _first_frame(tmp_path / "2.mp4")
    assert not np.array_equal(one, two)
    assert np.array_equal(_first_frame(a), one)
    assert np.array_equal(_first_frame(b), two)


# ---- duplicate manifest rows ------------------------------------------------------------


def test_identical_manifest_rows_get_ids_in_linear_time(tmp_path):
    rows = 40_000  # quadratic assignment took ~29 s for 20,000 rows
    manifest = tmp_path / "m.txt"
    manifest.write_text("clip.mp4\n" * rows)
    start = time.monotonic()
    ids = [s.video_id for s in iter_sources(str(manifest))]
    elapsed = time.monotonic() - start
    assert len(ids) == len(set(ids)) == rows
    assert ids[:3] == ["clip", ids[1], ids[1] + "~2"] and ids[-1] == f"{ids[1]}~{rows - 1}"
    assert elapsed < 10, f"{rows} identical rows took {elapsed:.1f} s"


# ---- FIFOs and other non-regular files ----------------------------------------------------


@pytest.mark.timeout(30)
def test_fifos_are_refused_without_being_opened(make_video, tmp_path):
    import os

    from tased_batch.core.errors import SourceError, VideoError

    root = tmp_path / "in"
    (root / "frames").mkdir(parents=True)
    (root / "ok.mp4").write_bytes(make_video("c.mp4", n_frames=4, size=(32, 64)).read_bytes())
    for name in ("pipe.mp4", "pipe.tar", "frames/0000.jpg"):
        os.mkfifo(root / name)  # no writer ever comes: opening one blocks forever
    listed = {s.video_id: s for s in iter_sources(str(root))}
    # listed (so each is recorded as failed with its reason), never dropped
    assert sorted(s.uri.rsplit("/in/", 1)[1] for s in listed.values()) == ["frames", "ok.mp4", "pipe.mp4", "pipe.tar"]
    assert _first_frame(listed["ok"]).shape == (32, 64, 3)
    for video_id, src in listed.items():
        if video_id == "ok":
            continue
        with pytest.raises(VideoError) as err:
            _first_frame(src)
        assert err.value.reason == "not-regular", (video_id, err.value)
    with pytest.raises(SourceError, match="not a regular file"):
        list(iter_sources(str(root / "pipe.tar")))


# ---- bounded whatever the header claims --------------------------------------------------


def _gif(path: Path, width: int, height: int) -> Path:
    """A GIF of a few dozen bytes whose screen and one image declare width x height."""
    import struct

    data = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    data += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00\x3b"
    path.write_bytes(data)
    return path


def _avi(path: Path, *, frames: int | None = None, rate: int | None = None, scale: int | None = None) -> Path:
    """A real 10-frame AVI, then its headers patched to claim another length or rate."""
    import struct

    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((32, 64, 3), i * 20, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    data = bytearray(path.read_bytes())
    avih, strh = data.find(b"avih") + 8, data.find(b"strh") + 8
    if frames is not None:
        struct.pack_into("<I", data, avih + 16, frames)  # dwTotalFrames
        struct.pack_into("<I", data, strh + 32, frames)  # dwLength
    if scale is not None:
        struct.pack_into("<I", data, strh + 20, scale)  # dwScale
    if rate is not None:
        struct.pack_into("<I", data, strh + 24, rate)  # dwRate
    path.write_bytes(data)
    return path


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("decoder", ["auto", "pyav"])
def test_a_tiny_gif_declaring_16000x16000_is_refused_before_decoding(tmp_path, decoder):
    from tased_batch.core.errors import VideoError

    gif = _gif(tmp_path / "bomb.gif", 16000, 16000)
    assert gif.stat().st_size < 100
    before = _peak_rss_mb()
    with pytest.raises(VideoError) as err:
        _first_frame(str(gif), decoder=decoder)
    assert (
        err.value.reason == "too-large" and "16000x16000" in str(err.value) and "--max-frame-pixels" in str(err.value)
    )
    assert _peak_rss_mb() - before < 300  # decoding it took ~2 GB
    # the limit is an option: a small one refuses ordinary video, a large one lets it through
    small = _gif(tmp_path / "small.gif", 64, 32)
    with pytest.raises(VideoError, match="too-large|over the limit"):
        _first_frame(str(small), max_frame_pixels=1000)
    assert _first_frame(str(small), max_frame_pixels=2048).shape == (32, 64, 3)


def test_max_frame_pixels_is_one_run_option():
    from tased_batch.config import RunConfig
    from tased_batch.options import OPTIONS

    assert OPTIONS["max_frame_pixels"].group == "sampling"
    config = RunConfig(input="in", output="out", max_frame_pixels="4000000")
    assert config.sampling.decode_options().max_frame_pixels == 4_000_000
    with pytest.raises(ConfigError):
        RunConfig(input="in", output="out", max_frame_pixels=0)


def test_exact_resize_bounds_full_size_frames_per_chunk(make_video):
    from tased_batch.decode.reader import FULL_SIZE_CHUNK_BYTES

    clip = make_video("big.mp4", n_frames=24, size=(1080, 1920))
    per_frame = 1080 * 1920 * 3
    with open_video(str(clip), (32, 64), resize="exact") as reader:
        sizes = [len(c) for c in reader.iter_frames(np.arange(24), chunk=64)]
    assert sum(sizes) == 24
    assert max(sizes) * per_frame <= FULL_SIZE_CHUNK_BYTES  # 64 frames would be 398 MB
    with open_video(str(clip), (32, 64)) as reader:  # resized by the decoder: chunks stay whole
        assert [len(c) for c in reader.iter_frames(np.arange(24), chunk=64)] == [24]


@pytest.mark.parametrize("decoder", ["pyav", "auto"])
def test_an_avi_claiming_200m_frames_is_refused_without_planning_them(tmp_path, decoder):
    from tased_batch.core.errors import VideoError

    avi = _avi(tmp_path / "long.avi", frames=200_000_000)
    before = _peak_rss_mb()
    with pytest.raises(VideoError) as err:
        with open_video(str(avi), (32, 64), decoder=decoder) as reader:
            reader.info
    assert err.value.reason in ("bad-header", "truncated"), err.value
    assert "200000000" in str(err.value)
    assert _peak_rss_mb() - before < 300  # pyav planned them all: 4.8 GB


@pytest.mark.parametrize(
    "patch, says",
    [
        ({"rate": 30_000_000}, "frames per second"),  # 30M fps
        ({"scale": 1_000_000}, "frames per second"),  # one frame in 9 hours
    ],
)
def test_absurd_declared_rates_are_refused(tmp_path, patch, says):
    from tased_batch.core.errors import VideoError

    avi = _avi(tmp_path / "rate.avi", **patch)
    for decoder in ("pyav", "auto"):
        with pytest.raises(VideoError, match=says) as err:
            with open_video(str(avi), (32, 64), decoder=decoder) as reader:
                reader.info
        assert err.value.reason == "bad-header"
    plain = _avi(tmp_path / "plain.avi")
    with open_video(str(plain), (32, 64)) as reader:
        assert reader.info.n_frames == 10 and reader.info.fps == 30


def test_frames_lasting_far_longer_than_the_container_are_refused():
    from tased_batch.core.errors import VideoError
    from tased_batch.decode.probe import check_claims

    check_claims("v.mp4", 300, 30.0, 10.0, 10_000)  # agrees: fine
    check_claims("v.mp4", 300, 30.0, None, None)  # nothing to compare with: fine
    with pytest.raises(VideoError, match="container says 2.0 s"):
        check_claims("v.mp4", 2_000, 1.0, 2.0, 10_000)
