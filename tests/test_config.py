"""One config schema for flags and files: validated, overridable, fingerprinted; dry runs plan without Ray."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tased_batch.cli.main import app
from tased_batch.config import build_config, differences, read_config_file
from tased_batch.core.errors import ConfigError


def test_file_then_flags(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        "input: s3://a/videos/\noutput: s3://a/maps\nformat: zarr\nshard-size: 8\nevery: 15\n"
        "storage_options:\n  anon: false\n"
    )
    config = build_config(str(cfg), {"shard_size": 4, "output": None, "storage_options": {"endpoint_url": "http://x"}})
    assert (config.input, config.output, config.format, config.shard_size, config.every) == (
        "s3://a/videos/",
        "s3://a/maps",
        "zarr",
        4,
        15,
    )
    assert config.storage_options == {"anon": False, "endpoint_url": "http://x"}


@pytest.mark.parametrize(
    "suffix,text",
    [
        (".json", '{"input": "in", "output": "out", "fps": 30}'),
        (".toml", 'input = "in"\noutput = "out"\nfps = 30\n'),
        (".yml", "input: in\noutput: out\nfps: 30\n"),
    ],
)
def test_formats(tmp_path, suffix, text):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    assert read_config_file(str(path)) == {"input": "in", "output": "out", "fps": 30.0}


@pytest.mark.parametrize(
    "values,message",
    [
        ({"shard_sise": 3}, "unknown option 'shard_sise' (did you mean shard-size?)"),
        ({"format": "csv"}, "format: 'csv' is not one of parquet, zarr, png"),
        ({"size": "100x100"}, "multiples of 32"),
        ({"every": 0}, "every must be at least 1"),
        ({"every": 2, "output_fps": 1.0}, "give only one of them"),
        ({"batch_size": "many"}, "batch_size must be int"),
        ({"retry_failed": "yes"}, "retry_failed must be true or false"),
        ({"store_size": "300x400"}, "larger than the model size"),
    ],
)
def test_bad_values_are_named(values, message):
    with pytest.raises(ConfigError) as err:
        build_config(None, {"input": "in", "output": "out", **values})
    assert message in str(err.value)


def test_differences_name_the_keys():
    old = {"size": "224x384", "format": "parquet", "weights_sha256": "aa"}
    new = {"size": "224x384", "format": "zarr", "weights_sha256": "bb"}
    assert differences(old, new) == ["weights_sha256: 'aa' -> 'bb'", "format: 'parquet' -> 'zarr'"]


def test_dry_run_from_a_config_file_plans_without_running(tmp_path, make_video, tiny_weights):
    for i in range(5):
        make_video(f"in/v{i}.mp4", n_frames=8, seed=i)
    out = tmp_path / "out"
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"input: {tmp_path / 'in'}\noutput: {out}\nshard_size: 2\nweights: {tiny_weights}\n")
    result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--dry-run", "--log-json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout.strip().splitlines()[-1])
    assert plan["plan"] == {"videos": 5, "shards": 3, "shard_size": 2, "shards_to_run": 3, "shards_done": 0}
    assert plan["weights"]["kind"] == "custom"
    assert not (out / "config.json").exists()  # a dry run writes nothing


def test_bad_config_exits_2_with_the_reason(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("input: in\noutput: out\nactors: -1\n")
    result = CliRunner().invoke(app, ["run", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "actors must be at least 1" in result.output


def test_missing_input_is_refused(tmp_path, tiny_weights):
    result = CliRunner().invoke(
        app, ["run", str(tmp_path / "nowhere"), str(tmp_path / "out"), "--weights", str(tiny_weights), "--dry-run"]
    )
    assert result.exit_code == 2
    assert "nowhere" in result.output


def test_credentials_in_a_config_file_are_refused(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("input: in\noutput: out\nstorage_options: {key: AKIA, secret: s3cr3t}\n")
    with pytest.raises(ConfigError, match="credentials in a config file"):
        read_config_file(str(cfg))
