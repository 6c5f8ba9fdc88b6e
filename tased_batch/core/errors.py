"""Typed errors that say what went wrong and what the user can do about it.

Bad input must never crash a batch: decoders and sources raise :class:`VideoError`,
and the job records it (video, reason code, message) instead of propagating it.
"""

from __future__ import annotations


class TasedError(Exception):
    """Base class: a message for the user plus an optional hint on what to do.

    ``exit_code``: the CLI's exit status for this error when it is not the command's usual one.
    """

    exit_code: int | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class WeightsError(TasedError):
    """A checkpoint cannot be found, read, or does not match TASED-Net."""


class ConfigError(TasedError):
    """An option or config-file value is invalid."""


class SourceError(TasedError):
    """The input collection itself cannot be listed (bad URI, unreadable manifest)."""


class StoreError(TasedError):
    """The output store cannot be written or read."""


class OutputFull(StoreError):
    """The output's storage is full (or over quota): storage unavailable, exit 4; rerun once freed."""

    exit_code = 4


class StateError(ConfigError):
    """A run-state file under OUTPUT (config.json, the plan, the lease) is damaged or not this tool's."""


class StorageError(TasedError):
    """Object storage cannot be used at all: no credentials, no endpoint, no bucket, access denied, wrong region."""


class VideoError(TasedError):
    """One video cannot be read or decoded.

    ``reason`` is a short stable code (e.g. ``empty-file``, ``not-video``, ``truncated``,
    ``no-video-stream``, ``unsupported-codec``, ``missing``, ``permission``,
    ``corrupt-frame``, ``decode-error``) that status reports group failures by;
    ``transient`` marks errors worth retrying (network hiccups).
    Decoding adds ``no-frames`` (a video stream without frames), ``bad-shard`` (a tar
    shard that cannot be listed), ``too-large`` (a tar member over the spool budget),
    ``io-error`` (storage/network failure, transient) and ``missing-dependency``.
    """

    def __init__(
        self,
        source: str,
        reason: str,
        message: str,
        hint: str | None = None,
        *,
        transient: bool = False,
    ) -> None:
        super().__init__(f"{source}: {message}", hint)
        self.source = source
        self.reason = reason
        self.transient = transient
