"""Hostile inputs: whatever a file, a name or a config claims, nothing is dropped, mixed up,
hung or allowed to take unbounded memory (issue 22, the inputs half)."""

from __future__ import annotations

import pytest

from tased_batch.config import read_config_file
from tased_batch.core.errors import ConfigError

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
