"""Read videos as chunks of RGB frames at model size, with bounded memory and typed errors.

A small package, one concern a module:

* :mod:`.sampling`: which frames the windows run over (:class:`VideoInfo`, :class:`Sampling`,
  :func:`sample_frames`);
* :mod:`.fetch` and :mod:`.spool`: local files, remote objects and tar members made readable;
* :mod:`.probe`: the container's header, and why a video cannot be read (reason codes);
* :mod:`.backend`: the backend protocol and registry; one module per decoder:
  :mod:`.decord_backend` (default on CPUs; resizes while decoding), :mod:`.pyav_backend`
  (fallback, streams), :mod:`.torchcodec_backend` (CPU or NVDEC, optional) and
  :mod:`.frames_backend` (folders of images, as the released script reads them);
* :mod:`.reader`: :class:`VideoReader` / :func:`open_video`, which tie them together.

It also holds what feeds the engine: :mod:`.sources` (listing inputs), :mod:`.feed` and
:mod:`.feed_worker` (decode workers, bounded queues), :mod:`.streams` (the stream events),
:mod:`.options` (:class:`DecodeOptions`) and :mod:`.sample` (synthetic videos).

A new decoder is one module defining a registered backend class, imported by :mod:`.reader`.
The names below load on first use, so that the option schema can import :mod:`.options`
without numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the submodule that defines it (`fetch` and `probe` are the submodules themselves)
_NAMES = {
    "BACKENDS": "backend",
    "Backend": "backend",
    "DecodeFailure": "backend",
    "EndOfStream": "backend",
    "Frames": "backend",
    "VideoBackend": "backend",
    "register": "backend",
    "DecordBackend": "decord_backend",
    "Fetched": "fetch",
    "FramesBackend": "frames_backend",
    "Probe": "probe",
    "PyAVBackend": "pyav_backend",
    "_INHERITED": "reader",
    "RESIZES": "reader",
    "VideoReader": "reader",
    "backend_order": "reader",
    "cuda_decoding_available": "reader",
    "decoders": "reader",
    "open_video": "reader",
    "resolve_device": "reader",
    "source_of": "reader",
    "FOLDER_FPS": "sampling",
    "Sampling": "sampling",
    "VideoInfo": "sampling",
    "sample_frames": "sampling",
    "DEFAULT_SPOOL_MAX": "spool",
    "SPOOL_DIR_ENV": "spool",
    "SPOOL_MAX_ENV": "spool",
    "_Spool": "spool",
    "DecodeOptions": "options",
}

__all__ = sorted([*_NAMES, "DECODERS"])


def __getattr__(name: str) -> Any:
    if name == "DECODERS":  # the decoders this install can use
        return importlib.import_module("tased_batch.decode.reader").decoders()
    if name in _NAMES:
        importlib.import_module("tased_batch.decode.reader")  # registers the backends
        value = getattr(importlib.import_module(f"tased_batch.decode.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tased_batch.decode' has no attribute {name!r}")
