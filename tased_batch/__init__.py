"""tased-batch: TASED-Net video saliency for whole video archives.

The engine (decode -> model -> maps) runs without Ray; Ray only schedules it.
"""

from __future__ import annotations

from tased_batch.core.version import __version__

__all__ = ["__version__", "load_model", "open_results"]


def __getattr__(name: str):
    # Lazy so that ``import tased_batch`` stays cheap in CLI start-up and Ray workers.
    if name == "load_model":
        from tased_batch.model.weights import load_model

        return load_model
    if name == "open_results":
        from tased_batch.stores.reader import open_results

        return open_results
    raise AttributeError(name)
