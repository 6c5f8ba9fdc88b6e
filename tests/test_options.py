"""The option schema is the one source: every option it declares works from each place options enter.

The tests iterate over the schema, so an option added there is tested here without a new line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tased_batch import options
from tased_batch.cli.main import app
from tased_batch.config import RunConfig, build_config, fingerprint
from tased_batch.core.errors import ConfigError
from tased_batch.options import OPTIONS, Option, differences, predictor_options

SHA = "0" * 64


def other_value(option: Option) -> Any:
    """A valid typed value other than the default."""
    if option.spec.example is not None:
        return option.spec.example
    if option.spec.choices:
        return [c for c in option.spec.choices if c != option.default][-1]
    if option.kind is bool:
        return not option.default
    if option.kind is int:
        return 3 if option.default in (None, "auto") else option.default + 2
    if option.kind is float:
        return 2.5 if option.default is None else option.default * 2
    if option.kind is str:
        return "custom"
    raise AssertionError(f"{option.name}: give it an example in the schema")


def text(value: Any) -> str:
    """A value as a user types it."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def cli_args(option: Option, value: Any) -> list[str]:
    if option.kind is bool:
        return [option.flag if value else f"--no-{option.flag[2:]}"]
    if option.kind is dict:
        return [a for k, v in value.items() for a in (option.flag, f"{k}={json.dumps(v)}")]
    return [option.flag, text(value)]


NAMED = [o for o in OPTIONS.values() if not o.spec.argument]


@pytest.fixture
def captured(monkeypatch):
    """The RunConfig `run`/`resume` would execute, instead of executing it."""
    import tased_batch.cli.run as cli_run

    configs: list[RunConfig] = []
    monkeypatch.setattr(cli_run, "_run", configs.append)
    return configs


def test_help_lists_every_option_with_its_help():
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "300"}, terminal_width=300)
    assert result.exit_code == 0
    for option in OPTIONS.values():
        assert option.help.strip()
        words = option.help.split()[:3]
        assert " ".join(words) in result.output, option.name
        if not option.spec.argument:
            assert option.flag in result.output, option.name


@pytest.mark.parametrize("option", NAMED, ids=lambda o: o.name)
def test_the_command_line_accepts_every_option(option, captured):
    value = other_value(option)
    result = CliRunner().invoke(app, ["run", "in", "out", *cli_args(option, value)])
    assert result.exit_code == 0, result.output
    (config,) = captured
    assert getattr(config, option.name) == value
    assert getattr(getattr(config, option.group), option.name) == value  # the layer's own group holds it


def test_positional_arguments_and_switches(captured):
    result = CliRunner().invoke(app, ["run", "videos/", "maps/", "-q"])
    assert result.exit_code == 0, result.output
    assert (captured[0].input, captured[0].output, captured[0].log) == ("videos/", "maps/", "quiet")
    CliRunner().invoke(app, ["run", "videos/", "maps/", "--log-json"])
    assert captured[1].log == "jsonl"


@pytest.mark.parametrize("option", list(OPTIONS.values()), ids=lambda o: o.name)
def test_a_config_file_accepts_every_option_with_dashes_or_underscores(option, tmp_path):
    value = other_value(option)
    for key in (option.name, option.name.replace("_", "-")):
        path = tmp_path / "job.yaml"
        file_value = text(value) if isinstance(value, tuple) else value
        path.write_text(yaml.safe_dump({"input": "in", "output": "out", key: file_value}))
        config = build_config(str(path), {})
        assert getattr(config, option.name) == value


@pytest.mark.parametrize("option", list(OPTIONS.values()), ids=lambda o: o.name)
def test_stored_config_and_fingerprint_follow_the_schema(option):
    base = RunConfig(input="in", output="out")
    value = other_value(option)
    changed = RunConfig(**{**base.values(), option.name: value})
    stored = json.loads(json.dumps(changed.to_dict()))  # what config.json holds
    assert RunConfig(**stored) == changed
    old, new = base.fingerprint_fields(SHA), changed.fingerprint_fields(SHA)
    if option.spec.fingerprint_as:  # the weights enter by their SHA-256, not their name
        assert new[option.spec.fingerprint_as] == SHA and fingerprint(old) == fingerprint(new)
    elif option.spec.fingerprint:
        assert fingerprint(old) != fingerprint(new)
        assert [d.split(":")[0] for d in differences(old, new)] == [option.name]
    else:
        assert fingerprint(old) == fingerprint(new), f"{option.name} must not change the fingerprint"


