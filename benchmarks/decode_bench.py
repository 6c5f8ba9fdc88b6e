"""Decoded frames per second at model size: decord with resize, PyAV, full-size decode + resize.

All methods go through ``tased_batch.decode.open_video`` (the code the batch runs) on the
same files in one run, one decoder thread each by default (a batch gets its parallelism
from many videos at once, not from threads inside one):

    python benchmarks/decode_bench.py                       # real-looking clips, 360p and 720p
    python benchmarks/decode_bench.py my1.mp4 my2.mkv --threads 0 --repeat 3

Without files, the TASED-Net example frames (``--frames``, else synthetic content) are
looped to ``--n-frames`` and encoded with libx264 at 640x360 and 1280x720.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = {
    # label: (decoder, resize)
    "decord, decoder-side resize": ("decord", "decoder"),
    "pyav, decoder-side resize": ("pyav", "decoder"),
    "decord full-size + cv2.resize": ("decord", "exact"),
    "pyav full-size + cv2.resize": ("pyav", "exact"),
}
# the release's example frames, in the shared/ folder beside this checkout
EXAMPLE = str(Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "tased-example" / "ex1")


def parse_hw(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def make_clips(folder: str | None, n_frames: int, directory: Path) -> list[Path]:
    import av
    import cv2

    if folder and Path(folder).is_dir():
        paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        base = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths])
    else:
        from tased_batch.decode.sample import synthetic_frames

        base = synthetic_frames(100, 224, 384)
    clips = []
    for h, w in ((360, 640), (720, 1280)):
        path = directory / f"clip_{w}x{h}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=30)
            stream.height, stream.width, stream.pix_fmt = h, w, "yuv420p"
            stream.options = {"crf": "20", "preset": "veryfast", "g": "60"}
            for i in range(n_frames):
                # ping-pong through the frames so the clip stays continuous
                k = i % (2 * len(base) - 2)
                frame = base[k if k < len(base) else 2 * len(base) - 2 - k]
                big = cv2.resize(frame, (w, h), interpolation=cv2.INTER_CUBIC)
                for packet in stream.encode(av.VideoFrame.from_ndarray(big, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        clips.append(path)
    return clips


def measure(path: Path, size: tuple[int, int], decoder: str, resize: str, threads: int) -> tuple[int, float]:
    from tased_batch.decode import open_video

    started = time.perf_counter()
    with open_video(str(path), size, decoder=decoder, resize=resize, threads=threads) as reader:
        n = 0
        for chunk in reader.iter_frames(np.arange(reader.info.n_frames), chunk=64):
            n += len(chunk)
    return n, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="videos to decode (default: generated clips)")
    parser.add_argument("--size", type=parse_hw, default=(224, 384), help="model input HxW")
    parser.add_argument("--threads", type=int, default=1, help="decoder threads per video (0: decoder's choice)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per method; the best is reported")
    parser.add_argument("--frames", default=EXAMPLE, help="frame folder used for the generated clips")
    parser.add_argument("--n-frames", type=int, default=300)
    args = parser.parse_args()

    import av
    import cv2
    import decord

    if args.threads > 0:
        cv2.setNumThreads(args.threads)  # the exact path's resize must not borrow extra cores
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(f) for f in args.files] or make_clips(args.frames, args.n_frames, Path(tmp))
        print(
            f"# model size {args.size[0]}x{args.size[1]}, threads/video {args.threads}, best of {args.repeat}; "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
            f"decord {decord.__version__}, PyAV {av.__version__}"
        )
        print(f"| {'file':<22} | {'method':<30} | {'frames':>6} | {'frames/s':>9} |")
        print(f"|{'-' * 24}|{'-' * 32}|{'-' * 8}|{'-' * 11}|")
        for path in files:
            for label, (decoder, resize) in METHODS.items():
                runs = [measure(path, args.size, decoder, resize, args.threads) for _ in range(args.repeat)]
                n, seconds = min(runs, key=lambda r: r[1])
                print(f"| {path.name[:22]:<22} | {label:<30} | {n:>6} | {n / seconds:>9.1f} |", flush=True)


if __name__ == "__main__":
    main()
