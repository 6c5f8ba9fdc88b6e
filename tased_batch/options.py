"""The one schema of `run`'s options: each option declared once, in the group of the layer that uses it.

An option is a field of its group's dataclass: the field gives its name, type and default;
its :class:`Spec` gives help, choices, checks, extra command-line spellings, whether it
enters the config fingerprint, whether `resume` may change it, whether the Ray Data plugin
takes it and whether each shard records it. Everything else is derived from :data:`OPTIONS`:
the flags of `run` and `resume` (``cli/run.py``), config files and the stored config
(``config.py``), the fingerprint and its differences, the plugin's options
(``ray_data.py``) and the per-shard run info. Rules that tie options together live in
:data:`RULES`, checked wherever the options meet.

Light on purpose: no torch, Ray, engine, decoder or store imports, so that commands such as
`status` start fast. The choice tuples are plain constants here for the same reason.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal

from tased_batch.core.errors import ConfigError, TasedError
from tased_batch.core.sizes import format_size, parse_size, parse_store_size
from tased_batch.decode.options import MAX_FRAME_PIXELS, DecodeOptions
from tased_batch.engine.windows import FIRST_WINDOWS, REUSE_MODES

FORMATS = ("parquet", "zarr", "png", "webdataset", "webdataset-copy", "lance")
DECODERS = ("auto", "decord", "pyav", "torchcodec")
RESIZES = ("decoder", "exact")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
LOG_MODES = ("rich", "jsonl", "quiet")
AUTO = "auto"

Auto = Literal["auto"]


@dataclass(frozen=True)
class Switch:
    """An extra flag that sets its option to a fixed value (``--quiet`` -> ``log: quiet``)."""

    flags: tuple[str, ...]
    value: Any
    help: str


@dataclass(frozen=True)
class Spec:
    """Everything about an option besides its name, type and default (which its field holds).

    Types: str, int, float, bool, a mapping, or an ``HxW`` size; ``| None`` makes "not set" a
    value, ``| Auto`` makes "auto" one. Numbers are positive (integers at least 1).
    """

    help: str
    flag: str | None = None  # the command-line flag when it is not --name-with-dashes
    short: str | None = None  # one-letter flag besides the long one, e.g. "-w"
    choices: tuple[str, ...] | None = None
    parse: Callable[[Any], Any] | None = None  # text -> value (e.g. "224x384" -> (224, 384)); raises on bad text
    dump: Callable[[Any], Any] | None = None  # value -> its JSON/config-file form
    check: Callable[[Any], None] | None = None  # further check of a parsed value; raises ValueError
    fingerprint: bool | Literal["if set"] = False  # "if set": only when not None (keeps older runs' fingerprints)
    fingerprint_as: str | None = None  # the fingerprint's key, when it is not the option itself
    resume: bool = False  # `resume` may change it
    predictor: bool = False  # the Ray Data plugin takes it
    run_info: bool = False  # recorded with every shard
    argument: bool = False  # a positional argument of `run`
    switches: tuple[Switch, ...] = ()
    metavar: str | None = None
    example: Any = None  # a valid value other than the default, for tests and docs (derived when None)
    minimum: int = 1  # the least value of an integer option


def option(default: Any, help: str, **spec: Any) -> Any:
    """Declare an option as a dataclass field (see :class:`Spec` for ``spec``)."""
    metadata = {"spec": Spec(help=help, **spec)}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _check_crop(value: str) -> None:
    match = re.fullmatch(r"(\d+):(\d+)", value)
    if not match or not all(int(v) > 0 for v in match.groups()):
        raise ValueError(f"crop must be an aspect ratio W:H such as 9:16, got {value!r}")


@dataclass
class IoOptions:
    """Where the videos come from and where the results go (the planner's)."""

    input: str = option(
        "",
        "Videos: file, folder, glob, s3:// prefix, manifest (.txt/.csv/.tsv/.jsonl/.parquet), tar shards or a Lance table.",
        argument=True,
        fingerprint=True,
        example="s3://bucket/videos/",
    )
    output: str = option("", "Results URI (local path or s3://...).", argument=True, example="s3://bucket/maps")
    url_col: str = option("url", "Manifest (or Lance table) column with video URIs.", fingerprint=True)
    bytes_col: str | None = option(
        None, "Lance table input: column holding each clip's video bytes (instead of --url-col).", fingerprint="if set"
    )
    id_col: str | None = option(
        None, "Manifest column with video ids (default: the file name's stem).", fingerprint=True
    )


@dataclass
class ModelOptions:
    """What the engine computes with: the network, its input size and numerics."""

    weights: str = option(
        "released",
        "Checkpoint path/URI; 'released' = the cached released file; 'random' = labelled stand-in.",
        short="-w",
        fingerprint=True,
        fingerprint_as="weights_sha256",
        predictor=True,
        example="random",
    )
    size: tuple[int, int] = option(
        (224, 384),
        "Model input HxW, multiples of 32.",
        parse=parse_size,
        dump=format_size,
        fingerprint=True,
        predictor=True,
        run_info=True,
        metavar="HxW",
        example=(64, 96),
    )
    precision: str = option(
        "fp32",
        "Model numerics (bf16/fp16: autocast; tf32: fp32 with TensorFloat-32 matmuls).",
        choices=PRECISIONS,
        fingerprint=True,
        predictor=True,
        run_info=True,
    )
    first_windows: str = option(
        "reversed",
        "Windows of the first 31 frames: reversed (time-reversed) | released (run_example.py's code to the letter).",
        choices=FIRST_WINDOWS,
        fingerprint=True,
        predictor=True,
        run_info=True,
    )
    reuse: str = option(
        AUTO,
        "Window reuse: auto (overlapping windows share their first stages' work, exactly; dense targets, "
        "fast arithmetic) | off (every window computed whole).",
        choices=REUSE_MODES,
        resume=True,
        predictor=True,
        run_info=True,
    )
    batch_size: int | Auto = option(
        AUTO, "Windows per forward pass, or auto (from free device memory).", short="-b", resume=True, predictor=True
    )


@dataclass
class SamplingOptions:
    """Which frames are decoded and which get maps (the decoder's)."""

    decoder: str = option(
        "auto",
        "Video decoder (auto: decord, PyAV fallback).",
        choices=DECODERS,
        fingerprint=True,
        predictor=True,
        run_info=True,
    )
    resize: str = option(
        "decoder",
        "decoder (fast) | exact (OpenCV, as the released script).",
        choices=RESIZES,
        fingerprint=True,
        predictor=True,
        run_info=True,
    )
    fps: float | None = option(
        None,
        "Resample videos to this frame rate before windowing (default: their own).",
        fingerprint=True,
        predictor=True,
        run_info=True,
    )
    every: int | None = option(None, "Maps only for every N-th frame.", fingerprint=True, predictor=True, run_info=True)
    output_fps: float | None = option(
        None, "Maps only at this rate (maps per second).", fingerprint=True, predictor=True, run_info=True
    )
    max_frame_pixels: int = option(
        MAX_FRAME_PIXELS,
        "Largest source frame (width x height, pixels) decoded; larger videos are failed with reason "
        "too-large instead of taking gigabytes per decode.",
        resume=True,
        predictor=True,
    )
    decode_workers: int | Auto = option(
        AUTO,
        "Decode worker processes per model actor (videos and segments of "
        "long videos decoded at once); 0 decodes in a thread of the actor; auto: the "
        "actor's CPUs less one on a GPU, 0 on CPUs.",
        resume=True,
        minimum=0,
    )
    video_timeout: float | None = option(
        None,
        "Seconds a video may decode, and its actor go without progress, before it is recorded as a timeout "
        "(default: derived from its length and size).",
        resume=True,
        predictor=True,
    )

    def decode_options(self) -> DecodeOptions:
        """The decoder's options: every field of DecodeOptions that is a sampling option, from here."""
        from dataclasses import fields as dataclass_fields

        names = [f.name for f in dataclass_fields(DecodeOptions) if f.name in {g.name for g in fields(self)}]
        return DecodeOptions(**{n: getattr(self, n) for n in names})


@dataclass
class StoreOptions:
    """How and where maps are stored (the stores')."""

    format: str = option(
        "parquet",
        "Store format (webdataset: tars aligned with the input tars; webdataset-copy: copies of them with the maps "
        "added; lance: OUTPUT/maps.lance and videos.lance).",
        choices=FORMATS,
        fingerprint=True,
    )
    store_size: tuple[int, int] | None = option(
        None,
        "Stored map HxW, at most the model size (default: model size / 6, 38x64).",
        parse=parse_store_size,
        dump=format_size,
        fingerprint=True,
        predictor=True,
        metavar="HxW",
        example=(16, 32),
    )
    storage_options: dict[str, Any] = option(
        {},
        "fsspec option key=value (repeatable); no credentials in config files.",
        flag="--storage-option",
        short="-s",
        resume=True,
        predictor=True,
        metavar="KEY=VALUE",
        example={"anon": True},
    )
    crop: str | None = option(
        None,
        "Also store a crop track of this aspect ratio W:H (e.g. 9:16): per map, the "
        "window holding the most saliency (docs/summaries.md).",
        check=_check_crop,
        fingerprint="if set",
        run_info=True,
        metavar="W:H",
        example="9:16",
    )


@dataclass
class ExecutionOptions:
    """How the run is scheduled and reported (the executor's); none of it changes the maps."""

    address: str | None = option(None, "Ray cluster to join (default: start a local Ray).", resume=True)
    actors: int | None = option(
        None, "Number of model actors (default one per GPU; CPUs / 2 without GPUs).", resume=True
    )
    gpus_per_actor: float = option(1.0, "GPUs per actor, may be fractional.", resume=True)
    cpus_per_actor: float | None = option(None, "CPUs per actor.", resume=True)
    shard_size: int = option(16, "Videos per shard.", fingerprint=True)
    max_attempts: int = option(3, "Attempts per shard before it is left pending.", resume=True)
    lease_ttl: float = option(
        60.0, "Seconds without a heartbeat after which another driver may take OUTPUT over.", resume=True
    )
    stall_timeout: float = option(
        1800.0, "Stop with exit 4 when no progress is made for this many seconds.", resume=True
    )
    shared_fs: bool = option(
        False, "Local INPUT/OUTPUT paths are on a file system every node of the cluster shares.", resume=True
    )
    retry_failed: bool = option(False, "Redo shards that recorded failed videos.", resume=True)
    overwrite: bool = option(False, "Start over when OUTPUT holds a run with another config.")
    dry_run: bool = option(False, "Check sources, weights, output and options; print the plan.", resume=True)
    log: str = option(
        "rich",
        "Progress display.",
        choices=LOG_MODES,
        resume=True,
        switches=(
            Switch(("--quiet", "-q"), "quiet", "No progress display (--log quiet)."),
            Switch(("--log-json",), "jsonl", "JSON lines on stdout instead of the progress display (--log jsonl)."),
        ),
    )


GROUPS: dict[str, type] = {
    "io": IoOptions,
    "model": ModelOptions,
    "sampling": SamplingOptions,
    "store": StoreOptions,
    "execution": ExecutionOptions,
}
PREDICTOR_GROUPS = ("model", "sampling", "store")  # the groups the Ray Data plugin is built from


@dataclass(frozen=True)
class Option:
    """One option as the rest of the code sees it: its field and :class:`Spec` put together."""

    name: str
    group: str
    kind: type  # str, int, float, bool, dict or tuple
    nullable: bool  # None is a value (meaning "not set")
    auto: bool  # "auto" is a value
    spec: Spec
    _default: Any

    @property
    def default(self) -> Any:
        return dict(self._default) if isinstance(self._default, dict) else self._default

    @property
    def flag(self) -> str:
        return self.spec.flag or "--" + self.name.replace("_", "-")

    @property
    def help(self) -> str:
        return self.spec.help

    @property
    def fingerprint_key(self) -> str | None:
        return (self.spec.fingerprint_as or self.name) if self.spec.fingerprint else None

    def parse(self, value: Any, where: str) -> Any:
        """A value from a flag, a config file or a stored config, checked and in its typed form."""
        name = self.name
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(
                f"{where}: {name} needs a value", f"leave it out for its default, {self.dump(self.default)!r}"
            )
        if self.auto and isinstance(value, str) and value.strip().lower() == AUTO:
            return AUTO
        kind = self.kind
        expected = kind.__name__ + (" or 'auto'" if self.auto else "")
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {name} must be true or false, got {value!r}")
        elif kind is dict:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {name} must be a mapping of key: value, got {value!r}")
            value = dict(value)
        elif kind in (int, float):
            if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
                raise ConfigError(f"{where}: {name} must be {expected}, got {value!r}")
            try:
                value = kind(value)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{where}: {name} must be {expected}, got {value!r}") from e
            if kind is int and value < self.spec.minimum:
                raise ConfigError(f"{name} must be at least {self.spec.minimum}, got {value}")
            if kind is float and not value > 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        elif kind is tuple:
            if isinstance(value, (tuple, list)):
                value = "x".join(str(v) for v in value)
            value = self._parse_text(value, where)
        else:
            value = self._parse_text(value, where) if self.spec.parse else str(value)
        if self.spec.choices is not None and value not in self.spec.choices:
            raise ConfigError(f"{name}: {value!r} is not one of {', '.join(self.spec.choices)}")
        if self.spec.check is not None:
            try:
                self.spec.check(value)
            except ValueError as e:
                raise ConfigError(f"{where}: {e}") from e
        return value

    def _parse_text(self, value: Any, where: str) -> Any:
        assert self.spec.parse is not None
        try:
            return self.spec.parse(str(value))
        except (ValueError, TasedError) as e:
            raise ConfigError(f"{self.name}: {e}") from e

    def dump(self, value: Any) -> Any:
        """The value as config files and the stored config write it."""
        if value is None or value == AUTO or self.spec.dump is None:
            return dict(value) if isinstance(value, dict) else value
        return self.spec.dump(value)


def _option_type(hint: Any) -> tuple[type, bool, bool]:
    """(kind, nullable, auto) of a field's annotation, e.g. ``int | Auto`` -> (int, False, True)."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    nullable = type(None) in args
    auto = Auto in args
    kinds = [a for a in args if a is not type(None) and a is not Auto]
    if len(kinds) != 1:
        raise TypeError(f"an option has one type (optionally | None or | Auto), got {hint}")
    kind = typing.get_origin(kinds[0]) or kinds[0]
    if kind not in (str, int, float, bool, dict, tuple):
        raise TypeError(f"unsupported option type {hint}")
    return kind, nullable, auto


def _collect() -> dict[str, Option]:
    options: dict[str, Option] = {}
    for group, cls in GROUPS.items():
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            if f.name in options or f.name in GROUPS:
                raise TypeError(f"option {f.name} is declared twice or shadows a group")
            kind, nullable, auto = _option_type(hints[f.name])
            if f.metadata["spec"].predictor and group not in PREDICTOR_GROUPS:
                raise TypeError(
                    f"option {f.name}: the Ray Data plugin only has the {', '.join(PREDICTOR_GROUPS)} groups"
                )
            default = f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default
            options[f.name] = Option(f.name, group, kind, nullable, auto, f.metadata["spec"], default)
    return options


OPTIONS: dict[str, Option] = _collect()
FINGERPRINT_KEYS: tuple[str, ...] = tuple(o.fingerprint_key for o in OPTIONS.values() if o.fingerprint_key)
RESUME_KEYS: tuple[str, ...] = tuple(name for name, o in OPTIONS.items() if o.spec.resume)
PREDICTOR_KEYS: tuple[str, ...] = tuple(name for name, o in OPTIONS.items() if o.spec.predictor)


def _every_or_output_fps(values: Mapping[str, Any]) -> None:
    if values["every"] is not None and values["output_fps"] is not None:
        raise ConfigError("every and output_fps both choose output frames", "give only one of them")


def _store_within_model(values: Mapping[str, Any]) -> None:
    store, model = values["store_size"], values["size"]
    if store is not None and (store[0] > model[0] or store[1] > model[1]):
        raise ConfigError(
            f"store_size {format_size(store)} is larger than the model size {format_size(model)}",
            "maps are computed at the model size; store them at that size or smaller",
        )


# Rules over several options: (the options each reads, the check). Checked wherever all of them meet.
RULES: tuple[tuple[tuple[str, ...], Callable[[Mapping[str, Any]], None]], ...] = (
    (("every", "output_fps"), _every_or_output_fps),
    (("store_size", "size"), _store_within_model),
)


def check_rules(values: Mapping[str, Any]) -> None:
    """Apply every rule whose options are all in ``values`` (parsed values)."""
    for names, rule in RULES:
        if all(n in values for n in names):
            rule(values)


def normalize_key(raw: Any, where: str) -> str:
    """``store-size`` or ``store_size`` -> ``store_size``; an unknown key is refused with a did-you-mean."""
    key = str(raw).replace("-", "_")
    if key not in OPTIONS:
        close = difflib.get_close_matches(key, list(OPTIONS), n=1)
        hint = f"did you mean {close[0].replace('_', '-')}?" if close else "see `tased-batch run --help`"
        raise ConfigError(f"{where}: unknown option {raw!r}", hint)
    return key


def parse_options(data: Mapping[Any, Any], where: str) -> dict[str, Any]:
    """Check keys and values (from flags, a config file, a stored config or plugin arguments)."""
    out: dict[str, Any] = {}
    for raw, value in data.items():
        key = normalize_key(raw, where)
        out[key] = OPTIONS[key].parse(value, where)
    return out


def defaults(names: Iterable[str] | None = None) -> dict[str, Any]:
    return {n: OPTIONS[n].default for n in (OPTIONS if names is None else names)}


def group_values(group: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {n: values[n] for n, o in OPTIONS.items() if o.group == group and n in values}


def dump_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Typed values -> the JSON form (sizes as ``HxW``), in schema order."""
    return {n: OPTIONS[n].dump(values[n]) for n in OPTIONS if n in values}


def fingerprint_fields(values: Mapping[str, Any], weights_sha256: str) -> dict[str, Any]:
    """The fingerprinted values (JSON form); the weights enter by their SHA-256, not their path."""
    out: dict[str, Any] = {}
    for name, o in OPTIONS.items():
        key = o.fingerprint_key
        if key is None:
            continue
        if o.spec.fingerprint == "if set" and values[name] is None:
            continue
        out[key] = weights_sha256 if o.spec.fingerprint_as == "weights_sha256" else o.dump(values[name])
    return out


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable list of fingerprinted keys that differ: ``"size: '224x384' -> '112x192'"``."""
    keys = [k for k in FINGERPRINT_KEYS if old.get(k) != new.get(k)]
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys]


def run_info_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """The options every shard records about the run that made it (JSON form)."""
    return {n: o.dump(values[n]) for n, o in OPTIONS.items() if o.spec.run_info}


def predictor_options(
    options: Mapping[str, Any], where: str = "SaliencyPredictor"
) -> tuple[ModelOptions, SamplingOptions, StoreOptions]:
    """The Ray Data plugin's options, checked with the same schema and rules as `run`."""
    given = parse_options(options, where)
    extra = [k for k in given if k not in PREDICTOR_KEYS]
    if extra:
        raise ConfigError(
            f"{where}: {', '.join(extra)} only apply to `tased-batch run`",
            f"the predictor takes {', '.join(PREDICTOR_KEYS)}",
        )
    values = {**defaults(PREDICTOR_KEYS), **given}
    check_rules(values)
    full = {**defaults(), **values}
    model, sampling, store = (GROUPS[g](**group_values(g, full)) for g in PREDICTOR_GROUPS)
    return model, sampling, store
