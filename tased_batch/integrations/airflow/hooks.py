"""A hook over Ray's job submission API, configured by an Airflow connection of type ``tased_batch_ray``.

The connection holds the dashboard address (host, port, ``https`` schema or ``"tls": true`` for TLS),
the auth token (its password, sent as ``Authorization: Bearer``) or headers (extra ``"headers"``),
and ``"verify"`` (false, or a CA bundle path). Airflow masks the password in its logs and UI; the
hook never puts it in a job's entrypoint, which anyone who can list the cluster's jobs reads.
"""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk import BaseHook

from tased_batch.core.secrets import scrub_text
from tased_batch.integrations.common import ENDED


class TasedBatchRayHook(BaseHook):
    """Submit, follow and stop `tased-batch` jobs on a Ray cluster."""

    conn_name_attr = "ray_conn_id"
    default_conn_name = "tased_batch_ray_default"
    conn_type = "tased_batch_ray"
    hook_name = "tased-batch (Ray job API)"
    AGENT_WAIT = 120.0  # seconds to wait for a new cluster's job agent

    def __init__(self, ray_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ray_conn_id = ray_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "login"],
            "relabeling": {"host": "Ray dashboard host or URL", "password": "Auth token"},
            "placeholders": {"port": "8265", "extra": '{"tls": true, "verify": "/etc/ssl/ca.pem", "headers": {}}'},
        }

    def settings(self) -> tuple[str, dict[str, str], bool | str]:
        """The dashboard address, the request headers and the TLS verification setting."""
        conn = self.get_connection(self.ray_conn_id)
        extra = conn.extra_dejson
        host = conn.host or "127.0.0.1"
        if "://" not in host:
            scheme = "https" if (conn.schema == "https" or extra.get("tls")) else "http"
            host = f"{scheme}://{host}"
        address = f"{host}:{conn.port}" if conn.port else host
        headers = {str(k): str(v) for k, v in (extra.get("headers") or {}).items()}
        if conn.password:
            headers.setdefault("Authorization", f"Bearer {conn.password}")
        return address, headers, extra.get("verify", True)

    def get_conn(self) -> Any:
        """A JobSubmissionClient for the connection's cluster."""
        from ray.job_submission import JobSubmissionClient

        address, headers, verify = self.settings()
        return JobSubmissionClient(address, headers=headers or None, verify=verify)

    def submit(self, entrypoint: str, runtime_env: dict[str, Any] | None = None) -> str:
        """Submit ``entrypoint`` (already without credentials); returns the job id."""
        client, deadline = self.get_conn(), time.monotonic() + self.AGENT_WAIT
        while True:
            try:
                return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env or None)
            except RuntimeError as e:  # a cluster just started: its job agent is not up yet
                if "No available agent" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(2)

    def live_job(self, entrypoint: str) -> str | None:
        """A job with this entrypoint that has not ended (a retry follows it instead of starting another)."""
        for job in self.get_conn().list_jobs():
            if job.entrypoint == entrypoint and str(getattr(job.status, "value", job.status)) not in ENDED:
                return job.submission_id
        return None

    def state(self, job_id: str) -> tuple[str, str]:
        """The job's state (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED) and Ray's message, scrubbed."""
        info = self.get_conn().get_job_info(job_id)
        return str(getattr(info.status, "value", info.status)), scrub_text(info.message or "")

    def logs(self, job_id: str) -> str:
        return self.get_conn().get_job_logs(job_id)

    def stop(self, job_id: str) -> bool:
        return bool(self.get_conn().stop_job(job_id))

    def wait(self, job_id: str, poll: float, log: Any) -> tuple[str, str]:
        """Follow the job to its end, writing its new log lines to ``log`` as they come."""
        client, seen = self.get_conn(), 0
        while True:
            info = client.get_job_info(job_id)
            state = str(getattr(info.status, "value", info.status))
            text = client.get_job_logs(job_id)
            for line in text[seen:].splitlines():
                log(scrub_text(line))
            seen = len(text)
            if state in ENDED:
                return state, scrub_text(info.message or "")
            time.sleep(poll)
