"""Entry point of the ``tased-batch`` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from tased_batch.cli import (
    annotate,
    bench,
    demo,
    evaluate,
    jobs,
    predict,
    render,
    report,
    results,
    run,
    verify,
    weights,
)

app = typer.Typer(
    name="tased-batch",
    help="Video saliency (TASED-Net) for whole video archives.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (demo, run, jobs, predict, results, evaluate, render, report, weights, bench, annotate, verify):
    module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
