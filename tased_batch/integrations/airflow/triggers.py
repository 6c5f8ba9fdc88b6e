"""The trigger of a deferred TasedBatchRunOperator: follows the Ray job and streams its log lines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from tased_batch.core.secrets import scrub_text
from tased_batch.integrations.common import ENDED


class TasedBatchJobTrigger(BaseTrigger):
    """Waits in the triggerer (no worker slot held) until the job ends; its log goes into the task's log."""

    def __init__(self, job_id: str, ray_conn_id: str, poll_interval: float = 2.0) -> None:
        super().__init__()
        self.job_id = job_id
        self.ray_conn_id = ray_conn_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "tased_batch.integrations.airflow.triggers.TasedBatchJobTrigger",
            {"job_id": self.job_id, "ray_conn_id": self.ray_conn_id, "poll_interval": self.poll_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from tased_batch.integrations.airflow.hooks import TasedBatchRayHook

        hook = TasedBatchRayHook(self.ray_conn_id)
        client = await asyncio.to_thread(hook.get_conn)
        try:
            async for chunk in client.tail_job_logs(self.job_id):
                for line in chunk.splitlines():
                    self.log.info("%s", scrub_text(line))
        except Exception as exc:  # noqa: BLE001  # the log is a courtesy; the job's state decides
            self.log.warning("stopped following the job's log: %s", scrub_text(str(exc)))
        while True:
            info = await asyncio.to_thread(client.get_job_info, self.job_id)
            state = str(getattr(info.status, "value", info.status))
            if state in ENDED:
                break
            await asyncio.sleep(self.poll_interval)
        yield TriggerEvent({"job_id": self.job_id, "state": state, "message": scrub_text(info.message or "")})
