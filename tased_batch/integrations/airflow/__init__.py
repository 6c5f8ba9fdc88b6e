"""The Airflow 3 provider of tased-batch (``pip install "tased-batch[airflow]"``).

Registered through the ``apache_airflow_provider`` entry point, so that Airflow lists its
connection type (``tased_batch_ray``: the Ray job API), hook, trigger, operator and sensor.
"""

from __future__ import annotations

from typing import Any

from tased_batch.core.version import __version__


def get_provider_info() -> dict[str, Any]:
    """What Airflow's ProvidersManager reads from the entry point."""
    package = "tased_batch.integrations.airflow"
    return {
        "package-name": "tased-batch",
        "name": "tased-batch",
        "description": "Video saliency over whole archives with TASED-Net on Ray: run, follow and check runs.",
        "versions": [__version__],
        "hooks": [{"integration-name": "tased-batch", "python-modules": [f"{package}.hooks"]}],
        "connection-types": [
            {"connection-type": "tased_batch_ray", "hook-class-name": f"{package}.hooks.TasedBatchRayHook"}
        ],
        "triggers": [{"integration-name": "tased-batch", "python-modules": [f"{package}.triggers"]}],
        "operators": [{"integration-name": "tased-batch", "python-modules": [f"{package}.operators"]}],
        "sensors": [{"integration-name": "tased-batch", "python-modules": [f"{package}.sensors"]}],
    }
