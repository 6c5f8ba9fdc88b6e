"""The network and its weights: TASED-Net as released, and where its weights come from.

* :mod:`.network`: :class:`TASEDNet` (S3D encoder, temporal-aggregation decoder);
* :mod:`.weights`: loading, checking and downloading checkpoints (:func:`load_model`).

``WINDOW`` (frames per clip) lives here without torch; the rest loads torch on first use.
"""

from __future__ import annotations

from typing import Any

WINDOW = 32  # frames per TASED-Net clip


def __getattr__(name: str) -> Any:
    if name == "TASEDNet":
        from tased_batch.model.network import TASEDNet

        return TASEDNet
    if name == "load_model":
        from tased_batch.model.weights import load_model

        return load_model
    raise AttributeError(f"module 'tased_batch.model' has no attribute {name!r}")
