"""The stage clocks' overhead: frames/s of one shard processor with the clocks on vs off, and their cost per batch.

Worst case for the clocks: a cheap stand-in model (TASED-Net's input and output shapes, see
``memory_flat.py``) and frames from memory, so a batch takes milliseconds and the clocks'
own time is as large a share as it can be; with TASED-Net a batch takes far longer. "Off"
swaps in a clock that records nothing (the baseline, measured in the same process, runs
alternating with "on"; CPU seconds of the process are printed beside wall time, since on a
shared machine the wall clock mostly measures the neighbours). Also prints the cost of one timed block, and of the clock work one
batch does (two timed engine blocks, the writer's block and its queue wait, the feed wait).

    python benchmarks/stage_clocks.py                    # 3000 frames at 32x64, 5 runs each
    python benchmarks/stage_clocks.py --frames 6000 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from memory_flat import StandIn, events

from tased_batch.core.clocks import StageClock

BATCH = 8
CLOCK_CALLS_PER_BATCH = 5  # model, post, write, write_wait, and (about) one feed wait per batch


class NullClock(StageClock):
    """Records nothing: the baseline."""

    @contextmanager
    def time(self, stage: str, device: Any = None) -> Iterator[None]:
        yield

    def timed(self, items: Iterable[Any], stage: str) -> Iterator[Any]:
        return iter(items)

    def add(self, stage: str, seconds: float) -> None:
        pass


def one_run(clock: StageClock, frames: int, size: tuple[int, int]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one shard of one ``frames``-frame video through the processor into a committed Parquet shard."""
    from tased_batch.config import RunConfig
    from tased_batch.decode.sources import VideoSource
    from tased_batch.engine.engine import Engine
    from tased_batch.model.weights import WeightsInfo
    from tased_batch.run.shards import ShardProcessor, run_info

    with tempfile.TemporaryDirectory(prefix="tased-clocks-") as out:
        config = RunConfig(input="x", output=out, size=f"{size[0]}x{size[1]}", weights="stand-in").validate()
        info = run_info(config, WeightsInfo(kind="custom", uri="stand-in", sha256="0" * 64), "clocks")
        engine = Engine(StandIn.model(), batch_size=BATCH, channels_last=False)
        processor = ShardProcessor.with_engine(config, engine, info, producer=lambda sources: events(frames, size))
        engine.clock = processor.clock = clock
        started, cpu = time.perf_counter(), time.process_time()
        done = processor.process("000000", [VideoSource("video", "memory://video")])
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert done.record.n_maps == frames
    return seconds, cpu


def block_cost(n: int = 200_000) -> float:
    """Seconds of one ``with clock.time(...)`` block on the host clock (the CPU path)."""
    clock = StageClock()
    started = time.perf_counter()
    for _ in range(n):
        with clock.time("model"):
            pass
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--size", default="32x64")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    size = tuple(int(v) for v in args.size.split("x"))
    one_run(StageClock(), min(args.frames, 200), size)  # warm up imports and allocator
    on: list[tuple[float, float]] = []
    off: list[tuple[float, float]] = []
    for i in range(args.repeats):  # alternating, and each first half the time, so drift hits both alike
        pair = [(on, StageClock), (off, NullClock)]
        for into, make in pair if i % 2 == 0 else pair[::-1]:
            into.append(one_run(make(), args.frames, size))
    batches = -(-args.frames // BATCH)
    block = block_cost()
    print(f"frames {args.frames} at {args.size}, batch {BATCH}, {args.repeats} runs each (medians)")
    for what, index in (("wall", 0), ("CPU", 1)):
        t_on, t_off = statistics.median(r[index] for r in on), statistics.median(r[index] for r in off)
        print(f"{what:4} clocks on : {args.frames / t_on:9.1f} frames/s  ({t_on * 1000 / batches:.3f} ms per batch)")
        print(f"{what:4} clocks off: {args.frames / t_off:9.1f} frames/s  ({t_off * 1000 / batches:.3f} ms per batch)")
        print(f"{what:4} ratio on/off frames/s: {t_off / t_on:.3f}; per batch {(t_on - t_off) * 1e6 / batches:+.1f} us")
    print(f"one timed block: {block * 1e6:.2f} us; clock work per batch ~{CLOCK_CALLS_PER_BATCH * block * 1e6:.1f} us")


if __name__ == "__main__":
    main()
