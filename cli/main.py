"""Entry point of the ``tased-batch`` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from tased_batch.cli import bench, demo, evaluate, jobs, predict, render, results, run, verify, weights

app = typer.Typer(
    name="tased-batch",
    help="Video saliency (TASED-Net) for whole video archives.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (demo, run, jobs, predict, results, evaluate, render, weights, bench, verify):
    module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
