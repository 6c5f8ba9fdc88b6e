"""How much do saliency maps change with decoder-side scaling instead of the released resize?

The released script resizes each full-size frame with cv2.resize (bilinear, no
antialiasing); decord scales inside FFmpeg (swscale, which filters while it shrinks). This
script encodes real-looking frames at a typical source resolution into an MP4, decodes it
both ways at model size, and compares the input pixels and the maps TASED-Net makes from
them (Pearson CC per map, max and mean grey-level difference).

    python benchmarks/resize_parity.py --frames ../shared/fixtures/tased-example/ex1 \
        --source-size 720x1280 --every 20 --weights random

Use ``--weights released`` (or a path) once the released checkpoint is cached: the random
stand-in is calibrated to react to its input, but real weights are the number that matters.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_hw(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def load_frames(folder: str | None, n: int) -> np.ndarray:
    """RGB frames of a folder (sorted by name), or synthetic ones when no folder is given."""
    import cv2

    if folder:
        paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:n]
        return np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths])
    from tased_batch.decode.sample import synthetic_frames

    return synthetic_frames(n, 224, 384)


def encode(frames: np.ndarray, size: tuple[int, int], path: Path, fps: int = 30) -> Path:
    """Upscale (bicubic) to the source size and encode near-losslessly, like a camera original."""
    import av
    import cv2

    h, w = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width, stream.pix_fmt = h, w, "yuv420p"
        stream.options = {"crf": "12", "preset": "veryfast"}
        for frame in frames:
            big = cv2.resize(frame, (w, h), interpolation=cv2.INTER_CUBIC)
            for packet in stream.encode(av.VideoFrame.from_ndarray(big, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_all(path: Path, size: tuple[int, int], resize: str, decoder: str) -> np.ndarray:
    from tased_batch.decode import open_video

    with open_video(str(path), size, decoder=decoder, resize=resize) as reader:
        return np.concatenate(list(reader.iter_frames(np.arange(reader.info.n_frames))))


def cc(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", help="folder of frame images (default: synthetic content)")
    parser.add_argument("--n-frames", type=int, default=100)
    parser.add_argument("--source-size", type=parse_hw, default=(720, 1280), help="HxW the frames are encoded at")
    parser.add_argument("--size", type=parse_hw, default=(224, 384), help="model input HxW")
    parser.add_argument("--every", type=int, default=20, help="compare the maps of every N-th frame")
    parser.add_argument("--weights", default="random", help="random, released, or a checkpoint path/URI")
    parser.add_argument("--decoder", default="decord", choices=["decord", "pyav"])
    parser.add_argument("--no-model", action="store_true", help="pixel comparison only")
    args = parser.parse_args()

    frames = load_frames(args.frames, args.n_frames)
    with tempfile.TemporaryDirectory() as tmp:
        video = encode(frames, args.source_size, Path(tmp) / "source.mp4")
        scaled = decode_all(video, args.size, "decoder", args.decoder)
        exact = decode_all(video, args.size, "exact", args.decoder)
    diff = np.abs(scaled.astype(np.int16) - exact.astype(np.int16))
    report = {
        "content": args.frames or "synthetic",
        "source_size": "x".join(map(str, args.source_size)),
        "model_size": "x".join(map(str, args.size)),
        "decoder": args.decoder,
        "input_mean_abs_diff": round(float(diff.mean()), 3),
        "input_max_abs_diff": int(diff.max()),
    }
    if not args.no_model:
        import torch

        from tased_batch.engine.engine import Engine
        from tased_batch.model.weights import load_model

        model, _ = load_model(args.weights)
        engine = Engine(model, batch_size=2)
        targets = list(range(0, len(frames), args.every))
        # Noise floor: the exact input with +-1 grey level of random noise. A difference
        # between the two resize paths that is no larger than this one is not measurable.
        rng = np.random.default_rng(0)
        noisy = np.clip(exact.astype(np.int16) + rng.integers(-1, 2, exact.shape), 0, 255).astype(np.uint8)
        started = time.perf_counter()
        with torch.inference_mode():
            maps = {
                name: engine.predict(x, targets) for name, x in (("scaled", scaled), ("exact", exact), ("noisy", noisy))
            }
        report.update(weights=args.weights, maps=len(targets), model_seconds=round(time.perf_counter() - started, 1))
        for label, other in (("", "scaled"), ("noise_floor_", "noisy")):
            ccs = [cc(a, b) for a, b in zip(maps[other], maps["exact"], strict=True)]
            grey = np.abs(maps[other].astype(np.int16) - maps["exact"].astype(np.int16))
            report.update(
                {
                    f"{label}map_cc_min": round(min(ccs), 5),
                    f"{label}map_cc_mean": round(float(np.mean(ccs)), 5),
                    f"{label}map_max_grey_diff": int(grey.max()),
                    f"{label}map_mean_grey_diff": round(float(grey.mean()), 3),
                }
            )
        report["map_std_exact"] = round(float(maps["exact"].std()), 2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
