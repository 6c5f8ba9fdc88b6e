"""How far apart the decoders' frames are: decord, torchcodec (CPU, CUDA) against PyAV.

Every backend goes through ``tased_batch.decode.open_video`` at model size on the same
synthesised corpus (H.264, HEVC, VP9, MPEG-4 and AV1 where the local FFmpeg encodes them; 360p
and 720p; both resize modes) and prints, per file and decoder, the mean and max absolute
pixel difference from PyAV (the reference: it decodes anything FFmpeg can). A decoder
that cannot run here (torchcodec not installed, no GPU) is listed as skipped with its
reason, never an error:

    python benchmarks/decoder_parity.py --size 224x384 --frames 60
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

CODECS = {
    "h264": ("libx264", ".mp4"),
    "hevc": ("libx265", ".mp4"),
    "vp9": ("libvpx-vp9", ".webm"),
    "mpeg4": ("mpeg4", ".mp4"),
    "av1": ("libaom-av1", ".mkv"),
}


def make_corpus(directory: Path, n_frames: int) -> list[Path]:
    import av

    from tased_batch.decode.sample import synthetic_frames, write_video

    paths = []
    for codec, (encoder, ext) in CODECS.items():
        for h, w in ((360, 640), (720, 1280)):
            if codec == "av1" and h == 720:
                continue  # libaom is slow; one size tells the story
            try:
                av.codec.Codec(encoder, "w")
            except Exception:  # noqa: BLE001 - this FFmpeg build lacks the encoder
                print(f"# {codec}: no {encoder} encoder in this FFmpeg, not in the corpus")
                break
            frames = synthetic_frames(n_frames, h, w, seed=len(paths))
            paths.append(write_video(directory / f"{codec}_{h}p{ext}", frames, codec=encoder))
    return paths


def decode_all(path: Path, size: tuple[int, int], decoder: str, resize: str, device: str | None) -> np.ndarray:
    from tased_batch.decode import open_video

    with open_video(str(path), size, decoder=decoder, resize=resize, device=device) as reader:
        chunks = list(reader.iter_frames(np.arange(reader.info.n_frames)))
        assert reader.backend == decoder, f"{decoder} fell back to {reader.backend}"
    return np.concatenate([c.cpu().numpy() if hasattr(c, "cpu") else c for c in chunks]).astype(np.int16)


def main() -> None:
    from tased_batch.decode import BACKENDS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="224x384", help="model size HxW")
    parser.add_argument("--frames", type=int, default=60, help="frames per synthesised clip")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    candidates = [("decord", None), ("torchcodec", "cpu"), ("torchcodec", "cuda")]
    runnable = []
    for decoder, device in candidates:
        reason = BACKENDS[decoder].unavailable()
        if reason is None and device == "cuda":
            import torch

            reason = None if torch.cuda.is_available() else "no CUDA device"
        label = decoder + (f"-{device}" if device else "")
        if reason:
            print(f"# {label}: skipped ({reason})")
        else:
            runnable.append((label, decoder, device))
    print(f"{'file':<16} {'resize':<8} {'decoder':<16} {'mean |diff|':>11} {'max |diff|':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for path in make_corpus(Path(tmp), args.frames):
            for resize in ("decoder", "exact"):
                reference = decode_all(path, (h, w), "pyav", resize, None)
                for label, decoder, device in runnable:
                    try:
                        got = decode_all(path, (h, w), decoder, resize, device)
                    except Exception as e:  # noqa: BLE001 - a decoder that cannot read this codec is a finding
                        print(f"{path.name:<16} {resize:<8} {label:<16} cannot decode: {str(e).splitlines()[0][:80]}")
                        continue
                    if got.shape != reference.shape:
                        print(f"{path.name:<16} {resize:<8} {label:<16} {len(got)} frames, PyAV {len(reference)}")
                        continue
                    diff = np.abs(got - reference)
                    print(f"{path.name:<16} {resize:<8} {label:<16} {diff.mean():>11.3f} {diff.max():>10d}")


if __name__ == "__main__":
    main()
