"""`tased-batch verify OUTPUT [--repair]`: committed files checked against their records."""

from __future__ import annotations

import json

import typer

from tased_batch.cli.common import StorageOpt, check_storage, err, fail, storage_options, user_errors
from tased_batch.core.secrets import plain


def verify(
    output: str = typer.Argument(..., help="Output URI of a run."),
    repair: bool = typer.Option(
        False, "--repair", help="Move damaged shards back to pending, so that `tased-batch resume OUTPUT` redoes them."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    storage_option: StorageOpt = None,
) -> None:
    """Re-read every committed file and check it against its commit record (size, sha256).

    Exit 0: nothing damaged (or, with --repair, the damaged shards are pending again);
    2: damaged shards found (listed; rerun with --repair).
    """
    from tased_batch.run.verify import verify_output

    options = storage_options(storage_option)
    check_storage(output, options=options)
    with user_errors():
        report = verify_output(output, options, repair=repair)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for shard in sorted(report.damaged):
            err.print(plain(f"damaged: {report.damaged[shard]}"), highlight=False)
        if not report.damaged:
            err.print(plain(f"{output}: {report.shards_checked} committed shard(s), every file matches its record"))
    if report.damaged and not repair:
        fail(
            f"{len(report.damaged)} of {report.shards_checked} committed shard(s) of {output} are damaged; "
            f"run `tased-batch verify {output} --repair`, then `tased-batch resume {output}`"
        )
    if report.repaired:
        err.print(
            plain(
                f"{len(report.repaired)} shard(s) moved back to pending ({', '.join(report.repaired)}); "
                f"run `tased-batch resume {output}` to redo them"
            )
        )


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
