"""What the command modules share: the error console, user-error handling and common options."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from tased_batch.core.errors import StorageError, TasedError

err = Console(stderr=True, soft_wrap=True)


EXIT_USER_ERROR = 2  # bad options, config, input or storage settings: nothing ran


def fail(message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
    """One red ``error:`` line on stderr (the message as plain text, never markup), then exit."""
    err.print(Text.assemble(("error:", "red"), " ", message))
    raise typer.Exit(code)


@contextmanager
def user_errors(code: int = EXIT_USER_ERROR) -> Iterator[None]:
    """Every command's user-error handling: a TasedError (bad option, missing file, unreadable store) or a
    storage problem (credentials, endpoint, bucket, access, region) becomes one red line and exit ``code``."""
    from tased_batch.core.storage_errors import classify

    try:
        yield
    except TasedError as e:
        problem = classify(e) if not isinstance(e, StorageError) else None
        fail(str(problem or e), e.exit_code or code)
    except Exception as e:
        problem = classify(e)
        if problem is None:
            raise
        fail(str(problem), code)


def check_storage(*uris: str | None, options: dict | None = None) -> None:
    """A command's first contact with object storage: problems reported in seconds, as one line."""
    from tased_batch.core.storage_errors import check_storage as probe

    with user_errors():
        probe(uris, options)


def storage_options(pairs: list[str] | None) -> dict | None:
    """``--storage-option key=value`` pairs as fsspec options."""
    if not pairs:
        return None
    from tased_batch.decode.sources import parse_storage_options

    with user_errors():
        return parse_storage_options(pairs)


StorageOpt = Annotated[
    list[str] | None, typer.Option("--storage-option", "-s", help="fsspec option key=value (repeatable).")
]


def model_size(text: str) -> tuple[int, int]:
    """``--size`` as (H, W), or a usage error naming the option (the `run` schema's check)."""
    return _schema_value("size", text)


def batch_size(text: str) -> int | str:
    """``--batch-size``: a positive integer or ``auto`` (the `run` schema's check)."""
    return _schema_value("batch_size", text)


def _schema_value(name: str, text: str) -> Any:
    from tased_batch.core.errors import ConfigError
    from tased_batch.options import OPTIONS

    option = OPTIONS[name]
    try:
        return option.parse(text, where=option.flag)
    except ConfigError as e:
        raise typer.BadParameter(e.message, param_hint=option.flag) from e
