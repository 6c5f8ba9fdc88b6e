"""`tased-batch report OUTPUT [--out report.html]`: the run's self-contained HTML report page."""

from __future__ import annotations

import typer

from tased_batch.cli.common import StorageOpt, check_storage, err, storage_options, user_errors


def report(
    output: str = typer.Argument(..., help="Output URI of a run (finished, interrupted or resumed)."),
    out: str = typer.Option(None, "--out", help="Where the page goes (default: OUTPUT/reports/report.html)."),
    storage_option: StorageOpt = None,
) -> None:
    """One HTML page (works offline): progress, where the time went, failures, saliency summaries, a gallery."""
    from tased_batch.analysis.report import write_report

    options = storage_options(storage_option)
    check_storage(output, out, options=options)
    with user_errors():
        where = write_report(output, options, out)
    err.print(f"report: {where}")


def write_after_run(output: str, options: dict | None) -> None:
    """The page at the end of every run; a page that cannot be made is a warning, never the run's failure."""
    from tased_batch.analysis.report import write_report
    from tased_batch.core.errors import TasedError
    from tased_batch.core.secrets import plain, scrub_text

    try:
        where = write_report(output, options)
    except TasedError as exc:
        err.print(plain(f"warning: no report page: {scrub_text(str(exc))}"))
    except Exception as exc:  # noqa: BLE001 - the maps are committed; the page is only a view of them
        err.print(plain(f"warning: no report page ({type(exc).__name__}: {scrub_text(str(exc))})"))
    else:
        err.print(plain(f"report page: {where}"))


def register(app: typer.Typer) -> None:
    app.command("report")(report)
