"""`tased-batch submit` and `tased-batch jobs status|logs|stop`: runs on a remote Ray cluster."""

from __future__ import annotations

import json
import os

import typer

from tased_batch.cli.common import err, user_errors
from tased_batch.core.secrets import plain

jobs_app = typer.Typer(help="Follow jobs submitted to a Ray cluster.", no_args_is_help=True)

ADDRESS_HELP = "Ray job API, e.g. http://HEAD:8265 (default: $RAY_ADDRESS)."


def _address(address: str | None) -> str:
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise typer.BadParameter("give --address http://HEAD:8265 or set RAY_ADDRESS", param_hint="--address")
    return address


def submit(
    ctx: typer.Context,
    address: str = typer.Option(None, "--address", help=ADDRESS_HELP),
    pip: list[str] = typer.Option(None, "--pip", help="pip requirement to install for the job (repeatable)."),
    runtime_env: str = typer.Option(None, "--runtime-env", help="Extra Ray runtime env: a JSON object or a JSON file."),
    submission_id: str = typer.Option(None, "--submission-id", help="Job id to use (default: Ray's)."),
) -> None:
    """Submit `tased-batch run ...` (or `resume ...`) as a Ray job: tased-batch submit --address URL -- run IN OUT ..."""
    from tased_batch.run.submit import submit as submit_job

    with user_errors():
        job_id = submit_job(
            _address(address),
            list(ctx.args),
            pip=pip,
            extra_env=runtime_env,
            submission_id=submission_id,
            note=lambda message: err.print(plain(message)),
        )
    typer.echo(job_id)


@jobs_app.command("status")
def status(job_id: str, address: str = typer.Option(None, "--address", help=ADDRESS_HELP)) -> None:
    """Print the job's state (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED) as JSON."""
    from tased_batch.run.submit import job_status

    with user_errors():
        typer.echo(json.dumps(job_status(_address(address), job_id), indent=2))


@jobs_app.command("logs")
def logs(job_id: str, address: str = typer.Option(None, "--address", help=ADDRESS_HELP)) -> None:
    """Print the job's driver log."""
    from tased_batch.run.submit import job_logs

    with user_errors():
        typer.echo(job_logs(_address(address), job_id), nl=False)


@jobs_app.command("stop")
def stop(job_id: str, address: str = typer.Option(None, "--address", help=ADDRESS_HELP)) -> None:
    """Ask Ray to stop the job; committed shards stay, `resume` continues it."""
    from tased_batch.run.submit import job_stop

    with user_errors():
        typer.echo("stopping" if job_stop(_address(address), job_id) else "already finished")


def register(app: typer.Typer) -> None:
    app.command("submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(submit)
    app.add_typer(jobs_app, name="jobs")
