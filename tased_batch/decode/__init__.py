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

A new decoder is one module defining a registered backend class, imported below.
"""

from tased_batch.decode import decord_backend, pyav_backend, torchcodec_backend  # noqa: F401  (registration)
from tased_batch.decode.backend import (
    BACKENDS,
    Backend,
    DecodeFailure,
    EndOfStream,
    Frames,
    VideoBackend,
    register,
)
from tased_batch.decode.decord_backend import DecordBackend
from tased_batch.decode.fetch import Fetched, fetch
from tased_batch.decode.frames_backend import FramesBackend
from tased_batch.decode.probe import Probe, probe
from tased_batch.decode.pyav_backend import PyAVBackend
from tased_batch.decode.reader import (
    _INHERITED,
    RESIZES,
    VideoReader,
    backend_order,
    cuda_decoding_available,
    decoders,
    open_video,
    resolve_device,
    source_of,
)
from tased_batch.decode.sampling import FOLDER_FPS, Sampling, VideoInfo, sample_frames
from tased_batch.decode.spool import (
    DEFAULT_SPOOL_MAX,
    SPOOL_DIR_ENV,
    SPOOL_MAX_ENV,
    _Spool,
)

DECODERS = decoders()

# The names the single-module version had; tests patch the backend classes through them.
_DecordBackend = DecordBackend
_PyAVBackend = PyAVBackend
_FramesBackend = FramesBackend

__all__ = [
    "BACKENDS",
    "DECODERS",
    "DEFAULT_SPOOL_MAX",
    "FOLDER_FPS",
    "RESIZES",
    "SPOOL_DIR_ENV",
    "SPOOL_MAX_ENV",
    "_INHERITED",
    "Backend",
    "DecodeFailure",
    "DecordBackend",
    "EndOfStream",
    "Fetched",
    "Frames",
    "FramesBackend",
    "Probe",
    "PyAVBackend",
    "Sampling",
    "VideoBackend",
    "VideoInfo",
    "VideoReader",
    "_Spool",
    "backend_order",
    "cuda_decoding_available",
    "decoders",
    "fetch",
    "open_video",
    "probe",
    "register",
    "resolve_device",
    "sample_frames",
    "source_of",
]
