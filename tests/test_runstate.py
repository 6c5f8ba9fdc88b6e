"""Run state without Ray: checked commit records, interrupted --overwrite, the index, secrets, plain text.

Shards are processed in this process (``inprocess_execute``) so that the job's own code
(lease, plan, records, index, report) runs as in a real run, fast.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

import tased_batch.run.executor as executor
import tased_batch.run.plan as plan_module
import tased_batch.run.shards as shards
from tased_batch import open_results
from tased_batch.config import RunConfig
from tased_batch.core.records import VideoResult
from tased_batch.decode.streams import StreamFailed
from tased_batch.run.job import run_job, run_status
from tased_batch.run.plan import Output, prepare
from tased_batch.run.runrecords import InternalError, VideoFinished
from tased_batch.stores import index, layout, open_shard_writer
from tased_batch.stores.png import folder_name

from conftest import SMALL
from runhelpers import assert_every_frame_once

SIZE = f"{SMALL[0]}x{SMALL[1]}"
LENGTHS = {"a": 12, "b": 9, "c": 7, "d": 10}


def inprocess_execute(config, plan, todo, payload, weights, info, reporter, *, tick=None, sleep=None, fence=None):
    """The executor's contract without Ray: one ShardProcessor, events to the reporter."""
    assert fence, "a job hands its lease token to the actors, so that a taken-over run cannot commit"
    processor = shards.ShardProcessor(config, payload, weights, info, threads=1, fence=fence)
    outcome = executor.Outcome()
    for shard in todo:
        if tick is not None:
            tick()

        def notify(event):
            if isinstance(event, VideoFinished):
                if event.traceback:
                    outcome.internal_errors.append(
                        InternalError(event.shard, event.video_id, event.error, event.traceback)
                    )
                reporter.video(event)

        outcome.committed[shard] = processor.process(shard, plan.videos(shard), progress=notify)
        reporter.shard_done(outcome.committed[shard])
    return outcome


@pytest.fixture
def local_exec(monkeypatch):
    monkeypatch.setattr(executor, "execute", inprocess_execute)
    monkeypatch.setattr(shards, "_sleep", lambda seconds: None)


@pytest.fixture
def videos(tmp_path, make_video):
    for i, (name, n) in enumerate(LENGTHS.items()):
        make_video(f"videos/{name}.mp4", n_frames=n, seed=i)
    return tmp_path / "videos"


def _config(videos, out, tiny_weights, **kw) -> RunConfig:
    values = dict(input=str(videos), output=str(out), weights=str(tiny_weights), size=SIZE, shard_size=2, log="quiet")
    values.update(kw)
    return RunConfig(**values).validate()


