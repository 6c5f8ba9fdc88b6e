"""Dagster definitions: a saliency asset per upload batch, its failure check, on a Ray cluster.

``pip install "tased-batch[dagster]"`` where Dagster runs; the cluster needs ``tased-batch`` and
``dagster-pipes`` (the image in infra/, or ``pip=[...]`` below). Load with
``dagster dev -f workflows/dagster_defs.py``. Without ``TASED_RAY_ADDRESS`` the job runs in a
subprocess with its own local Ray (small deployments, tests). Credentials come from ``EnvVar``:
Dagster resolves them at run time and never stores or shows them.
"""

from __future__ import annotations

import os

import dagster as dg

from tased_batch.integrations.dagster import TasedBatchResource, saliency_asset

maps, maps_check = saliency_asset(
    "upload_saliency",
    output="s3://my-bucket/saliency/uploads/",
    partitions={  # partition key -> input prefix (or a manifest listing one shard's videos)
        "2026-01": "s3://my-bucket/uploads/2026-01/",
        "2026-02": "s3://my-bucket/uploads/2026-02/",
    },
    options={"weights": "released", "output_fps": 2, "actors": 4},
    max_failed_fraction=0.05,
    group_name="saliency",
)

defs = dg.Definitions(
    assets=[maps],
    asset_checks=[maps_check],
    resources={
        "tased_batch": TasedBatchResource(
            address=os.environ.get("TASED_RAY_ADDRESS"),  # e.g. http://ray-head:8265
            ray_token=dg.EnvVar("RAY_TOKEN") if os.environ.get("RAY_TOKEN") else None,
            storage_options={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]}
            if "AWS_ENDPOINT_URL" in os.environ
            else {},
            aws_access_key_id=dg.EnvVar("AWS_ACCESS_KEY_ID") if os.environ.get("AWS_ACCESS_KEY_ID") else None,
            aws_secret_access_key=dg.EnvVar("AWS_SECRET_ACCESS_KEY")
            if os.environ.get("AWS_SECRET_ACCESS_KEY")
            else None,
        )
    },
)
