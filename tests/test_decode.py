"""Decoding: backends agree, frame folders read like the released script, sampling, bad input,
spooling and fork safety."""

from __future__ import annotations

import multiprocessing
import pickle

import av
import cv2
import numpy as np
import pytest

from tased_batch import decode
from tased_batch.core.errors import ConfigError, VideoError
from tased_batch.decode import VideoInfo, open_video, sample_frames
from tased_batch.decode.sample import synthetic_frames, write_video
from tased_batch.decode.sources import VideoSource

SIZE = (32, 64)


def _all(reader, n=None):
    n = reader.info.n_frames if n is None else n
    return np.concatenate(list(reader.iter_frames(np.arange(n))))


def _full_size(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


# ---- backends --------------------------------------------------------------------------


def test_backends_agree_and_report_info(make_video):
    path = make_video("clip.mp4", n_frames=40)
    out = {}
    for decoder in ("decord", "pyav"):
        for resize in ("decoder", "exact"):
            with open_video(str(path), SIZE, decoder=decoder, resize=resize) as reader:
                assert reader.info == VideoInfo(40, 30.0, 128, 72, 40 / 30)
                assert reader.backend == decoder
                frames = _all(reader)
            assert frames.shape == (40, *SIZE, 3) and frames.dtype == np.uint8
            out[decoder, resize] = frames.astype(np.int16)
    # decoder-side scaling: both backends use bilinear swscale; tiny rounding differences only
    diff = np.abs(out["decord", "decoder"] - out["pyav", "decoder"])
    assert diff.mean() < 1.5 and diff.max() <= 16
    # exact path: full-size decode, then cv2.resize bilinear, exactly as the released script
    reference = np.stack([cv2.resize(f, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_LINEAR) for f in _full_size(path)])
    assert np.array_equal(out["pyav", "exact"], reference)
    assert np.abs(out["decord", "exact"] - reference).mean() < 0.5
    # the two resize paths differ (decoder filters while scaling), but only a little
    assert 0 < np.abs(out["decord", "decoder"] - out["decord", "exact"]).mean() < 8


def test_chunks_repeats_and_argument_checks(make_video):
    path = make_video("clip.mp4", n_frames=40)
    for decoder in ("decord", "pyav"):
        with open_video(str(path), SIZE, decoder=decoder) as reader:
            full = _all(reader)
            indices = np.array([0, 0, 1, 5, 5, 5, 39])
            chunks = list(reader.iter_frames(indices, chunk=3))
            assert [len(c) for c in chunks] == [3, 3, 1]
            assert np.array_equal(np.concatenate(chunks), full[indices])
            with pytest.raises(ValueError, match="sorted"):
                list(reader.iter_frames(np.array([3, 1])))
            with pytest.raises(ValueError, match="lie in"):
                list(reader.iter_frames(np.array([40])))
    with pytest.raises(ConfigError):
        open_video(str(path), SIZE, decoder="ffmpeg")
    with pytest.raises(ConfigError):
        open_video(str(path), SIZE, resize="nearest")


def test_frame_folder_reads_like_released_script(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = synthetic_frames(5, 48, 80)
    for i, frame in reversed(list(enumerate(frames))):  # written out of order: sorting is by name
        cv2.imwrite(str(folder / f"{i + 1:04d}.png"), frame[..., ::-1])
    (folder / "notes.txt").write_text("ignored")
    with open_video(str(folder), SIZE) as reader:
        assert reader.backend == "frames"
        assert reader.info == VideoInfo(5, 30.0, 80, 48, 5 / 30)
        got = _all(reader)
    names = sorted(p for p in folder.iterdir() if p.suffix == ".png")
    expected = [cv2.cvtColor(cv2.resize(cv2.imread(str(p)), (SIZE[1], SIZE[0])), cv2.COLOR_BGR2RGB) for p in names]
    assert np.array_equal(got, np.stack(expected))


def test_auto_falls_back_to_pyav(make_video, monkeypatch):
    path = make_video("clip.mp4", n_frames=20)
    with open_video(str(path), SIZE, decoder="pyav") as reader:
        expected = _all(reader)

    def cannot_open(*args, **kwargs):
        raise RuntimeError("DECORDError: cannot open")

    with monkeypatch.context() as m:
        m.setattr(decode.DecordBackend, "__init__", cannot_open)
        with open_video(str(path), SIZE) as reader:
            assert reader.backend == "pyav"
            assert np.array_equal(_all(reader), expected)
        with pytest.raises(VideoError) as e, open_video(str(path), SIZE, decoder="decord") as reader:
            reader.info
        assert e.value.reason == "decode-error" and "--decoder" in e.value.hint

    # decord failing mid-stream: PyAV continues from the same frames
    real_read = decode.DecordBackend.read
    calls = []

    def flaky(self, indices):
        calls.append(len(indices))
        if len(calls) > 1:
            raise RuntimeError("Thread worker: Error sending packet.")
        return real_read(self, indices)

    monkeypatch.setattr(decode.DecordBackend, "read", flaky)
    with open_video(str(path), SIZE) as reader:
        chunks = list(reader.iter_frames(np.arange(20), chunk=8))
        assert reader.backend == "pyav"
    got = np.concatenate(chunks).astype(int)
    assert np.abs(got - expected).mean() < 1.5


# ---- frame sampling --------------------------------------------------------------------


def test_sampling_indices_and_timestamps():
    info = VideoInfo(90, 30.0, 128, 72, 3.0)
    s = sample_frames(info)
    assert np.array_equal(s.sequence, np.arange(90)) and np.array_equal(s.targets, np.arange(90))
    assert np.allclose(s.target_times(), np.arange(90) / 30)

    down = sample_frames(info, fps=15)
    assert np.array_equal(down.sequence, np.arange(0, 90, 2)) and down.fps == 15
    assert np.allclose(down.target_times(), np.arange(45) / 15)

    up = sample_frames(VideoInfo(48, 24.0, 8, 8, 2.0), fps=30)
    assert len(up.sequence) == 60 and up.sequence[-1] == 47
    assert np.array_equal(up.sequence[:6], [0, 0, 1, 2, 3, 4])  # frame on screen at p/30 s
    assert np.all(np.diff(up.sequence) >= 0)

    every = sample_frames(info, every=10)
    assert np.array_equal(every.targets, np.arange(0, 90, 10))
    assert np.array_equal(every.target_frames(), np.arange(0, 90, 10))
    assert np.allclose(every.target_times(), np.arange(0, 90, 10) / 30)
    assert len(every.sequence) == 90  # every map still gets its full window over all frames

    two = sample_frames(info, output_fps=2)
    assert np.array_equal(two.targets, [0, 15, 30, 45, 60, 75])
    assert np.allclose(two.target_times(), [0, 0.5, 1, 1.5, 2, 2.5])

    both = sample_frames(info, fps=10, output_fps=4)  # resample to 10 fps, maps at 4 per second
    assert np.array_equal(both.targets, [0, 2, 5, 7, 10, 12, 15, 17, 20, 22, 25, 27])
    assert np.array_equal(both.target_frames(), both.targets * 3)

    with pytest.raises(ConfigError):
        sample_frames(info, every=2, output_fps=1)
    for bad in ({"fps": 0}, {"every": 0}, {"every": 1.5}, {"output_fps": -1}):
        with pytest.raises(ConfigError):
            sample_frames(info, **bad)
    empty = sample_frames(VideoInfo(0, 30.0, 8, 8, 0.0))
    assert empty.sequence.size == 0 and empty.targets.size == 0


def test_resampled_decode_end_to_end(tmp_path):
    path = write_video(tmp_path / "c25.mp4", synthetic_frames(50, 72, 128), fps=25)
    with open_video(str(path), SIZE) as reader:
        info = reader.info
        assert info.fps == 25.0 and info.n_frames == 50
        full = _all(reader)
        s = sample_frames(info, fps=30, every=6)
        frames = np.concatenate(list(reader.iter_frames(s.sequence, chunk=16)))
    assert len(frames) == len(s.sequence) == 60
    assert np.array_equal(frames, full[s.sequence])
    assert np.allclose(s.target_times(), np.arange(0, 60, 6) / 30)
    assert np.array_equal(s.target_frames(), np.floor(np.arange(0, 60, 6) / 30 * 25 + 1e-6).astype(int))


# ---- bad input is data -----------------------------------------------------------------


def _faststart_mp4(path, n=120):
    """An MP4 whose index (moov) comes first, so a cut or damaged tail fails mid-stream."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=30)
        s.height, s.width, s.pix_fmt = 72, 128, "yuv420p"
        s.options = {"crf": "18", "preset": "ultrafast", "g": "16"}
        for frame in synthetic_frames(n, 72, 128):
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _audio_only(path):
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _bad_file(kind: str, tmp_path, make_video):
    if kind == "empty-file":
        p = tmp_path / "empty.mp4"
        p.write_bytes(b"")
    elif kind == "not-video":
        p = tmp_path / "notes.mp4"
        p.write_text("this is a text file, not a video\n" * 20)
    elif kind == "truncated-mp4":  # cut before its index: cannot be opened at all
        data = make_video("t.mp4", n_frames=60).read_bytes()
        p = tmp_path / "cut.mp4"
        p.write_bytes(data[: len(data) // 2])
    elif kind == "truncated-mkv":  # opens, but holds half the frames it declares
        data = make_video("t.mkv", n_frames=60).read_bytes()
        p = tmp_path / "cut.mkv"
        p.write_bytes(data[: len(data) // 2])
    elif kind == "audio-only":
        p = _audio_only(tmp_path / "sound.m4a")
    elif kind == "unsupported-codec":  # an AVI whose codec tag no decoder knows
        data = make_video("m.avi", n_frames=10, codec="mpeg4").read_bytes()
        assert b"FMP4" in data
        p = tmp_path / "odd.avi"
        p.write_bytes(data.replace(b"FMP4", b"ZQZQ"))
    else:
        p = tmp_path / "missing.mp4"
    return p


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("empty-file", "empty-file"),
        ("not-video", "not-video"),
        ("truncated-mp4", "truncated"),
        ("truncated-mkv", "truncated"),
        ("audio-only", "no-video-stream"),
        ("unsupported-codec", "unsupported-codec"),
        ("missing", "missing"),
    ],
)
@pytest.mark.parametrize("decoder", ["auto", "pyav"])
def test_bad_files_raise_typed_errors(kind, reason, decoder, tmp_path, make_video):
    path = _bad_file(kind, tmp_path, make_video)
    with pytest.raises(VideoError) as e, open_video(str(path), SIZE, decoder=decoder) as reader:
        reader.info
    err = e.value
    assert err.reason == reason and err.source == str(path)
    assert str(path) in str(err) and err.hint  # which video, what happened, what to do


@pytest.mark.parametrize("decoder", ["auto", "decord", "pyav"])
def test_damage_mid_stream_fails_the_video_after_good_chunks(decoder, tmp_path):
    data = bytearray(_faststart_mp4(tmp_path / "fs.mp4").read_bytes())
    start = len(data) // 2
    data[start : start + 3000] = bytes((i * 7) & 255 for i in range(3000))
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    got = []
    with pytest.raises(VideoError) as e, open_video(str(damaged), SIZE, decoder=decoder) as reader:
        assert reader.info.n_frames == 120
        for chunk in reader.iter_frames(np.arange(120), chunk=16):
            got.append(chunk)
    assert e.value.reason in ("corrupt-frame", "truncated")
    assert 16 <= sum(len(c) for c in got) < 120  # the frames before the damage were delivered
    assert "no partial maps" in str(e.value)


def test_cut_off_stream_is_truncated(tmp_path):
    data = _faststart_mp4(tmp_path / "fs.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError) as e, open_video(str(cut), SIZE, decoder="pyav") as reader:
        list(reader.iter_frames(np.arange(reader.info.n_frames)))
    assert e.value.reason in ("truncated", "corrupt-frame") and "frame" in e.value.message


def test_corrupt_image_in_frame_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(synthetic_frames(3, 36, 64)):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), frame)
    (folder / "001.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    with open_video(str(folder), SIZE) as reader:
        with pytest.raises(VideoError) as e:
            list(reader.iter_frames(np.arange(3)))
    assert e.value.reason == "corrupt-frame" and "001.jpg" in e.value.message


def test_permission_denied_is_typed():
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    class DeniedFS(MemoryFileSystem):
        protocol = "denied"

        def info(self, path, **kwargs):
            raise PermissionError(f"Access Denied: {path}")

    fsspec.register_implementation("denied", DeniedFS, clobber=True)
    with pytest.raises(VideoError) as e, open_video("denied://bucket/v.mp4", SIZE) as reader:
        reader.info
    assert e.value.reason == "permission" and "credentials" in e.value.hint


# ---- object storage: spool, streaming, missing objects ---------------------------------


def test_s3_spool_is_bounded_and_cleaned(s3, make_video, tmp_path, monkeypatch):
    fs, bucket = s3["fs"], s3["bucket"]
    clip = make_video("clip.mp4", n_frames=12)
    fs.put(str(clip), f"{bucket}/v/clip.mp4")
    spool = tmp_path / "spool"
    monkeypatch.setenv(decode.SPOOL_DIR_ENV, str(spool))
    monkeypatch.setattr(decode._Spool, "_dir", None)
    (spool / "tased-spool" / "999999999-deadbeef").mkdir(parents=True)  # left by a killed worker
    with open_video(str(clip), SIZE) as reader:
        local = _all(reader)
    uri = f"s3://{bucket}/v/clip.mp4"
    with open_video(uri, SIZE) as reader:
        assert np.array_equal(_all(reader), local) and reader.backend == "decord"
        spooled = list((spool / "tased-spool").rglob("*.mp4"))
        assert len(spooled) == 1
    assert not spooled[0].exists()  # removed on close
    assert [p.name for p in (spool / "tased-spool").iterdir()] == [decode._Spool._dir.name]  # dead one swept
    # over the budget: streamed through PyAV, nothing written to the spool
    monkeypatch.setenv(decode.SPOOL_MAX_ENV, "1000")
    with open_video(uri, SIZE) as reader:
        assert reader.backend == "pyav"
        streamed = _all(reader).astype(int)
        assert not list((spool / "tased-spool").rglob("*.mp4"))
    assert np.abs(streamed - local).mean() < 1.5
    with pytest.raises(VideoError) as e, open_video(f"s3://{bucket}/v/gone.mp4", SIZE) as reader:
        reader.info
    assert e.value.reason == "missing"
    fs.pipe(f"{bucket}/v/zero.mp4", b"")
    with pytest.raises(VideoError) as e, open_video(f"s3://{bucket}/v/zero.mp4", SIZE) as reader:
        reader.info
    assert e.value.reason == "empty-file"


# ---- processes -------------------------------------------------------------------------


def _count_in_child(reader, queue):
    queue.put(sum(len(c) for c in reader.iter_frames(np.arange(reader.info.n_frames))))


def _drop_in_child(reader, queue):
    import gc

    reader.close()  # must detach decord's handle: freeing it in a child segfaults
    reader.__dict__.clear()
    decode._INHERITED.clear()
    gc.collect()
    queue.put("dropped")


def test_reader_survives_fork_and_pickle(make_video):
    path = make_video("clip.mp4", n_frames=20)
    reader = open_video(VideoSource("clip", str(path)), SIZE)
    assert reader.info.n_frames == 20  # decord opened in the parent
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_count_in_child, args=(reader, queue))
    child.start()
    child.join(60)
    assert child.exitcode == 0 and queue.get(timeout=5) == 20
    # a child that only closes/drops the inherited reader must not crash either
    child = ctx.Process(target=_drop_in_child, args=(reader, queue))
    child.start()
    child.join(60)
    assert child.exitcode == 0 and queue.get(timeout=5) == "dropped"
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._backend is None and clone.info.n_frames == 20
    assert _all(reader).shape == (20, *SIZE, 3)  # the parent's reader still works
    reader.close()
    clone.close()


def test_frame_folder_reads_after_decord_was_loaded_in_a_fresh_process(tmp_path, make_video):
    """decord loaded before OpenCV broke cv2's PNG decoding; a worker decodes videos and folders alike."""
    import subprocess
    import sys

    from PIL import Image

    video = make_video("v.mp4", n_frames=4)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((24, 32, 3), 40 * i, np.uint8)).save(folder / f"{i:03d}.png")
    code = (
        "import numpy as np, sys\n"
        "from tased_batch.decode import open_video\n"
        "with open_video(sys.argv[1], (32, 64), decoder='decord') as r:\n"
        "    list(r.iter_frames(np.arange(4)))\n"
        "with open_video(sys.argv[2], (32, 64)) as r:\n"
        "    print(sum(len(c) for c in r.iter_frames(np.arange(3))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(video), str(folder)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "3"


# ---- torchcodec (optional) -------------------------------------------------------------


def test_torchcodec_missing_is_one_clear_line_and_auto_skips_it(make_video, monkeypatch):
    """Without torchcodec (or without a GPU) nothing crashes: explicit use is a config error, auto uses decord."""
    path = make_video("clip.mp4", n_frames=12)
    monkeypatch.setattr(
        decode.BACKENDS["torchcodec"], "unavailable", classmethod(lambda cls: "torchcodec cannot be loaded (x)")
    )
    with pytest.raises(ConfigError) as e:
        open_video(str(path), SIZE, decoder="torchcodec")
    assert "torchcodec" in str(e.value) and "\n" not in str(e.value)
    with open_video(str(path), SIZE, device="cuda") as reader:  # auto on a GPU machine without torchcodec
        assert reader.backend == "decord" and _all(reader).shape == (12, *SIZE, 3)
    assert decode.backend_order("auto", "cuda")[0] == "torchcodec"
    assert decode.backend_order("auto", "cpu") == ["decord", "pyav"]


def _torchcodec_or_skip() -> None:
    reason = decode.BACKENDS["torchcodec"].unavailable()
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_torchcodec_frames_match_pyav(make_video, device):
    _torchcodec_or_skip()
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device: torchcodec's NVDEC path is not tested here")
    path = make_video("clip.mp4", n_frames=40)
    with open_video(str(path), SIZE, decoder="pyav") as reader:
        expected = _all(reader).astype(np.int16)
    with open_video(str(path), SIZE, decoder="torchcodec", device=device) as reader:
        assert reader.backend == "torchcodec" and reader.info.n_frames == 40
        chunks = list(reader.iter_frames(np.array([0, 1, 1, 2, *range(3, 40)]), chunk=16))
    got = np.concatenate([c.cpu().numpy() if hasattr(c, "cpu") else c for c in chunks]).astype(np.int16)
    got = np.delete(got, 2, axis=0)  # the repeated frame
    assert got.shape == expected.shape
    diff = np.abs(got - expected)
    assert diff.mean() < 3 and np.percentile(diff, 99) <= 24
