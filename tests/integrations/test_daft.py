"""The Daft UDF on Daft's native runner: the same maps as the Ray Data plugin's predictor, summaries, failures."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
daft = pytest.importorskip("daft")

from raycluster import make_videos  # noqa: E402

OPTIONS = {"size": "32x64", "weights": "random", "output_fps": 5.0, "store_size": "16x32"}


def test_udf_gives_the_predictors_maps_and_summaries(tmp_path):
    from tased_batch.integrations.daft import SaliencyUDF
    from tased_batch.ray_data import SaliencyPredictor
    from tased_batch.stores.parquet import decode_map

    daft.set_runner_native()
    videos = make_videos(tmp_path / "videos")
    urls = [str(videos / "a.mp4"), str(videos / "late.mp4")]
    udf = SaliencyUDF(**OPTIONS)
    df = daft.from_pydict({"url": urls, "id": ["a", "late"], "bytes": [open(u, "rb").read() for u in urls]})
    rows = df.select(
        udf(daft.col("url")).alias("by_url"), udf(daft.col("bytes"), daft.col("id")).alias("by_bytes")
    ).to_pylist()

    expected = SaliencyPredictor(**OPTIONS)({"url": np.array(urls, dtype=object)}).to_pylist()
    good, bad = rows
    assert good["by_url"]["status"] == "ok" and good["by_url"]["maps"] == expected[0]["maps"]
    assert good["by_bytes"]["maps"] == expected[0]["maps"] and good["by_bytes"]["video_id"] == "a"
    assert good["by_url"]["frame_indices"] == expected[0]["frame_indices"]
    maps = [decode_map(blob, "png", 16, 32) for blob in good["by_url"]["maps"]]
    peaks = [float(m.max()) / 255 for m in maps]
    assert good["by_url"]["peak_value"] == pytest.approx(peaks, abs=1e-6)
    assert len(good["by_url"]["entropy"]) == len(maps) > 0
    for cell in bad.values():
        assert cell["status"] == "failed" and cell["reason"] and cell["maps"] == []


def test_workflow_example_writes_maps_and_counts_failures(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import pyarrow.parquet as pq

    videos = make_videos(tmp_path / "videos")
    out = tmp_path / "saliency.parquet"
    example = Path(__file__).resolve().parents[2] / "workflows" / "daft_saliency.py"
    done = subprocess.run(
        [sys.executable, str(example), str(videos / "*.mp4"), str(out), "--weights", "random", "--size", "32x64"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 videos done, 1 failed" in done.stdout
    table = pq.read_table(out) if out.is_file() else pq.ParquetDataset(out).read()
    rows = {r["video_id"]: r for r in table.to_pylist()}
    assert rows["a"]["status"] == "ok" and rows["a"]["maps"] and rows["late"]["status"] == "failed"
