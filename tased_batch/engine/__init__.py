"""The engine: 32-frame windows of many streams batched through TASED-Net, maps out.

* :mod:`.windows`: which frames each target's window holds (no torch: planning uses it);
* :mod:`.engine`: :class:`Engine`, batching windows across streams on one device;
* :mod:`.fastpath`: precisions, channels-last, folded BatchNorm, the automatic batch size;
* :mod:`.postprocess`: the released script's blur and 0..255 scaling, on the device;
* :mod:`.staging`: host-to-device copies overlapped with the model;
* :mod:`.streams`: what the engine yields (:class:`MapBatch`, :class:`StreamDone`).

It reads the decode stage's stream events and the model; it never imports Ray or a store.
``tased_batch.engine.Engine`` and the other names of :mod:`.engine` load torch on first use,
so that importing :mod:`.windows` (the option schema does) stays light.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from tased_batch.engine import engine

    if name in engine.__all__:
        return getattr(engine, name)
    raise AttributeError(f"module 'tased_batch.engine' has no attribute {name!r}")
