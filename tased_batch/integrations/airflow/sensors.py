"""``TasedBatchStatusSensor``: waits until the run at an OUTPUT is complete (no shard pending)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from tased_batch.core.errors import TasedError
from tased_batch.integrations.common import RunStatus, check_options


class TasedBatchStatusSensor(BaseSensorOperator):
    """Pokes `tased-batch status OUTPUT`; done when every shard has a commit record. XCom: the status.

    ``max_failed_fraction`` fails the sensor when a complete run has more failed videos than that.
    """

    template_fields = ("output_uri",)

    def __init__(
        self,
        *,
        output: str,
        storage_options: dict[str, Any] | None = None,
        max_failed_fraction: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if storage_options:
            check_options({"storage_options": storage_options}, where="TasedBatchStatusSensor")
        self.output_uri = output  # BaseOperator.output is its XComArg
        self.storage_options = storage_options or {}
        self.max_failed_fraction = max_failed_fraction

    def poke(self, context: Any) -> PokeReturnValue:
        try:
            status = RunStatus.of(self.output_uri, self.storage_options)
        except TasedError as e:
            self.log.info("no run at the output yet: %s", e)
            return PokeReturnValue(is_done=False)
        self.log.info(
            "%d/%d shards done, %d videos failed", status.shards_done, status.shards_total, status.videos_failed
        )
        if not status.complete:
            return PokeReturnValue(is_done=False)
        if status.failed_fraction > self.max_failed_fraction:
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(
                f"{status.videos_failed} of {status.videos_total} videos failed, above {self.max_failed_fraction:.1%}"
            )
        return PokeReturnValue(is_done=True, xcom_value=status.to_dict())
