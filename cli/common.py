"""What the command modules share: the error console, user-error handling and common options."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Optional

import typer
from rich.console import Console

from tased_batch.errors import TasedError

err = Console(stderr=True, soft_wrap=True)


@contextmanager
def user_errors(code: int = 2) -> Iterator[None]:
    """Turn a TasedError (bad option, missing file, unreadable store) into one red line and an exit code."""
    try:
        yield
    except TasedError as e:
        from rich.text import Text

        err.print(Text.assemble(("error:", "red"), " ", str(e)))  # ids and paths are plain text, never markup
        raise typer.Exit(code) from e


def storage_options(pairs: list[str] | None) -> dict | None:
    """``--storage-option key=value`` pairs as fsspec options."""
    if not pairs:
        return None
    from tased_batch.sources import parse_storage_options

    return parse_storage_options(pairs)


def log_mode(quiet: bool, log_json: bool) -> str | None:
    return "jsonl" if log_json else ("quiet" if quiet else None)


StorageOpt = Annotated[Optional[list[str]], typer.Option("--storage-option", "-s", help="fsspec option key=value (repeatable).")]
AddressOpt = Annotated[Optional[str], typer.Option("--address", help="Ray cluster to join (default: start a local Ray).")]
ActorsOpt = Annotated[Optional[int], typer.Option("--actors", help="Number of model actors (default one per GPU; CPUs / 2 without GPUs).")]
GpusOpt = Annotated[Optional[float], typer.Option("--gpus-per-actor", help="GPUs per actor, may be fractional (default 1).")]
CpusOpt = Annotated[Optional[float], typer.Option("--cpus-per-actor", help="CPUs per actor.")]
BatchOpt = Annotated[Optional[str], typer.Option("--batch-size", "-b", help="Windows per forward pass, or auto (default: from free device memory).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
LogJsonOpt = Annotated[bool, typer.Option("--log-json", help="JSON lines on stdout instead of the progress display.")]


def model_size(text: str) -> tuple[int, int]:
    """``--size`` as (H, W), or a usage error naming the option."""
    from tased_batch.engine import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--size") from e


def batch_size(text: str) -> int | str:
    """``--batch-size``: a positive integer or ``auto``."""
    from tased_batch.engine import AUTO

    if text == AUTO:
        return AUTO
    if not (text.isdigit() and int(text) > 0):
        raise typer.BadParameter("a positive integer or 'auto'", param_hint="--batch-size")
    return int(text)
