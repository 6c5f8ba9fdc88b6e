"""Process one shard: its videos -> decode -> engine -> store writer -> commit. No Ray here.

A Ray actor holds one :class:`ShardProcessor` (one loaded TASED-Net) and calls
:meth:`ShardProcessor.process` for each shard it is given. Decoding runs ahead in a
background thread (see :func:`tased_batch.pipeline.predict_video`) and writing in another,
so the model rarely waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from tased_batch.backoff import STORAGE_BASE, STORAGE_CAP, STORAGE_RETRIES, backoff_delay
from tased_batch.config import RunConfig
from tased_batch.engine import Engine
from tased_batch.options import ModelOptions
from tased_batch.pipeline import BackgroundWriter, default_device, predict_video
from tased_batch.records import VideoResult
from tased_batch.runrecords import StorageUnavailable, internal_error, split_skip
from tased_batch.sources import VideoSource
from tased_batch.stores import open_shard_writer
from tased_batch.weights import WeightsInfo, model_from_payload

TRANSIENT_REASONS = ("io-error",)
_sleep = time.sleep  # replaced in tests, so that minutes of backoff take no time

Progress = Callable[[dict[str, Any]], None]


def run_info(config: RunConfig, weights: WeightsInfo, config_fingerprint: str) -> dict[str, Any]:
    """What every shard records about the run that made it (a random stand-in is visible here)."""
    return {"config_fingerprint": config_fingerprint, "weights": weights.to_dict(), **config.run_info_fields()}


def engine_for(options: ModelOptions, model: torch.nn.Module, device: str) -> Engine:
    """The engine the model options ask for (shared by the Ray actors and the Ray Data plugin)."""
    return Engine(model, device=device, batch_size=options.batch_size, precision=options.precision,
                  first_windows=options.first_windows)


class ShardProcessor:
    """One loaded model that turns shards of videos into committed store shards."""

    def __init__(
        self,
        config: RunConfig,
        weights_bytes: bytes,
        weights: WeightsInfo,
        info: dict[str, Any],
        *,
        device: str | None = None,
        threads: int | None = None,
    ) -> None:
        if threads:
            torch.set_num_threads(int(threads))
        self.config = config
        self.device = device or default_device()
        model = model_from_payload(weights_bytes, weights, self.device)
        self.engine = engine_for(config.model, model, self.device)
        self.options = config.sampling.decode_options()
        self.info = info

    def predict(self, source: VideoSource) -> VideoResult:
        """One video, retrying transient storage errors with backoff (minutes).

        Storage that stays unavailable raises :class:`StorageUnavailable`: the shard stays
        pending for a later attempt or ``resume`` instead of recording the video as failed.
        """
        for attempt in range(1, STORAGE_RETRIES + 2):
            result = predict_video(
                source, self.engine, size=self.config.model_size, options=self.options,
                storage_options=self.config.storage_options,
            )
            if result.ok or result.reason not in TRANSIENT_REASONS:
                return result
            if attempt > STORAGE_RETRIES:
                raise StorageUnavailable(f"{source.video_id}: {result.error}")
            _sleep(backoff_delay(attempt, base=STORAGE_BASE, cap=STORAGE_CAP))
        return result

    def process(
        self,
        shard_id: str,
        videos: list[VideoSource],
        *,
        skip: dict[str, str] | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Write and commit one shard; ``skip`` maps video ids to a reason to record instead of decoding.

        Returns the commit record plus timing. Any exception leaves the shard uncommitted
        (its partial attempt is aborted) so that it is redone.
        """
        skip = skip or {}
        notify = progress or (lambda event: None)
        started = time.perf_counter()
        writer = open_shard_writer(
            self.config.output, shard_id, format=self.config.format, store_size=self.config.store_shape,
            model_size=self.config.model_size, run_info=self.info, storage_options=self.config.storage_options,
        )
        background = BackgroundWriter(writer)
        try:
            for source in videos:
                notify({"event": "start", "shard": shard_id, "video_id": source.video_id})
                trace = None
                if source.video_id in skip:
                    result = VideoResult.failed(source.video_id, source.display, *split_skip(skip[source.video_id]))
                else:
                    try:
                        result = self.predict(source)
                    except (StorageUnavailable, KeyboardInterrupt):
                        raise
                    except Exception as exc:  # any bug or absurd input: this video's failure, not the shard's
                        result, trace = internal_error(source.video_id, source.display, exc)
                background.submit(result)  # written while the next video decodes and runs
                notify({
                    "event": "video", "shard": shard_id, "video_id": result.video_id, "status": result.status,
                    "frames": int(len(result.maps)), "reason": result.reason, "error": result.error,
                    "source": result.source, "traceback": trace,
                })
            background.close()
            record = writer.commit()
        except BaseException:
            try:
                background.close()
            except BaseException:
                pass  # the first error is the one raised below
            try:
                writer.abort()
            except Exception:
                pass
            raise
        record = dict(record)
        record["seconds"] = time.perf_counter() - started
        return record
