"""Bytes per frame and fidelity of each store format at each stored map size.

Writes synthetic TASED-like maps (see ``tased_batch.stores.synthetic``) through the real
shard writers into a temporary folder, reads them back with ``open_results`` at model size
(bilinear upsampling) and compares with the full-size uint8 maps: per-frame correlation
coefficient (CC, mean and worst frame) and the largest grey-level error. Bytes per frame
count every committed file of the shard (map data, indexes, metadata), divided by frames.

    python benchmarks/store_size_table.py [--videos 4 --frames 120]

Prints two markdown tables (formats x sizes; area vs bilinear downsampling) for docs/stores.md.
"""

from __future__ import annotations

import argparse
import math
import tempfile

import numpy as np

from tased_batch.core.records import VideoResult
from tased_batch.stores import open_shard_writer
from tased_batch.stores.parquet import ParquetShardWriter
from tased_batch.stores.reader import open_results
from tased_batch.stores.resample import resize_maps
from tased_batch.stores.synthetic import MODEL_SIZE, synthetic_saliency_maps

FACTORS = (1, 2, 3, 4, 5, 6, 7, 8, 12)
FORMATS = ("parquet", "parquet-raw", "zarr", "png")
RUN_INFO = {"config_fingerprint": "benchmark", "weights": {"sha256": "-", "kind": "random", "uri": "synthetic"}}


def cc_per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a -= a.mean(1, keepdims=True)
    b -= b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def store_size(factor: int) -> tuple[int, int]:
    return math.ceil(MODEL_SIZE[0] / factor), math.ceil(MODEL_SIZE[1] / factor)


def measure(fmt: str, size: tuple[int, int], videos: list[np.ndarray], root: str) -> tuple[float, np.ndarray, int]:
    uri = f"{root}/{fmt}-{size[0]}x{size[1]}"
    kwargs = dict(store_size=size, model_size=MODEL_SIZE, run_info=RUN_INFO)
    if fmt == "parquet-raw":
        writer = ParquetShardWriter(uri, "s0", encoding="raw", **kwargs)
    else:
        writer = open_shard_writer(uri, "s0", format=fmt, **kwargs)
    for i, maps in enumerate(videos):
        frames = np.arange(len(maps), dtype=np.int64)
        writer.write(
            VideoResult(
                video_id=f"video{i:03d}",
                source=f"/in/video{i:03d}.mp4",
                n_frames=len(maps),
                fps=30.0,
                width=640,
                height=360,
                duration=len(maps) / 30.0,
                frame_indices=frames,
                timestamps=frames / 30.0,
                maps=maps,
            )
        )
    record = writer.commit()
    total = sum(entry.bytes for entry in record.files)
    if fmt == "png":  # the PNGs themselves are listed in frames.parquet, not in the record
        frames_path = next(f.path for f in record.files if f.path.endswith("frames.parquet"))
        import pyarrow.parquet as pq

        total += int(pq.read_table(f"{uri}/{frames_path}")["bytes"].to_numpy().sum())
    results = open_results(uri)
    n = sum(len(v) for v in videos)
    ccs, max_err = [], 0
    for i, maps in enumerate(videos):
        back = results.maps(f"video{i:03d}", size="model")
        ccs.append(cc_per_frame(maps, back))
        max_err = max(max_err, int(np.abs(maps.astype(np.int16) - back.astype(np.int16)).max()))
    return total / n, np.concatenate(ccs), max_err


def resample_table(videos: list[np.ndarray]) -> list[str]:
    """Area vs bilinear (antialiased) downsampling, both read back bilinearly."""
    import torch
    import torch.nn.functional as F

    maps = np.concatenate(videos)
    lines = [
        "| stored size | downsampling | CC mean | CC worst frame | max grey-level error |",
        "|---|---|---|---|---|",
    ]
    for factor in FACTORS[1:]:
        size = store_size(factor)
        for name in ("area", "bilinear"):
            if name == "area":
                small = resize_maps(maps, size)
            else:
                x = torch.from_numpy(maps).float().unsqueeze(1)
                y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
                small = y.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()
            back = resize_maps(small, MODEL_SIZE)
            cc = cc_per_frame(maps, back)
            err = int(np.abs(maps.astype(np.int16) - back.astype(np.int16)).max())
            lines.append(f"| {size[0]}x{size[1]} | {name} | {cc.mean():.5f} | {cc.min():.5f} | {err} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=120, help="frames per video")
    args = parser.parse_args()
    videos = [synthetic_saliency_maps(args.frames, MODEL_SIZE, seed=100 + i) for i in range(args.videos)]
    print(
        f"{args.videos} synthetic videos x {args.frames} frames at {MODEL_SIZE[0]}x{MODEL_SIZE[1]}; "
        "read back at model size (bilinear) and compared with the full-size uint8 maps\n"
    )
    lines = [
        "| format | stored size | bytes/frame | CC mean | CC worst frame | max grey-level error |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as root:
        for factor in FACTORS:
            size = store_size(factor)
            for fmt in FORMATS:
                per_frame, cc, err = measure(fmt, size, videos, root)
                lines.append(
                    f"| {fmt} | {size[0]}x{size[1]} | {per_frame:,.0f} | {cc.mean():.5f} | {cc.min():.5f} | {err} |"
                )
    print("\n".join(lines))
    print()
    print("\n".join(resample_table(videos)))


if __name__ == "__main__":
    main()
