"""workflows/: every config parses into the run schema and passes `run --dry-run` against a local S3.

The configs name ``s3://my-bucket/...``; each test puts small stand-ins at the same keys of
a bucket on the local moto endpoint and passes the config's own input and output with that
bucket on the command line (flags override the file), plus the tiny test checkpoint
(`--weights`; the released weights cannot be downloaded here). `--dry-run` starts no Ray.
"""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tased_batch.config import FINGERPRINT_KEYS, RunConfig, build_config, read_config_file

from conftest import SMALL

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
ARCHIVE = WORKFLOWS / "archive-to-parquet.yaml"
CAPTIONS = WORKFLOWS / "webdataset-captions.yaml"
RETRY = WORKFLOWS / "retry-failed.yaml"
BUCKET = "s3://my-bucket/"


def _local(uri: str, bucket: str) -> str:
    assert uri.startswith(BUCKET), f"workflows name {BUCKET}... so users replace one bucket name: {uri}"
    return f"s3://{bucket}/" + uri[len(BUCKET) :]


def _dry_run(config: Path, bucket: str, weights: Path) -> dict:
    """`tased-batch run --config FILE INPUT OUTPUT --weights W --dry-run --log-json` in process."""
    from tased_batch.cli.main import app

    values = read_config_file(str(config))
    args = [
        "run",
        "--config",
        str(config),
        _local(values["input"], bucket),
        _local(values["output"], bucket),
        "--weights",
        str(weights),
        "--dry-run",
        "--log-json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("{")]
    event = json.loads(line)
    assert event["event"] == "plan" and event["dry_run"]
    return event


def _make_shard(path: Path, samples: dict[str, tuple[Path | bytes, str]]) -> Path:
    """A video2dataset-style tar: KEY.mp4, KEY.txt (caption), KEY.json (metadata) per sample."""
    with tarfile.open(path, "w") as tar:
        for key, (video, caption) in samples.items():
            members = {
                f"{key}.mp4": video.read_bytes() if isinstance(video, Path) else video,
                f"{key}.txt": caption.encode(),
                f"{key}.json": json.dumps({"key": key, "caption": caption}).encode(),
            }
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_every_workflow_config_parses_into_the_run_schema():
    configs = sorted(WORKFLOWS.glob("*.yaml"))
    assert {ARCHIVE, CAPTIONS, RETRY} <= set(configs)
    for path in configs:
        config = RunConfig(**read_config_file(str(path))).validate()
        assert config.input.startswith(BUCKET) and config.output.startswith(BUCKET), path
        assert config.weights == "released" and not config.storage_options  # no credentials in files


def test_archive_workflow_dry_run(s3, make_video, tiny_weights):
    input = _local(read_config_file(str(ARCHIVE))["input"], s3["bucket"])
    s3["fs"].put(str(make_video("a.mp4", n_frames=8)), f"{input}a.mp4")
    s3["fs"].put(str(make_video("b.mp4", n_frames=8)), f"{input}2024/b.mp4")
    event = _dry_run(ARCHIVE, s3["bucket"], tiny_weights)
    assert event["plan"] == {"videos": 2, "shards": 1, "shard_size": 32, "shards_to_run": 1, "shards_done": 0}
    assert event["config"]["format"] == "parquet" and event["config"]["size"] == "224x384"
    assert event["weights"]["kind"] == "custom"  # the flag overrode `weights: released`


def test_captions_workflow_dry_run_keys_videos_by_sample_key(s3, make_video, tiny_weights):
    from tased_batch.decode.sources import iter_sources

    values = read_config_file(str(CAPTIONS))
    folder = _local(values["input"], s3["bucket"]).rsplit("/", 1)[0]
    clip = make_video("clip.mp4", n_frames=8)
    for n, keys in enumerate((["000000000", "000000001"], ["000010000"])):
        shard = _make_shard(clip.parent / f"{n:05d}.tar", {k: (clip, f"caption {k}") for k in keys})
        s3["fs"].put(str(shard), f"{folder}/{n:05d}.tar")
    event = _dry_run(CAPTIONS, s3["bucket"], tiny_weights)
    assert event["plan"]["videos"] == 3 and event["config"]["output_fps"] == 2
    ids = [s.video_id for s in iter_sources(_local(values["input"], s3["bucket"]))]
    assert ids == ["000000000", "000000001", "000010000"]


def test_retry_workflow_continues_the_archive_run_and_redoes_failed_shards(s3, make_video, tiny_weights):
    from tased_batch.config import fingerprint
    from tased_batch.core.records import VideoResult
    from tased_batch.model.weights import weights_payload
    from tased_batch.run.plan import prepare
    from tased_batch.run.shards import run_info
    from tased_batch.stores import open_shard_writer

    archive, retry = read_config_file(str(ARCHIVE)), read_config_file(str(RETRY))
    assert {k: archive.get(k) for k in FINGERPRINT_KEYS} == {k: retry.get(k) for k in FINGERPRINT_KEYS}
    assert retry["retry_failed"] is True and not archive.get("retry_failed")

    # The archive run, as far as planning and one committed shard whose videos all failed.
    input = _local(archive["input"], s3["bucket"])
    s3["fs"].put(str(make_video("a.mp4", n_frames=8)), f"{input}a.mp4")
    flags = {"input": input, "output": _local(archive["output"], s3["bucket"]), "weights": str(tiny_weights)}
    config = build_config(str(ARCHIVE), flags)
    _, weights = weights_payload(config.weights)
    _, plan, fields = prepare(config, weights.sha256)
    (shard,) = plan.shard_ids
    writer = open_shard_writer(
        config.output, shard, model_size=config.model_size, run_info=run_info(config, weights, fingerprint(fields))
    )
    for video in plan.videos(shard):
        writer.write(VideoResult.failed(video.video_id, video.uri, "io-error", "throttled"))
    writer.commit()

    assert _dry_run(ARCHIVE, s3["bucket"], tiny_weights)["plan"]["shards_to_run"] == 0  # same config: resumes
    event = _dry_run(RETRY, s3["bucket"], tiny_weights)  # accepted on the same output: no config change
    assert event["plan"]["shards_to_run"] == 1 and event["plan"]["shards_done"] == 1


def test_join_captions_example_joins_maps_to_captions(make_video, tiny_weights, tmp_path):
    """workflows/join_captions.py on a committed shard of the captions workflow (no Ray: one ShardProcessor)."""
    from tased_batch.config import fingerprint
    from tased_batch.model.weights import weights_payload
    from tased_batch.run.plan import prepare
    from tased_batch.run.shards import ShardProcessor, run_info
    from tased_batch.stores.parquet import decode_map

    clip = make_video("clip.mp4", n_frames=12)
    shards = tmp_path / "wds"
    shards.mkdir()
    _make_shard(shards / "00000.tar", {"000000000": (clip, "a red square"), "000000001": (b"not a video", "broken")})
    # a second video2dataset run in the same glob: its keys start at 000000000 again
    _make_shard(shards / "00001.tar", {"000000000": (clip, "another run's clip")})
    flags = {
        "input": str(shards / "*.tar"),
        "output": str(tmp_path / "maps"),
        "weights": str(tiny_weights),
        "size": f"{SMALL[0]}x{SMALL[1]}",
    }
    config = build_config(str(CAPTIONS), flags)
    payload, weights = weights_payload(config.weights)
    _, plan, fields = prepare(config, weights.sha256)
    processor = ShardProcessor(config, payload, weights, run_info(config, weights, fingerprint(fields)), device="cpu")
    for shard in plan.shard_ids:
        processor.process(shard, plan.videos(shard))

    spec = importlib.util.spec_from_file_location("join_captions", WORKFLOWS / "join_captions.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    table = example.join(config.output, str(shards / "*.tar")).to_pylist()
    rows = {(Path(r["shard"]).name, r["key"]): r for r in table}
    assert sorted(rows) == [("00000.tar", "000000000"), ("00000.tar", "000000001"), ("00001.tar", "000000000")]
    good, bad = rows["00000.tar", "000000000"], rows["00000.tar", "000000001"]
    other = rows["00001.tar", "000000000"]  # its id carries a ~hash suffix; the join still finds its caption
    assert (other["caption"], other["status"]) == ("another run's clip", "ok")
    assert (good["caption"], good["status"], json.loads(good["meta"])["key"]) == ("a red square", "ok", "000000000")
    assert (bad["caption"], bad["status"], bad["maps"]) == ("broken", "failed", [])
    assert len(good["maps"]) == len(good["timestamps"]) >= 1  # 12 frames at 30 fps, 2 maps per second
    image = decode_map(good["maps"][0], "png", good["height"], good["width"])
    assert image.dtype == np.uint8 and image.shape == (good["height"], good["width"])


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("output_fsp", 2, "unknown option 'output_fsp'"),
        ("shard_size", 0, "shard_size must be at least 1"),
        ("format", "csv", "format: 'csv' is not one of"),
    ],
)
def test_a_broken_workflow_file_is_refused_with_the_key_named(tmp_path, key, value, message):
    import yaml

    from tased_batch.core.errors import ConfigError

    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({**yaml.safe_load(ARCHIVE.read_text()), key: value}))
    with pytest.raises(ConfigError, match=message):
        build_config(str(broken), {})
