"""A Daft UDF over the Ray Data plugin's predictor (``pip install "tased-batch[daft]"``).

For pipelines that are Daft dataframes: a column of video URIs or video bytes in, one struct per
video out, holding the same encoded maps as the Ray Data plugin (and the Parquet store) and the
per-frame saliency summaries of the summary store (peak, centre of mass, entropy, ...)::

    import daft
    from tased_batch.integrations.daft import SaliencyUDF

    saliency = SaliencyUDF(weights="released", output_fps=2)
    df = daft.from_pydict({"url": ["s3://bucket/a.mp4"]})
    df = df.with_column("saliency", saliency(daft.col("url")))

Options are the Ray Data plugin's (:data:`~tased_batch.options.PREDICTOR_KEYS`), checked by the same
schema. The model loads once per UDF instance; bad videos become ``status == "failed"`` rows.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DO_NOT_TRACK", "1")  # Daft's telemetry: off unless the user turned it on

import daft
from daft import DataType

SUMMARY_FIELDS = ("peak_value", "mean_value", "peak_x", "peak_y", "entropy", "area50", "area90")

RESULT = DataType.struct(
    {
        "video_id": DataType.string(),
        "status": DataType.string(),
        "reason": DataType.string(),
        "error": DataType.string(),
        "frame_indices": DataType.list(DataType.int64()),
        "timestamps": DataType.list(DataType.float64()),
        "encoding": DataType.string(),
        "height": DataType.int32(),
        "width": DataType.int32(),
        "maps": DataType.list(DataType.binary()),
        **{name: DataType.list(DataType.float32()) for name in SUMMARY_FIELDS},
    }
)


@daft.cls
class SaliencyUDF:
    """One TASED-Net per UDF instance (:class:`~tased_batch.ray_data.SaliencyPredictor`), one row per video."""

    def __init__(self, encoding: str = "png", device: str | None = None, **options: Any) -> None:
        from tased_batch.ray_data import SaliencyPredictor

        self.predictor = SaliencyPredictor(encoding=encoding, device=device, **options)

    @daft.method(return_dtype=RESULT)
    def __call__(self, video: Any, video_id: str | None = None) -> dict[str, Any]:
        """``video`` is a URI (str) or the video's bytes; ``video_id`` names it (required for bytes)."""
        import numpy as np
        import torch

        from tased_batch.stores.parquet import encode_map
        from tased_batch.stores.resample import resize_maps
        from tased_batch.stores.summaries import frame_stats

        p = self.predictor
        if isinstance(video, (bytes, bytearray)):
            result = p.predict(video_id, data=bytes(video))
        else:
            result = p.predict(video_id, uri=None if video is None else str(video))
        row: dict[str, Any] = {
            "video_id": result.video_id,
            "status": result.status,
            "reason": result.reason,
            "error": result.error,
            "frame_indices": [],
            "timestamps": [],
            "encoding": p.encoding,
            "height": p.store_size[0],
            "width": p.store_size[1],
            "maps": [],
            **{name: [] for name in SUMMARY_FIELDS},
        }
        if result.ok:
            stored = resize_maps(np.asarray(result.maps), p.store_size)
            stats = frame_stats(torch.from_numpy(np.ascontiguousarray(stored)))
            row.update(
                frame_indices=[int(v) for v in result.frame_indices],
                timestamps=[float(v) for v in result.timestamps],
                maps=[encode_map(image, p.encoding) for image in stored],
                **{name: stats[name].tolist() for name in SUMMARY_FIELDS},
            )
        return row
