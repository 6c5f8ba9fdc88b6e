"""Memory flat in video length: a processor streaming maps to its sink does not grow with the video; keeping them does."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from memory_flat import measure  # noqa: E402

SIZE = (96, 128)  # 12 KB a map at model size: 2,700 more maps are 33 MB more when kept


def test_streaming_peak_rss_does_not_grow_with_video_length_while_keeping_maps_does():
    short = measure("stream", 300, SIZE)
    long = measure("stream", 3000, SIZE)
    control_short = measure("control", 300, SIZE)
    control = measure("control", 3000, SIZE)
    assert long["maps"] == 3000 and control["maps"] == 3000
    assert long["peak_rss_mb"] - short["peak_rss_mb"] < 20, (short, long)
    # Growth against each path's own short video: the two paths' fixed costs differ (the writer thread's allocations).
    growth = control["peak_rss_mb"] - control_short["peak_rss_mb"]
    assert growth > 30, (control_short, control)  # the control does grow: the test can fail
