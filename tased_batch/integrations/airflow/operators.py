"""``TasedBatchRunOperator``: one `tased-batch run` as an Airflow task, on a Ray cluster or in the worker.

The task's XCom is the run's status (:class:`~tased_batch.integrations.common.RunStatus`). A retried
or re-triggered task runs the same OUTPUT again, which resumes it (only pending shards run), and a job
of the same run that is still going on the cluster is followed rather than started a second time.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from tased_batch.core.errors import TasedError
from tased_batch.core.secrets import scrub_text
from tased_batch.integrations.common import (
    RunStatus,
    check_options,
    exit_code_of,
    last_reason,
    local_command,
    outcome,
    run_args,
)


class TasedBatchRunOperator(BaseOperator):
    """Run (or resume) the saliency run of ``input`` into ``output``.

    ``options`` are `run`'s options by name (``{"size": "64x96", "weights": "random"}``), checked
    by the same schema; ``config`` a config file the cluster can read. ``ray_conn_id=None`` runs the
    job in the worker itself (a local Ray). ``deferrable=True`` frees the worker slot while the job
    runs. Exit 3 (some videos failed) succeeds unless more than ``max_failed_fraction`` of the videos
    failed; exits 2 and 4 fail the task with the run's one-line reason.
    """

    template_fields: Sequence[str] = ("input_uri", "output_uri", "options", "config")
    template_fields_renderers = {"options": "json"}
    ui_color = "#f4c542"

    def __init__(
        self,
        *,
        output: str,
        input: str | None = None,
        options: dict[str, Any] | None = None,
        config: str | None = None,
        ray_conn_id: str | None = "tased_batch_ray_default",
        deferrable: bool = False,
        max_failed_fraction: float = 1.0,
        poll_interval: float = 2.0,
        pip: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= max_failed_fraction <= 1.0:
            raise ValueError(f"max_failed_fraction must be within 0..1, got {max_failed_fraction}")
        if deferrable and ray_conn_id is None:
            raise ValueError("deferrable=True needs a Ray cluster (ray_conn_id): a local job runs in the worker")
        if options and "{{" not in repr(options):
            _checked(options)  # fail at DAG parse time, not hours later
        self.input_uri, self.output_uri = input, output  # BaseOperator.output is its XComArg
        self.options, self.config = options or {}, config
        self.ray_conn_id = ray_conn_id
        self.deferrable = deferrable
        self.max_failed_fraction = max_failed_fraction
        self.poll_interval = poll_interval
        self.pip = pip
        self._job_id: str | None = None
        self._process: subprocess.Popen[str] | None = None

    def _args(self) -> list[str]:
        try:
            return run_args(self.input_uri, self.output_uri, self.options, self.config)
        except TasedError as e:
            raise AirflowException(scrub_text(str(e))) from e

    def _hook(self) -> Any:
        from tased_batch.integrations.airflow.hooks import TasedBatchRayHook

        assert self.ray_conn_id is not None
        return TasedBatchRayHook(self.ray_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        args = self._args()
        if self.ray_conn_id is None:
            return self._run_locally(args)
        from tased_batch.run.submit import entrypoint, runtime_env

        command = entrypoint(args, note=self.log.info)
        hook = self._hook()
        job_id = hook.live_job(command)
        if job_id:
            self.log.info("following job %s of this run, still going on the cluster", job_id)
        else:
            job_id = hook.submit(command, runtime_env(self.pip))
            self.log.info("submitted job %s", job_id)
        self._job_id = job_id
        if self.deferrable:
            from tased_batch.integrations.airflow.triggers import TasedBatchJobTrigger

            self.defer(
                trigger=TasedBatchJobTrigger(job_id, self.ray_conn_id, self.poll_interval),
                method_name="execute_complete",
            )
        state, message = hook.wait(job_id, self.poll_interval, self.log.info)
        return self._finish(exit_code_of(state, message), lambda: hook.logs(job_id))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        """Back from the trigger: the job has ended."""
        self._job_id = event["job_id"]
        hook = self._hook()
        return self._finish(exit_code_of(event["state"], event["message"]), lambda: hook.logs(event["job_id"]))

    def _run_locally(self, args: list[str]) -> dict[str, Any]:
        lines: list[str] = []
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            [*local_command(), *args, "--log-json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,  # on_kill stops the run and the Ray it started
        )
        assert self._process.stdout is not None
        for line in self._process.stdout:
            lines.append(line)
            self.log.info("%s", scrub_text(line.rstrip()))
        code = self._process.wait()
        return self._finish(code, lambda: "".join(lines))

    def _finish(self, exit_code: int, logs: Any) -> dict[str, Any]:
        try:
            status: RunStatus | None = RunStatus.of(self.output_uri, self.options.get("storage_options"))
        except TasedError:
            status = None  # nothing was planned (bad options, unreachable store)
        reason = "" if exit_code in (0, 3) else last_reason(logs())
        result = outcome(exit_code, status, self.max_failed_fraction, reason)
        if not result.ok:
            raise AirflowException(result.reason)
        self.log.info("tased-batch: %s", scrub_text(result.reason))
        assert status is not None or exit_code == 0
        return status.to_dict() if status is not None else {"output": scrub_text(self.output_uri)}

    def on_kill(self) -> None:
        """Stop the job (committed shards stay; the next run of the task resumes)."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
        if self._job_id is not None and self.ray_conn_id is not None:
            self._hook().stop(self._job_id)
            self.log.info("asked Ray to stop job %s", self._job_id)


def _checked(options: dict[str, Any]) -> None:
    try:
        check_options(options, where="TasedBatchRunOperator options")
    except TasedError as e:
        raise ValueError(scrub_text(str(e))) from e
