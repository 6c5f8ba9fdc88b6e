"""One configuration schema for `tased-batch run`, shared by command-line flags and config files.

A config file (YAML, JSON or TOML) holds the same keys as the flags (dashes or
underscores); flags override the file. Unknown keys and bad values are refused with a
message naming the key. The part of the config that changes the maps or their layout is
fingerprinted, so that resuming with a different config is caught.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tased_batch.decode import DECODERS, RESIZES
from tased_batch.engine import FIRST_WINDOWS, PRECISIONS, parse_size
from tased_batch.errors import ConfigError, StoreError
from tased_batch.stores import FORMATS
from tased_batch.stores import parse_size as parse_store_size
LOG_MODES = ("rich", "jsonl", "quiet")

SECRET_KEYS = ("key", "secret", "token", "password", "aws_access_key_id", "aws_secret_access_key",
               "aws_session_token", "session_token")

# Keys whose change alters the maps, which videos are planned, or how they are stored.
FINGERPRINT_KEYS = (
    "input", "url_col", "id_col", "shard_size", "weights_sha256", "size", "store_size", "format",
    "fps", "every", "output_fps", "decoder", "resize", "precision", "first_windows",
)


@dataclass
class RunConfig:
    """Everything `run` needs. Defaults here are the documented defaults of the flags."""

    input: str = ""
    output: str = ""
    weights: str = "released"
    format: str = "parquet"
    size: str = "224x384"
    store_size: str | None = None
    fps: float | None = None
    every: int | None = None
    output_fps: float | None = None
    decoder: str = "auto"
    resize: str = "decoder"
    precision: str = "fp32"
    first_windows: str = "reversed"
    batch_size: int | str = "auto"
    shard_size: int = 16
    url_col: str = "url"
    id_col: str | None = None
    storage_options: dict = field(default_factory=dict)
    address: str | None = None
    actors: int | None = None
    gpus_per_actor: float = 1.0
    cpus_per_actor: float | None = None
    max_attempts: int = 3
    retry_failed: bool = False
    overwrite: bool = False
    dry_run: bool = False
    log: str = "rich"
    lease_ttl: float = 60.0
    stall_timeout: float | None = 1800.0
    video_timeout: float | None = None
    shared_fs: bool = False

    def validate(self) -> "RunConfig":
        """Raise ConfigError naming the first bad value."""
        if not self.input:
            raise ConfigError("no input given", "pass INPUT or set `input` in the config file")
        if not self.output:
            raise ConfigError("no output given", "pass OUTPUT or set `output` in the config file")
        for key, allowed in (("format", FORMATS), ("decoder", DECODERS), ("resize", RESIZES),
                             ("precision", PRECISIONS), ("log", LOG_MODES), ("first_windows", FIRST_WINDOWS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}: {getattr(self, key)!r} is not one of {', '.join(allowed)}")
        for key in ("size", "store_size"):
            value = getattr(self, key)
            if value is None:
                continue
            try:
                parse_size(value) if key == "size" else parse_store_size(value)
            except (ValueError, StoreError) as e:
                raise ConfigError(f"{key}: {e}") from e
        if self.batch_size != "auto" and (isinstance(self.batch_size, str) or self.batch_size < 1):
            raise ConfigError(f"batch_size must be a positive integer or 'auto', got {self.batch_size!r}")
        for key in ("shard_size", "max_attempts"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.actors is not None and self.actors < 1:
            raise ConfigError(f"actors must be at least 1, got {self.actors}")
        for key in ("fps", "output_fps", "gpus_per_actor", "cpus_per_actor", "lease_ttl", "stall_timeout", "video_timeout"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ConfigError(f"{key} must be positive, got {value}")
        if self.every is not None and self.every < 1:
            raise ConfigError(f"every must be at least 1, got {self.every}")
        if self.every is not None and self.output_fps is not None:
            raise ConfigError("every and output_fps both choose output frames", "give only one of them")
        if not isinstance(self.storage_options, dict):
            raise ConfigError("storage_options must be a mapping of key: value")
        if self.store_size is not None:
            (sh, sw), (mh, mw) = parse_store_size(self.store_size), self.model_size
            if sh > mh or sw > mw:
                raise ConfigError(f"store_size {self.store_size} is larger than the model size {self.size}",
                                  "maps are computed at the model size; store them at that size or smaller")
        return self

    @property
    def model_size(self) -> tuple[int, int]:
        return parse_size(self.size)

    @property
    def store_shape(self) -> tuple[int, int] | None:
        return None if self.store_size is None else parse_store_size(self.store_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint_fields(self, weights_sha256: str) -> dict[str, Any]:
        values = {k: getattr(self, k) for k in FINGERPRINT_KEYS if k != "weights_sha256"}
        values["weights_sha256"] = weights_sha256
        return {k: values[k] for k in FINGERPRINT_KEYS}


def fingerprint(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable list of fingerprinted keys that differ: ``"size: 224x384 -> 112x192"``."""
    keys = [k for k in FINGERPRINT_KEYS if old.get(k) != new.get(k)]
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys]


