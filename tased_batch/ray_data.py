"""Ray Data plugin: saliency maps inside a user's own ``ray.data`` pipeline.

``tased-batch run`` owns planning, stores and resume. When a pipeline already exists
(filtering, captioning, joins), :class:`SaliencyPredictor` is the piece to drop into it::

    import ray
    from ray.data import ActorPoolStrategy
    from tased_batch.ray_data import SaliencyPredictor

    ds = ray.data.read_parquet("s3://bucket/manifest.parquet")          # a "url" column
    maps = ds.map_batches(
        SaliencyPredictor,
        fn_constructor_kwargs={"weights": "released", "output_fps": 2},
        num_gpus=1, batch_size=4, compute=ActorPoolStrategy(min_size=1, max_size=8),
    )

Rows hold a video URI (``url_col``) or the video's bytes (``bytes_col``, e.g. the ``mp4``
column of ``ray.data.read_webdataset``). Each output row is one video: ``video_id``,
``frame_indices`` and ``timestamps`` (lists), ``maps`` (a list of encoded maps, the same
bytes as the Parquet store's ``data`` column; decode one with
:func:`tased_batch.stores.parquet.decode_map`), ``encoding``, stored ``height``/``width``,
``status``, ``reason`` and ``error``. Bad videos become ``status == "failed"`` rows; they
never fail the Ray task.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from tased_batch.core.errors import ConfigError
from tased_batch.core.records import VideoResult
from tased_batch.decode.sources import VideoSource
from tased_batch.options import PREDICTOR_KEYS, predictor_options

__all__ = ["OUTPUT_SCHEMA", "PREDICTOR_KEYS", "SaliencyPredictor"]

OUTPUT_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("source", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("error", pa.string()),
        ("frame_indices", pa.list_(pa.int64())),
        ("timestamps", pa.list_(pa.float64())),
        ("encoding", pa.string()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("maps", pa.list_(pa.binary())),
    ]
)


class SaliencyPredictor:
    """A callable class for ``Dataset.map_batches``: one TASED-Net per actor, one row per video.

    Options are the `run` options the schema marks for the predictor (see
    :data:`~tased_batch.options.PREDICTOR_KEYS`: weights, size, precision, fps, output_fps, ...),
    with the same names, defaults and checks, plus the dataset's columns:
    ``url_col``/``bytes_col`` (whichever the batch has; a row with neither fails),
    ``id_col`` (default: the URI's file stem; required for bytes), ``keep_cols`` (input
    columns copied to the output, e.g. captions) and ``encoding`` (``png`` as the store,
    or ``raw``).
    """

    def __init__(
        self,
        *,
        url_col: str = "url",
        bytes_col: str = "bytes",
        id_col: str = "id",
        keep_cols: Sequence[str] = (),
        encoding: str = "png",
        device: str | None = None,
        **options: Any,
    ) -> None:
        from tased_batch.model.weights import load_model
        from tased_batch.run.pipeline import default_device
        from tased_batch.run.shards import engine_for
        from tased_batch.stores.base import default_store_size
        from tased_batch.stores.parquet import ENCODINGS

        if encoding not in ENCODINGS:
            raise ConfigError(f"SaliencyPredictor: encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
        self.model, self.sampling, self.store = predictor_options(options)
        self.url_col, self.bytes_col, self.id_col = url_col, bytes_col, id_col
        self.keep_cols = tuple(keep_cols)
        self.encoding = encoding
        self.size = self.model.size
        self.store_size = self.store.store_size or default_store_size(self.size)
        self.device = device or default_device()
        # Loaded once per actor: Ray Data builds the class once and calls it for every batch.
        model, self.weights_info = load_model(
            self.model.weights, self.device, storage_options=self.store.storage_options
        )
        self.engine = engine_for(self.model, model, self.device)
        self.options = self.sampling.decode_options()

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        """Maps for every row of a numpy-format batch, as a pyarrow table (one row per video)."""
        n = len(next(iter(batch.values()))) if batch else 0
        missing = [c for c in self.keep_cols if c not in batch]
        if missing:
            raise ConfigError(
                f"SaliencyPredictor: keep_cols {missing} are not in the dataset", f"columns: {sorted(batch)}"
            )
        rows = [self._row(batch, i) for i in range(n)]
        table = pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA)
        for col in self.keep_cols:
            table = table.append_column(col, pa.array(list(batch[col])))
        return table

    def predict(self, video_id: str | None, uri: str | None = None, data: bytes | None = None) -> VideoResult:
        """One video from a URI or from its bytes (spooled to a temporary file for the decoder)."""
        from tased_batch.run.pipeline import predict_video

        if data is None:
            if not uri:
                return VideoResult.failed(
                    video_id or "", "", "no-input", f"row has neither {self.url_col!r} nor {self.bytes_col!r}"
                )
            source = VideoSource(video_id, uri) if video_id else uri
            return predict_video(
                source, self.engine, size=self.size, options=self.options, storage_options=self.store.storage_options
            )
        if not video_id:
            return VideoResult.failed("", "<bytes>", "no-id", f"rows of bytes need an id column ({self.id_col!r})")
        handle, path = tempfile.mkstemp(prefix="tased-", suffix=".video")
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(data)
            result = predict_video(VideoSource(video_id, path), self.engine, size=self.size, options=self.options)
        finally:
            os.unlink(path)
        # Name the row, not the temporary file, in messages.
        result.source = f"<{len(data)} bytes>"
        if result.error:
            result.error = result.error.replace(path, video_id)
        return result

    def _row(self, batch: dict[str, np.ndarray], i: int) -> dict[str, Any]:
        from tased_batch.stores.parquet import encode_map
        from tased_batch.stores.resample import resize_maps

        def cell(col: str) -> Any:
            value = batch[col][i] if col in batch else None
            return None if value is None or (isinstance(value, float) and np.isnan(value)) else value

        video_id, uri, data = cell(self.id_col), cell(self.url_col), cell(self.bytes_col)
        result = self.predict(
            None if video_id is None else str(video_id),
            uri=None if uri is None else str(uri),
            data=None if data is None else bytes(data),
        )
        blobs: list[bytes] = []
        if result.ok:
            stored = resize_maps(np.asarray(result.maps), self.store_size)
            blobs = [encode_map(image, self.encoding) for image in stored]
        return {
            "video_id": result.video_id,
            "source": result.source,
            "status": result.status,
            "reason": result.reason,
            "error": result.error,
            "frame_indices": [int(v) for v in result.frame_indices] if result.ok else [],
            "timestamps": [float(v) for v in result.timestamps] if result.ok else [],
            "encoding": self.encoding,
            "height": self.store_size[0],
            "width": self.store_size[1],
            "maps": blobs,
        }
