"""Dagster assets of tased-batch (``pip install "tased-batch[dagster]"``): an OUTPUT store as an asset.

:class:`TasedBatchResource` says where runs go (a Ray cluster's job API, or ``None``: a subprocess of
the Dagster process with its own local Ray) and holds the store's credentials, given as ``EnvVar``
so that Dagster never stores or shows them. :func:`saliency_asset` builds the asset and its check:
materialising runs (or resumes) the run through Dagster Pipes (:mod:`tased_batch.integrations.pipes`),
so the job itself reports its metadata and its data version (the config fingerprint); the check fails
when more than a threshold of the videos failed. Partitions map keys to input prefixes or shard lists
(manifests), each into its own OUTPUT below the asset's.
"""

# No `from __future__ import annotations`: Dagster reads the context parameters' annotations as types.
import sys
from collections.abc import Mapping
from typing import Any

import dagster as dg

from tased_batch.core.errors import ConfigError
from tased_batch.integrations.common import RunStatus, check_options
from tased_batch.options import dump_values

PIPES_MODULE = "tased_batch.integrations.pipes"


class TasedBatchResource(dg.ConfigurableResource):
    """Where runs go and the store's credentials (``EnvVar`` only; never put in a job's arguments)."""

    address: str | None = None  # the Ray job API, e.g. http://HEAD:8265; None: run in a local subprocess
    ray_token: str | None = None  # sent as Authorization: Bearer to the job API
    storage_options: dict[str, str] = {}  # non-secret fsspec options (endpoint_url, region)
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    pip: list[str] = []  # packages a Ray job installs (its runtime env)

    def _credentials(self) -> dict[str, str]:
        names = {
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
            "AWS_SESSION_TOKEN": self.aws_session_token,
        }
        return {k: v for k, v in names.items() if v}

    def status_options(self) -> dict[str, Any]:
        """Storage options for reading a run's status from this process (credentials included)."""
        options: dict[str, Any] = dict(self.storage_options)
        if self.aws_access_key_id and self.aws_secret_access_key:
            options.update(key=self.aws_access_key_id, secret=self.aws_secret_access_key)
            if self.aws_session_token:
                options["token"] = self.aws_session_token
        return options

    def materialize(
        self,
        context: dg.AssetExecutionContext,
        *,
        input: str | None,
        output: str,
        options: Mapping[str, Any] | None = None,
        config: str | None = None,
    ) -> dg.MaterializeResult:
        """Run (or resume) one run through Pipes; the job reports the materialization."""
        values = check_options({**(options or {}), "storage_options": dict(self.storage_options)}, "saliency_asset")
        extras = {"input": input, "output": output, "options": dump_values(values), "config": config}
        if self.address is None:
            import os

            client = dg.PipesSubprocessClient()
            env = {**os.environ, **self._credentials()}  # the child's AWS chain, never its argv or extras
            invocation = client.run(
                command=[sys.executable, "-m", PIPES_MODULE], context=context, extras=extras, env=env
            )
        else:
            from dagster_ray import PipesRayJobClient

            from tased_batch.run.submit import runtime_env

            headers = {"Authorization": f"Bearer {self.ray_token}"} if self.ray_token else None
            ray_client = PipesRayJobClient(address=self.address, headers=headers, poll_interval=1.0)
            invocation = ray_client.run(
                context=context,
                submit_job_params={"entrypoint": f"python -m {PIPES_MODULE}", "runtime_env": runtime_env(self.pip)},
                extras=extras,
            )
        return invocation.get_materialize_result()


def saliency_asset(
    name: str,
    *,
    output: str,
    input: str | None = None,
    options: Mapping[str, Any] | None = None,
    config: str | None = None,
    partitions: Mapping[str, str] | None = None,
    max_failed_fraction: float = 0.0,
    resource_key: str = "tased_batch",
    group_name: str | None = None,
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    """The asset that materialises OUTPUT (or OUTPUT/<key> for partition key -> input) and its check.

    ``options`` are `run`'s options by name, checked now by the schema; the check fails when
    more than ``max_failed_fraction`` of the videos failed.
    """
    check_options(options, where=f"saliency_asset {name}")
    if partitions is not None and not partitions:
        raise ValueError(f"saliency_asset {name}: partitions must name at least one input")
    partitions_def = dg.StaticPartitionsDefinition(list(partitions)) if partitions else None

    def where(context: Any) -> tuple[str | None, str]:
        if partitions is None:
            return input, output
        key = context.partition_key
        return partitions[key], f"{output.rstrip('/')}/{key}"

    @dg.asset(
        name=name,
        partitions_def=partitions_def,
        group_name=group_name,
        required_resource_keys={resource_key},
        description=f"Saliency maps of {input or 'the partitions inputs'} in {output} (tased-batch).",
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        source, target = where(context)
        resource: TasedBatchResource = getattr(context.resources, resource_key)
        return resource.materialize(context, input=source, output=target, options=options, config=config)

    @dg.asset_check(asset=_asset, name="failed_videos_below_threshold", required_resource_keys={resource_key})
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        resource: TasedBatchResource = getattr(context.resources, resource_key)
        targets = [where(_Key(k))[1] for k in partitions] if partitions else [output]
        statuses = []
        for target in targets:
            try:
                statuses.append(RunStatus.of(target, resource.status_options()))
            except ConfigError:
                continue  # a partition not materialised yet
        failed = sum(s.videos_failed for s in statuses)
        total = sum(s.videos_total for s in statuses)
        share = failed / total if total else 0.0
        return dg.AssetCheckResult(
            passed=bool(statuses) and share <= max_failed_fraction,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "videos_failed": failed,
                "videos_total": total,
                "failed_fraction": share,
                "threshold": max_failed_fraction,
                "outputs_checked": len(statuses),
            },
        )

    return _asset, _check


class _Key:
    """A stand-in context naming one partition key (the check covers every partition's output)."""

    def __init__(self, key: str) -> None:
        self.partition_key = key