def test_fingerprints_of_runs_before_the_new_options_are_unchanged():
    # Recorded with the config module before the schema (and before crop, decode_workers, ...),
    # so that runs it started still resume.
    plain = RunConfig(input="s3://a/v/", output="s3://a/m")
    sampled = RunConfig(input="s3://a/v/", output="s3://a/m", size="64x96", store_size="16x32", every=3, fps=12.5)
    hint = "declare a new fingerprinted option with fingerprint='if set' and default None"
    assert fingerprint(plain.fingerprint_fields(SHA)) == "b40cffbb25cc83a4", hint
    assert fingerprint(sampled.fingerprint_fields(SHA)) == "244d4727c451fba3", hint


@pytest.mark.parametrize("option", [o for o in OPTIONS.values() if not o.spec.argument], ids=lambda o: o.name)
def test_resume_changes_only_what_the_schema_allows(option, tmp_path, captured):
    out = tmp_path / "out"
    out.mkdir()
    stored = RunConfig(input="in", output=str(out), size="64x96").to_dict()
    record = {"written_by": "tased-batch", "config": stored, "fingerprint": "f", "fingerprint_fields": {}}
    (out / "config.json").write_text(json.dumps(record))
    value = other_value(option)
    result = CliRunner().invoke(app, ["resume", str(out), *cli_args(option, value)])
    if option.spec.resume:
        assert result.exit_code == 0, result.output
        assert getattr(captured[0], option.name) == value
        assert captured[0].model_size == (64, 96)  # the rest is the stored run's
    else:
        assert result.exit_code == 2 and "No such option" in result.output

        from tased_batch.run.job import resume_config

        with pytest.raises(ConfigError, match=f"resume cannot change {option.name}"):
            resume_config(str(out), {option.name: value})


@pytest.mark.parametrize("option", list(OPTIONS.values()), ids=lambda o: o.name)
def test_the_ray_data_plugin_takes_or_names_every_option(option):
    value = other_value(option)
    if not option.spec.predictor:
        with pytest.raises(ConfigError, match="only apply to `tased-batch run`"):
            predictor_options({option.name: value})
        return
    groups = {
        g.__class__.__name__: g
        for g in predictor_options({option.name: text(value) if isinstance(value, tuple) else value})
    }
    holder = next(g for g in groups.values() if hasattr(g, option.name))
    assert getattr(holder, option.name) == value


def test_the_plugin_applies_the_same_cross_option_rules():
    with pytest.raises(ConfigError, match="give only one of them"):
        predictor_options({"every": 2, "output_fps": 1.0})
    with pytest.raises(ConfigError, match="larger than the model size"):
        predictor_options({"size": "64x96", "store_size": "70x32"})
    with pytest.raises(ConfigError, match="batch_size must be int or 'auto'"):
        predictor_options({"batch_size": "many"})


def test_every_shard_records_the_run_info_options():
    from tased_batch.model.weights import WeightsInfo
    from tased_batch.run.shards import run_info

    config = RunConfig(input="in", output="out", size="64x96", every=4, crop="9:16")
    info = run_info(config, WeightsInfo(sha256=SHA, kind="random", uri="random"), "fp")
    assert (info["size"], info["every"], info["crop"], info["config_fingerprint"]) == ("64x96", 4, "9:16", "fp")
    assert {n for n, o in OPTIONS.items() if o.spec.run_info} <= set(info)


def test_the_schema_and_cli_load_neither_torch_nor_ray():
    code = (
        "import sys, tased_batch.options, tased_batch.config, tased_batch.cli.run; "
        "print(sorted(m for m in ('torch', 'ray', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_schema_choices_are_those_of_the_layers_that_implement_them():
    """The schema keeps light copies (no torch at import); a decoder, precision or format added to its
    registry but not here (or the reverse) would be refused by the CLI or fail per video."""
    from tased_batch import decode, stores
    from tased_batch.engine import fastpath, windows

    assert set(options.DECODERS) == set(decode.DECODERS)
    assert set(options.PRECISIONS) == set(fastpath.PRECISIONS)
    assert set(options.FORMATS) == set(stores.FORMATS)
    assert windows.FIRST_WINDOWS == options.FIRST_WINDOWS
