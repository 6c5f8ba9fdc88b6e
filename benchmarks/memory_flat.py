"""Peak RSS of one shard processor over a short and a long video: streaming sinks vs keeping all maps.

Every frame is mapped at a small model size by a cheap stand-in with TASED-Net's input and
output shapes, so the figures are the data path's own memory (engine buffers, batches,
sinks, the Parquet writer), not the model's. Frames come from an in-memory producer (a
bank of synthetic frames, no decoding), through ShardProcessor.process into a committed
Parquet shard. The control runs the same engine but keeps every map of the video, then
writes it whole (what the processor did before maps were streamed): it must grow. Both run
with the processor's allocator setting (:func:`tased_batch.run.pipeline.bound_heap_growth`).

Each case runs in its own process (peak RSS is per process):

    python benchmarks/memory_flat.py                   # 1-minute and 30-minute video, 30 fps, 32x64
    python benchmarks/memory_flat.py --case stream --frames 3000 --json   # one case
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

FPS = 30.0


class StandIn:
    """Built lazily so that the parent process does not import torch."""

    @staticmethod
    def model():
        import torch

        class Probe(torch.nn.Module):
            """(B, 3, 32, H, W) -> (B, H, W) in (0, 1), depending on every frame of the window (one channel: cheap)."""

            def __init__(self) -> None:
                super().__init__()
                self.weight = torch.nn.Parameter(torch.linspace(0.1, 3.2, 32))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.sigmoid((x[:, 0] * self.weight[None, :, None, None]).sum(1) / 8)

        return Probe()


def events(n: int, size: tuple[int, int], chunk: int = 64):
    """One video of ``n`` frames as stream events; frames cycle through a small bank."""
    from tased_batch.decode import Sampling, VideoInfo
    from tased_batch.decode.sample import synthetic_frames
    from tased_batch.decode.streams import FrameChunk, StreamEnd, StreamStart

    bank = synthetic_frames(16, *size, seed=0)
    positions = np.arange(n, dtype=np.int64)
    info = VideoInfo(n_frames=n, fps=FPS, width=size[1], height=size[0], duration=n / FPS)
    yield StreamStart(0, "video", "memory://video", info, Sampling(positions, positions, FPS), positions, 0, n)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        yield FrameChunk(0, start, bank[np.arange(start, stop) % len(bank)])
    yield StreamEnd(0)


def _peak_kb() -> int:
    """This process's peak RSS in kB: VmHWM, since Linux carries ru_maxrss over from the parent across fork + exec
    (a test process of a gigabyte made every case read a gigabyte)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux


def run_case(case: str, n: int, size: tuple[int, int]) -> dict:
    import torch

    from tased_batch.config import RunConfig
    from tased_batch.core.records import VideoResult
    from tased_batch.decode.sources import VideoSource
    from tased_batch.engine.engine import Engine
    from tased_batch.engine.streams import MapBatch
    from tased_batch.model.weights import WeightsInfo
    from tased_batch.run.pipeline import bound_heap_growth
    from tased_batch.run.shards import ShardProcessor, run_info
    from tased_batch.stores import open_shard_writer

    torch.set_num_threads(1)
    bound_heap_growth()  # what a processor does; the control gets it too, so both run on the same allocator
    with tempfile.TemporaryDirectory(prefix="tased-memory-") as out:
        config = RunConfig(input="x", output=out, size=f"{size[0]}x{size[1]}", weights="stand-in").validate()
        info = run_info(config, WeightsInfo(kind="custom", uri="stand-in", sha256="0" * 64), "memory")
        engine = Engine(StandIn.model(), batch_size=8, channels_last=False)
        started = time.perf_counter()
        if case == "stream":
            processor = ShardProcessor.with_engine(config, engine, info, producer=lambda sources: events(n, size))
            done = processor.process("000000", [VideoSource("video", "memory://video")])
            maps = done.record.n_maps
        else:  # control: every map of the video in memory, written whole at the end
            parts = [out.maps for out in engine.run_streams(events(n, size)) if isinstance(out, MapBatch)]
            frames = np.arange(n, dtype=np.int64)
            result = VideoResult(
                "video",
                "memory://video",
                n_frames=n,
                fps=FPS,
                frame_indices=frames,
                timestamps=frames / FPS,
                maps=np.concatenate(parts),
            )
            writer = open_shard_writer(out, "000000", model_size=size, run_info=info)
            writer.write(result)
            maps = writer.commit().n_maps
        seconds = time.perf_counter() - started
    peak_kb = _peak_kb()
    return {
        "case": case,
        "frames": n,
        "size": list(size),
        "maps": maps,
        "peak_rss_mb": peak_kb / 1024,
        "seconds": seconds,
    }


def measure(case: str, n: int, size: tuple[int, int]) -> dict:
    """Run one case in a fresh process; its figures."""
    command = [sys.executable, __file__, "--case", case, "--frames", str(n), "--size", f"{size[0]}x{size[1]}", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("stream", "control"))
    parser.add_argument("--frames", type=int)
    parser.add_argument("--size", default="32x64")
    parser.add_argument("--minutes", default="1,30", help="video lengths for the comparison (minutes at 30 fps)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.case:
        print(json.dumps(run_case(args.case, args.frames, size)))
        return
    short, long = (int(float(m) * 60 * FPS) for m in args.minutes.split(","))
    rows = []
    for case in ("stream", "control"):
        for n in (short, long):
            rows.append(row := measure(case, n, size))
            print(
                f"{case:<8} {n:>6} frames  peak RSS {row['peak_rss_mb']:8.1f} MB  ({row['seconds']:.1f} s)", flush=True
            )
    stream = rows[1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
    control = rows[3]["peak_rss_mb"] - rows[2]["peak_rss_mb"]
    print(
        f"growth from {short} to {long} frames: streaming {stream:+.1f} MB, control (all maps kept) {control:+.1f} MB"
    )
    if args.json:
        print(json.dumps({"rows": rows, "stream_growth_mb": stream, "control_growth_mb": control}))


if __name__ == "__main__":
    main()