def test_stale_records_and_an_interrupted_overwrite_are_not_counted(
    tmp_path, videos, tiny_weights, local_exec, monkeypatch
):
    out = tmp_path / "out"
    first = run_job(_config(videos, out, tiny_weights))
    assert first.exit_code == 0
    old_records = sorted(os.listdir(out / "_commits"))
    assert len(old_records) == 2

    # A lost config.json (or an older version's interrupted --overwrite): the records of the
    # old config are still there when a run with another config starts.
    (out / "config.json").unlink()
    config_b = _config(videos, out, tiny_weights, store_size="8x16")
    output, plan, fields = prepare(config_b, first.report["weights"]["sha256"], persist=True)
    state = output.state(plan)
    assert state.done == [] and sorted(state.stale) == ["000000", "000001"]
    assert "written with config" in state.stale["000000"]
    assert len(open_results(str(out))) == 0  # the reader ignores them too
    assert run_status(str(out))["shards"] == {"total": 2, "done": 0, "pending": 2}

    # An interrupted --overwrite: stopped after the records went, before config.json was replaced.
    real_remove = plan_module.remove_run_files
    calls = []

    def remove_then_die(fs, root, relative):
        calls.append(relative)
        if len(calls) == 3:  # the index and the records are gone; shards, reports, plan, config remain
            raise KeyboardInterrupt
        return real_remove(fs, root, relative)

    monkeypatch.setattr(plan_module, "remove_run_files", remove_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_job(_config(videos, out, tiny_weights, store_size="16x32", overwrite=True))
    monkeypatch.undo()
    monkeypatch.setattr(executor, "execute", inprocess_execute)
    assert not (out / "_lease.json").exists()  # released even when interrupted
    again = run_job(_config(videos, out, tiny_weights, store_size="16x32", overwrite=True))
    assert again.exit_code == 0, again.report
    results = open_results(str(out))
    assert_every_frame_once(results, LENGTHS)
    assert set(results.videos()["store_height"].to_pylist()) == {16}


def _writer(out: Path, shard_id: str, fingerprint: str = "fp"):
    return open_shard_writer(
        str(out),
        shard_id,
        model_size=SMALL,
        store_size=(8, 16),
        run_info={"config_fingerprint": fingerprint, "weights": {"sha256": "0" * 64, "kind": "custom", "uri": "w"}},
    )


def _commit(out: Path, shard_id: str, ids: list[str], fingerprint: str) -> dict:
    writer = _writer(out, shard_id, fingerprint)
    for n, video_id in enumerate(ids):
        maps = np.full((n + 1, *SMALL), n, np.uint8)
        writer.write(
            VideoResult(
                video_id, video_id, frame_indices=np.arange(n + 1), timestamps=np.arange(n + 1) / 10.0, maps=maps
            )
        )
    return writer.commit()


def test_the_index_is_read_with_only_newer_records(tmp_path, monkeypatch):
    out = tmp_path / "out"
    for i in range(3):
        _commit(out, f"s{i}", [f"v{i}-0", f"v{i}-1"], "fp")
    fs, root = layout.open_fs(str(out))
    index.fold(fs, root)
    _commit(out, "s3", ["v3-0"], "fp")  # committed after the index
    redo = _commit(out, "s1", ["v1-0", "v1-1"], "fp")  # a shard redone after the index

    read: list[str] = []
    real = layout.cat_many

    def counting(fs_, paths):
        read.extend(p for p in paths if "/_commits/" in p)
        return real(fs_, paths)

    monkeypatch.setattr(layout, "cat_many", counting)
    commits = index.scan(fs, root)
    assert sorted(commits.entries) == ["s0", "s1", "s2", "s3"]
    assert sorted(Path(p).name for p in read) == ["s1.json", "s3.json"]  # only the records newer than the index
    assert commits.entries["s1"].attempt_prefix == redo.attempt_prefix
    monkeypatch.undo()

    results = open_results(str(out))
    assert sorted(results.videos()["video_id"].to_pylist()) == ["v0-0", "v0-1", "v1-0", "v1-1", "v2-0", "v2-1", "v3-0"]
    np.testing.assert_array_equal(results.frame_indices("v1-1"), [0, 1])
    assert results.videos().filter(__import__("pyarrow.compute").compute.equal(results.videos()["video_id"], "v1-1"))[
        "attempt"
    ].to_pylist() == [redo.attempt]
    index.fold(fs, root)
    assert sorted(index.scan(fs, root).indexed) == ["s0", "s1", "s2", "s3"]
    assert len(open_results(str(out))) == 7


def test_status_and_planning_from_the_index_read_no_record(tmp_path, monkeypatch):
    """Counts, failures and attempt folders are index columns: whole records are read only when asked for."""
    out = tmp_path / "out"
    writer = _writer(out, "s0")
    writer.write(VideoResult.failed("bad", "/v/bad.mp4", "not-video", "not a video file"))
    first = writer.commit()
    _commit(out, "s1", ["ok-0", "ok-1"], "fp")
    fs, root = layout.open_fs(str(out))
    index.fold(fs, root)
    (out / "_index" / "videos-stale.parquet").write_bytes(b"left by an older fold")
    index.fold(fs, root)  # nothing new: the index stands
    _commit(out, "s2", ["late"], "fp")
    index.fold(fs, root)
    left = [p.name for p in (out / "_index").glob("videos-*.parquet")]
    assert len(left) == 1 and left != ["videos-stale.parquet"]  # one videos file: the one the index names

    def no_records(self, i):
        raise AssertionError("a whole record was read")

    monkeypatch.setattr(index._LazyRecords, "get", no_records)
    entries = index.scan(fs, root).entries
    assert [f.video_id for f in entries["s0"].failures] == ["bad"] and entries["s1"].failures == ()
    assert entries["s0"].attempt_prefix == first.attempt_prefix and entries["s2"].n_videos == 1
    monkeypatch.undo()
    assert index.scan(fs, root).entries["s0"].record == first  # and read when asked for


def test_orphan_cleanup_spares_attempts_newer_than_the_lease(tmp_path):
    out = tmp_path / "out"
    _commit(out, "s0", ["a"], "fp")
    old = out / "shards" / "s0" / "20200101T000000Z-aaaaaaaaaaaa"
    new = out / "shards" / "s0" / "29990101T000000Z-bbbbbbbbbbbb"  # e.g. a live writer's attempt
    old.mkdir(parents=True)
    new.mkdir(parents=True)
    removed = layout.remove_orphans(str(out), before="20260101T000000Z")
    assert removed == ["shards/s0/20200101T000000Z-aaaaaaaaaaaa"]
    assert new.exists() and len(open_results(str(out))) == 1


def test_a_300_byte_unicode_id_in_the_png_store(tmp_path):
    video_id = "é" * 150  # 300 bytes in UTF-8: over the 255-byte name limit
    writer = open_shard_writer(
        str(tmp_path / "out"),
        "s0",
        format="png",
        model_size=SMALL,
        store_size=(8, 16),
        run_info={"config_fingerprint": "fp", "weights": {"sha256": "0" * 64, "kind": "custom", "uri": "w"}},
    )
    maps = np.full((3, *SMALL), 7, np.uint8)
    writer.write(VideoResult(video_id, "x", frame_indices=np.arange(3), timestamps=np.arange(3) / 10.0, maps=maps))
    writer.commit()
    results = open_results(str(tmp_path / "out"))
    assert results.videos()["video_id"].to_pylist() == [video_id]  # the full id stays in the tables
    assert results.maps(video_id).shape == (3, 8, 16)
    name = folder_name(video_id)
    assert len(name.encode()) <= 200 and name == folder_name(video_id) and name != folder_name("é" * 151)


def test_any_exception_in_a_video_is_recorded_and_the_shard_commits(
    tmp_path, videos, tiny_weights, local_exec, monkeypatch
):
    from tased_batch.run import pipeline

    real = pipeline.sample_frames

    def absurd(info, *args, **kwargs):
        if info.n_frames == LENGTHS["b"]:  # absurd container metadata in video b
            raise MemoryError("cannot allocate 10^12 frames")
        return real(info, *args, **kwargs)

    monkeypatch.setattr(pipeline, "sample_frames", absurd)
    out = tmp_path / "out"
    result = run_job(_config(videos, out, tiny_weights))
    assert result.exit_code == 3
    failure = next(f for f in result.report["failures"] if f["video_id"] == "b")
    assert failure["reason"] == "internal-error" and "MemoryError: cannot allocate" in failure["error"]
    (internal,) = result.report["internal_errors"]
    assert internal["video_id"] == "b" and "MemoryError: cannot allocate" in internal["traceback"]
    assert "in absurd" in internal["traceback"]  # the frame that raised, for the bug report
    assert run_status(str(out))["shards"]["pending"] == 0  # the shard with the bad video committed
    results = open_results(str(out))
    assert sorted(results.videos()["video_id"].to_pylist()) == sorted(LENGTHS)
    assert_every_frame_once(results, {k: v for k, v in LENGTHS.items() if k != "b"})


def test_storage_that_stays_down_leaves_the_shard_pending(tmp_path, videos, tiny_weights, local_exec, monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr(shards, "_sleep", sleeps.append)

    def throttled(sources, *args, **kwargs):  # every fetch is throttled: each stream fails before it starts
        return iter(
            [StreamFailed(key, "io-error", "SlowDown: please reduce your request rate") for key in range(len(sources))]
        )

    monkeypatch.setattr(shards, "serial_streams", throttled)
    with pytest.raises(Exception, match="SlowDown"):
        run_job(_config(videos, tmp_path / "out", tiny_weights))
    assert len(sleeps) == 5 and sum(sleeps) >= 60 * 2  # minutes of backoff, not seconds (none really slept)
    assert not os.path.exists(tmp_path / "out" / "_commits")  # never a committed io-error


def test_ids_with_rich_markup_are_printed_as_plain_text(tmp_path, capsys):
    from rich.console import Console

    from tased_batch.run.progress import RichReporter
    from tased_batch.run.runrecords import VideoFinished

    reporter = RichReporter(1, 1)
    reporter.console = Console(file=io.StringIO(), width=200)
    reporter.video(VideoFinished("000000", "clip [/] [bold]x", "failed", reason="not-video", error="bad [/red] bytes"))
    reporter.close()
    text = reporter.console.file.getvalue()
    assert "clip [/] [bold]x" in text and "bad [/red] bytes" in text

    out = tmp_path / "out"
    _commit(out, "s0", ["ok"], "fp")
    from typer.testing import CliRunner

    from tased_batch.cli.main import app

    writer = _writer(out, "s1")
    writer.write(VideoResult.failed("[/]weird[bold]", "src [/]", "not-video", "cannot [/] read"))
    writer.commit()
    stored = {"written_by": "tased-batch", "config": {}, "fingerprint": "fp", "fingerprint_fields": {}}
    Output(str(out)).fs.pipe(str(out / "config.json"), json.dumps(stored).encode())
    import pyarrow as pa
    import pyarrow.parquet as pq

    (out / "plan").mkdir()
    pq.write_table(
        pa.table(
            {
                "video_id": ["ok", "[/]weird[bold]"],
                "uri": ["a", "b"],
                "member": [None, None],
                "offset": pa.array([None, None], pa.int64()),
                "size": pa.array([None, None], pa.int64()),
                "shard": ["s0", "s1"],
            }
        ),
        out / "plan" / "videos.parquet",
    )
    shown = CliRunner().invoke(app, ["status", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "[/]weird[bold]: cannot [/] read" in " ".join(shown.output.split())


def test_no_secret_is_written_logged_or_submitted(tmp_path, videos, tiny_weights, s3, local_exec, capsys, monkeypatch):
    import boto3
    from botocore.config import Config

    from tased_batch.run import submit as submit_mod

    s3["fs"].put(str(tiny_weights), f"{s3['bucket']}/w/tiny.pt")
    client = boto3.client(
        "s3",
        endpoint_url=s3["endpoint"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=Config(signature_version="s3v4"),
    )
    signed = client.generate_presigned_url(
        "get_object", Params={"Bucket": s3["bucket"], "Key": "w/tiny.pt"}, ExpiresIn=600
    )
    assert "X-Amz-Signature=" in signed
    signature = signed.split("X-Amz-Signature=")[1].split("&")[0]
    nested = {
        "client_kwargs": {"aws_secret_access_key": "NESTED-SECRET-1"},
        "headers": {"Authorization": "Bearer NESTED-SECRET-2"},
    }
    secrets = ["NESTED-SECRET-1", "NESTED-SECRET-2", signature]
    # Nested storage options on one run, a signed weights URL on another (http takes no S3 options).
    for out, weights, options in ((tmp_path / "out1", str(tiny_weights), nested), (tmp_path / "out2", signed, {})):
        result = run_job(_config(videos, out, weights, storage_options=options, log="jsonl"))
        assert result.exit_code == 0, result.report
        logged = capsys.readouterr()
        for text in (logged.out, logged.err, json.dumps(result.report)):
            assert not any(s in text for s in secrets)
        files = [p for p in out.rglob("*") if p.is_file()]
        assert any(p.name == "config.json" for p in files) and any("reports" in p.parts for p in files)
        for path in files:
            data = path.read_bytes()
            assert not any(s.encode() in data for s in secrets), path
    weights_uri = open_results(str(tmp_path / "out2")).videos()["weights_uri"].to_pylist()[0]
    assert weights_uri.startswith("http://127.0.0.1") and "X-Amz-Signature=***" in weights_uri

    submitted = {}

    class FakeClient:
        def submit_job(self, **kwargs):
            submitted.update(kwargs)
            return "job-1"

    monkeypatch.setattr(submit_mod, "_client", lambda address: FakeClient())
    notes: list[str] = []
    submit_mod.submit(
        "http://head:8265",
        [
            "run",
            "s3://b/in/",
            "s3://b/out",
            "-s",
            "client_kwargs.aws_secret_access_key=NESTED-SECRET-1",
            "--storage-option",
            "endpoint_url=http://minio:9000",
        ],
        note=notes.append,
        extra_env=json.dumps({"env_vars": {"AWS_SECRET_ACCESS_KEY": "NESTED-SECRET-2", "X": "1"}}),
    )
    assert "endpoint_url=http://minio:9000" in submitted["entrypoint"]
    assert not any(s in json.dumps(submitted) for s in secrets) and notes
    with pytest.raises(Exception, match="signed URL"):
        submit_mod.submit("http://head:8265", ["run", "s3://b/in/", "s3://b/out", "--weights", signed])


@pytest.mark.parametrize("fmt", ["parquet", "zarr"])
def test_run_with_crop_stores_a_crop_track_and_summaries(tmp_path, videos, tiny_weights, local_exec, fmt):
    """`run --crop 9:16`: every map gets statistics and a crop window, every video its summary columns."""
    out = tmp_path / "out"
    done = run_job(_config(videos, out, tiny_weights, crop="9:16", format=fmt))
    assert done.exit_code == 0, done.report
    results = open_results(str(out))
    assert_every_frame_once(results, LENGTHS)
    assert len(results.table_files("crop.parquet")) == 2  # one per shard
    assert all(Path(p).exists() for p in results.table_files("crop.parquet"))
    for row in results.videos().to_pylist():
        video = row["video_id"]
        track = results.crop_track(video, "9:16")
        np.testing.assert_array_equal(track["frame_index"].to_numpy(), results.frame_indices(video))
        # 9:16 of a 128x72 source: the full height, 40 pixels wide (even), inside the frame
        assert (row["width"], row["height"]) == (128, 72)
        assert set(track["crop_w"].to_pylist()) == {40} and set(track["crop_h"].to_pylist()) == {72}
        assert all(0 <= x <= 128 - 40 for x in track["crop_x"].to_pylist())
        assert (row["crop_aspect"], row["crop_width"], row["crop_height"]) == ("9:16", 40, 72)
        assert row["focus"] is not None and 0.0 <= row["crop_mass_mean"] <= 1.0
        stats = results.frame_stats(video)
        np.testing.assert_array_equal(stats["frame_index"].to_numpy(), results.frame_indices(video))
        assert all(0.0 <= v <= 1.0 for v in stats["com_x"].to_pylist())
