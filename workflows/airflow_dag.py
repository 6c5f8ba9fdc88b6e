"""An Airflow 3 DAG: saliency maps of last night's uploads on a Ray cluster, then a check downstream.

Put this file in your DAGs folder (``pip install "tased-batch[airflow]"`` on the scheduler, the
workers and the triggerer) and create the connection, e.g.::

    airflow connections add tased_batch_ray_default --conn-type tased_batch_ray \
        --conn-host https://ray-head.internal --conn-port 8265 --conn-password "$RAY_TOKEN"

The cluster reads and writes S3 with its own credentials (instance role); none goes into the DAG.
A retry of the task resumes the same OUTPUT; a job still running for it is followed, not restarted.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from tased_batch.integrations.airflow.operators import TasedBatchRunOperator
from tased_batch.integrations.airflow.sensors import TasedBatchStatusSensor

with DAG(
    "tased_batch_nightly",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["saliency"],
) as dag:
    saliency = TasedBatchRunOperator(
        task_id="saliency",
        input="s3://my-bucket/uploads/{{ ds }}/",
        output="s3://my-bucket/saliency/{{ ds }}/",
        options={"weights": "released", "output_fps": 2, "format": "parquet", "actors": 4},
        deferrable=True,  # the triggerer follows the job and streams its log; no worker slot is held
        max_failed_fraction=0.05,  # exit 3 (some videos failed) fails the task above 5 % failed
        retries=2,
    )
    # A DAG of another team can wait on the same OUTPUT without knowing who runs it.
    complete = TasedBatchStatusSensor(
        task_id="maps_complete", output="s3://my-bucket/saliency/{{ ds }}/", mode="reschedule", poke_interval=300
    )
    saliency >> complete
