"""What the command modules share: the error console, user-error handling and common options."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Optional

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
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(code) from e


def storage_options(pairs: list[str] | None) -> dict | None:
    """``--storage-option key=value`` pairs as fsspec options."""
    if not pairs:
        return None
    from tased_batch.sources import parse_storage_options

    return parse_storage_options(pairs)


StorageOpt = Annotated[Optional[list[str]], typer.Option("--storage-option", "-s", help="fsspec option key=value (repeatable).")]


def model_size(text: str) -> tuple[int, int]:
    """``--size`` as (H, W), or a usage error naming the option (the `run` schema's check)."""
    return _schema_value("size", text)


def batch_size(text: str) -> int | str:
    """``--batch-size``: a positive integer or ``auto`` (the `run` schema's check)."""
    return _schema_value("batch_size", text)


def _schema_value(name: str, text: str) -> Any:
    from tased_batch.errors import ConfigError
    from tased_batch.options import OPTIONS

    option = OPTIONS[name]
    try:
        return option.parse(text, where=option.flag)
    except ConfigError as e:
        raise typer.BadParameter(e.message, param_hint=option.flag) from e
