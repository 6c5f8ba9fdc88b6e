"""`run`'s config: the option schema's values, from defaults, a config file and flags, checked once.

A config file (YAML, JSON or TOML) holds the same keys as the flags (dashes or
underscores); flags override the file. Unknown keys and bad values are refused with a
message naming the key. What the options are, and which of them are fingerprinted, is
declared once in :mod:`tased_batch.options`; this module reads files and assembles a
:class:`RunConfig`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from tased_batch.core.errors import ConfigError
from tased_batch.core.secrets import secret_paths
from tased_batch.options import (
    FINGERPRINT_KEYS,
    GROUPS,
    LOG_MODES,
    OPTIONS,
    ExecutionOptions,
    IoOptions,
    ModelOptions,
    SamplingOptions,
    StoreOptions,
    check_rules,
    defaults,
    differences,
    dump_values,
    fingerprint_fields,
    group_values,
    parse_options,
    run_info_fields,
)

__all__ = [
    "FINGERPRINT_KEYS",
    "LOG_MODES",
    "RunConfig",
    "build_config",
    "check_keys",
    "differences",
    "fingerprint",
    "read_config_file",
]


class RunConfig:
    """Everything `run` needs, as one group per layer (``config.model``, ``config.sampling``, ...).

    ``RunConfig(**options)`` takes any options by name (text or typed values), checks them
    and the rules between them; the rest keep their defaults. ``config.<option>`` reads any
    option from its group.
    """

    io: IoOptions
    model: ModelOptions
    sampling: SamplingOptions
    store: StoreOptions
    execution: ExecutionOptions

    def __init__(self, **options: Any) -> None:
        values = {**defaults(), **parse_options(options, where="config")}
        check_rules(values)
        for group, cls in GROUPS.items():
            object.__setattr__(self, group, cls(**group_values(group, values)))

    def __getattr__(self, name: str) -> Any:
        option = OPTIONS.get(name)
        if option is None:
            raise AttributeError(f"{type(self).__name__} has no option {name!r}")
        return getattr(self.__dict__[option.group], name)

    def __setattr__(self, name: str, value: Any) -> None:
        option = OPTIONS.get(name)
        if option is None:
            raise AttributeError(f"{type(self).__name__} has no option {name!r}")
        setattr(self.__dict__[option.group], name, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunConfig) and self.values() == other.values()

    def __repr__(self) -> str:
        return f"RunConfig({', '.join(f'{k}={v!r}' for k, v in self.values().items())})"

    def validate(self) -> RunConfig:
        """Raise ConfigError unless the config can run (values were checked when it was built)."""
        if not self.input:
            raise ConfigError("no input given", "pass INPUT or set `input` in the config file")
        if not self.output:
            raise ConfigError("no output given", "pass OUTPUT or set `output` in the config file")
        check_rules(self.values())
        return self

    @property
    def model_size(self) -> tuple[int, int]:
        return self.model.size

    @property
    def store_shape(self) -> tuple[int, int] | None:
        return self.store.store_size

    def values(self) -> dict[str, Any]:
        """Every option's typed value, in schema order."""
        return {name: getattr(self.__dict__[o.group], name) for name, o in OPTIONS.items()}

    def to_dict(self) -> dict[str, Any]:
        """Every option in its config-file form (sizes as ``HxW``): what the stored config holds."""
        return dump_values(self.values())

    def fingerprint_fields(self, weights_sha256: str) -> dict[str, Any]:
        return fingerprint_fields(self.values(), weights_sha256)

    def run_info_fields(self) -> dict[str, Any]:
        return run_info_fields(self.values())


def fingerprint(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def check_keys(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Keys (dashes or underscores) and values checked against the schema, typed."""
    return parse_options(data, where)


# A config file is a page of options; anything larger is not one (and is not read whole).
CONFIG_MAX_BYTES = 1 << 20


def _yaml_load(text: str, uri: str) -> Any:
    """YAML without aliases: a few hundred bytes of nested anchors expand to gigabytes."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise ConfigError(
                    f"{uri}: YAML alias *{event.anchor} at line {event.start_mark.line + 1} is not allowed",
                    "write the value out in full (config files refuse anchors and aliases)",
                )
            return super().compose_node(parent, index)

    return yaml.load(text, Loader=NoAliasLoader)


def read_config_file(uri: str, storage_options: dict | None = None) -> dict[str, Any]:
    """Read a YAML/JSON/TOML config file into checked option values."""
    import fsspec

    try:
        with fsspec.open(uri, "rt", **(storage_options or {})) as f:
            text = f.read(CONFIG_MAX_BYTES + 1)
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {uri}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{uri}: a config file must be UTF-8 text ({e})") from e
    if len(text) > CONFIG_MAX_BYTES:
        raise ConfigError(
            f"{uri}: config file is over {CONFIG_MAX_BYTES >> 20} MiB",
            "a config file holds options; put long input lists in a manifest",
        )
    lower = uri.lower()
    try:
        if lower.endswith(".json"):
            data = json.loads(text)
        elif lower.endswith(".toml"):
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # Python 3.10 has no tomllib; tomli is the same parser
                import tomli as tomllib

            data = tomllib.loads(text)
        else:
            data = _yaml_load(text, uri)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"{uri}: cannot parse config file ({e})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{uri}: a config file must hold a mapping of option: value")
    values = check_keys(data, where=uri)
    secrets = secret_paths(values.get("storage_options") or {})
    if secrets:
        raise ConfigError(
            f"{uri}: credentials in a config file ({', '.join(secrets)})",
            "config files get shared; use the AWS environment variables, a profile or an instance role",
        )
    return values


def build_config(file: str | None, flags: dict[str, Any]) -> RunConfig:
    """Defaults <- config file <- flags that were given (not None); then validated."""
    values: dict[str, Any] = {}
    if file:
        values.update(read_config_file(file))
    given = check_keys({k: v for k, v in flags.items() if v is not None}, where="command line")
    if "storage_options" in given and "storage_options" in values:
        given["storage_options"] = {**values["storage_options"], **given["storage_options"]}
    values.update(given)
    return RunConfig(**values).validate()
