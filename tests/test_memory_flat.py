"""Memory flat in video length: a processor streaming maps to its sink does not grow with the video; keeping them does."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from memory_flat import measure

SIZE = (96, 128)  # 12 KB a map at model size: 2,700 more maps are 33 MB more when kept


def test_streaming_peak_rss_does_not_grow_with_video_length_while_keeping_maps_does():
    stream = [measure("stream", n, SIZE) for n in (300, 3000)]
    control = [measure("control", n, SIZE) for n in (300, 3000)]
    assert stream[1]["maps"] == control[1]["maps"] == 3000
    stream_growth = stream[1]["peak_rss_mb"] - stream[0]["peak_rss_mb"]
    control_growth = control[1]["peak_rss_mb"] - control[0]["peak_rss_mb"]
    assert stream_growth < 20, (stream, control)
    assert control_growth > 30 and control_growth > stream_growth + 25, (stream, control)  # the control does grow
