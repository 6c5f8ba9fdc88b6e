"""How a decode worker should hand frames to its consumer: a pipe (raw bytes) or shared memory.

The feed's workers send each chunk's raw bytes through their own pipe (one copy into the
kernel, one out, into a fresh numpy array). The alternative is a shared-memory ring of
chunk slots: the worker writes a slot, the consumer copies it out (the slot must be freed
for reuse, and a killed worker can leave it half written). This measures both, worker and
consumer in two processes, at the model size's chunk (64 frames of 224x384 RGB = 16.5 MB),
and prints MB/s and the time per chunk against the frames a CPU decodes in that time:

    python benchmarks/feed_transport.py --chunks 60
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from multiprocessing import shared_memory

import numpy as np

SHAPE = (64, 224, 384, 3)


def pipe_worker(conn, n: int) -> None:
    frames = np.random.default_rng(0).integers(0, 255, SHAPE, dtype=np.uint8)
    for _ in range(n):
        conn.send_bytes(frames.data.cast("B"))
    conn.close()


def shm_worker(name: str, slots: int, free, full, n: int) -> None:
    shm = shared_memory.SharedMemory(name)
    ring = np.ndarray((slots, *SHAPE), np.uint8, shm.buf)
    frames = np.random.default_rng(0).integers(0, 255, SHAPE, dtype=np.uint8)
    for _ in range(n):
        slot = free.get()
        ring[slot] = frames
        full.put(slot)
    del ring
    shm.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=60)
    n = parser.parse_args().chunks
    ctx = mp.get_context("spawn")
    nbytes = int(np.prod(SHAPE))

    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=pipe_worker, args=(send, n))
    p.start()
    send.close()
    recv.recv_bytes()  # warm-up: the worker has started
    t = time.perf_counter()
    for _ in range(n - 1):
        out = np.empty(SHAPE, np.uint8)
        recv.recv_bytes_into(out.data.cast("B"))
    pipe_s = (time.perf_counter() - t) / (n - 1)
    p.join()

    slots = 4
    shm = shared_memory.SharedMemory(create=True, size=slots * nbytes)
    ring = np.ndarray((slots, *SHAPE), np.uint8, shm.buf)
    free, full = ctx.Queue(), ctx.Queue()
    for s in range(slots):
        free.put(s)
    p = ctx.Process(target=shm_worker, args=(shm.name, slots, free, full, n))
    p.start()
    slot = full.get()
    free.put(slot)
    t = time.perf_counter()
    for _ in range(n - 1):
        slot = full.get()
        out = ring[slot].copy()  # the consumer owns its frames; the slot goes back to the ring
        free.put(slot)
    shm_s = (time.perf_counter() - t) / (n - 1)
    p.join()
    del ring
    shm.close()
    shm.unlink()
    for label, s in (("pipe, raw bytes", pipe_s), ("shared-memory ring + copy out", shm_s)):
        print(
            f"{label:<32} {s * 1000:7.2f} ms/chunk  {nbytes / s / 1e6:8.0f} MB/s  "
            f"({s / 64 * 1000:.3f} ms a frame; a 500 frames/s decoder takes 2 ms a frame)"
        )
    print(f"pipe / shm time ratio: {pipe_s / shm_s:.2f}")


if __name__ == "__main__":
    main()