_FIELDS = {f.name: f for f in fields(RunConfig)}
_TYPES = {"input": str, "output": str, "weights": str, "format": str, "size": str, "store_size": str,
          "fps": float, "every": int, "output_fps": float, "decoder": str, "resize": str, "precision": str,
          "first_windows": str, "batch_size": int, "shard_size": int, "url_col": str, "id_col": str, "storage_options": dict,
          "address": str, "actors": int, "gpus_per_actor": float, "cpus_per_actor": float,
          "max_attempts": int, "retry_failed": bool, "overwrite": bool, "dry_run": bool, "log": str,
          "lease_ttl": float, "stall_timeout": float, "video_timeout": float, "shared_fs": bool}


def _coerce(key: str, value: Any, where: str) -> Any:
    if value is None:
        return None
    if key == "batch_size" and str(value).strip().lower() == "auto":
        return "auto"
    kind = _TYPES[key]
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
    if kind is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"{where}: {key} must be a mapping, got {value!r}")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
    if kind in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {key} must be {kind.__name__}, got {value!r}") from e


def read_config_file(uri: str, storage_options: dict | None = None) -> dict[str, Any]:
    """Read a YAML/JSON/TOML config file into checked ``RunConfig`` keys."""
    import fsspec

    try:
        with fsspec.open(uri, "rt", **(storage_options or {})) as f:
            text = f.read()
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {uri}") from e
    lower = uri.lower()
    try:
        if lower.endswith(".json"):
            data = json.loads(text)
        elif lower.endswith(".toml"):
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:
        raise ConfigError(f"{uri}: cannot parse config file ({e})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{uri}: a config file must hold a mapping of option: value")
    values = check_keys(data, where=uri)
    secrets = sorted(k for k in values.get("storage_options") or {} if k.lower() in SECRET_KEYS)
    if secrets:
        raise ConfigError(f"{uri}: credentials in a config file ({', '.join(secrets)})",
                          "config files get shared; use the AWS environment variables, a profile or an instance role")
    return values


def check_keys(data: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        if key not in _FIELDS:
            import difflib

            close = difflib.get_close_matches(key, list(_FIELDS), n=1)
            hint = f"did you mean {close[0].replace('_', '-')}?" if close else "see `tased-batch run --help`"
            raise ConfigError(f"{where}: unknown option {raw_key!r}", hint)
        out[key] = _coerce(key, value, where)
    return out


def build_config(file: str | None, flags: dict[str, Any]) -> RunConfig:
    """Defaults <- config file <- flags that were given (not None); then validated."""
    values: dict[str, Any] = {}
    if file:
        values.update(read_config_file(file))
    given = {k: v for k, v in flags.items() if v is not None}
    if "storage_options" in given and "storage_options" in values:
        given["storage_options"] = {**values["storage_options"], **given["storage_options"]}
    values.update(check_keys(given, where="command line"))
    return RunConfig(**values).validate()
