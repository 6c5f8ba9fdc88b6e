"""Bounded memory: peak RSS while decoding stays flat as the video gets longer.

Each measurement runs in a fresh subprocess: it opens the video, records its peak RSS
(``ru_maxrss``), reads the first N frames in chunks at a model size where holding the
frames would cost ~100 kB each, and reports how much the peak grew. Reading 4x more frames
must not grow the peak by more than a small fraction of what keeping them would cost.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tased_batch.decode.sample import synthetic_frames, write_video

MODEL_SIZE = (128, 256)  # 98 kB per RGB frame: 900 extra frames held would be ~88 MB
SHORT, LONG = 300, 1200

_CHILD = """
import resource, sys
import numpy as np
from tased_batch.decode import open_video
path, decoder, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open_video(path, (128, 256), decoder=decoder, threads=1) as reader:
    reader.info
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seen = 0
    for chunk in reader.iter_frames(np.arange(n), chunk=32):
        seen += len(chunk)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert seen == n
print((peak - base) * 1024)
"""


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """1200 frames (40 s at 30 fps) of small synthetic content: cheap to encode."""
    loop = synthetic_frames(60, 72, 128)
    return write_video(tmp_path_factory.mktemp("long") / "long.mp4", np.concatenate([loop] * (LONG // 60)))


def _growth(path, decoder: str, n: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), decoder, str(n)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_peak_rss_is_flat_in_video_length(long_video, decoder):
    short = _growth(long_video, decoder, SHORT)
    long = _growth(long_video, decoder, LONG)
    held = (LONG - SHORT) * MODEL_SIZE[0] * MODEL_SIZE[1] * 3
    assert long - short < 0.25 * held, f"{decoder}: peak grew {short / 1e6:.1f} MB -> {long / 1e6:.1f} MB"
