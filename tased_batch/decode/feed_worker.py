"""A decode worker process of :class:`tased_batch.decode.feed.DecodeFeed`: ``python -m tased_batch.decode.feed_worker TASKS RESULTS PARENT``.

It reads pickled :class:`~tased_batch.decode.feed.FeedOptions` then :class:`~tased_batch.decode.feed.Task` s
from file descriptor TASKS (``None``: finish), and writes each task's messages to RESULTS;
a chunk's frames follow their header as raw bytes. It dies with its parent (PARENT's pid):
``PR_SET_PDEATHSIG`` on Linux, and a watchdog thread everywhere, since Ray SIGKILLs actors
and an orphaned decoder would otherwise run on. It never imports torch.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import pickle
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

import numpy as np

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Be killed when the parent process dies (however it dies)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    if os.getppid() != parent:  # it died before we asked
        os._exit(1)
    threading.Thread(target=watch, name="tased-parent-watch", daemon=True).start()


def main(argv: list[str]) -> None:
    tasks_fd, results_fd, parent = (int(v) for v in argv[:3])
    ring_path = argv[3] if len(argv) > 3 else ""
    die_with_parent(parent)
    tasks = Connection(tasks_fd, writable=False)
    results = Connection(results_fd, readable=False)
    from tased_batch.decode.feed import SLOTS, run_task

    options = pickle.loads(tasks.recv_bytes())
    ring = None
    if ring_path:
        ring = np.memmap(ring_path, np.uint8, "r+", shape=(SLOTS, options.chunk, *options.size, 3))
        with contextlib.suppress(OSError):
            os.unlink(ring_path)  # both sides have it mapped: nothing is left in /dev/shm whoever dies
    free = list(range(SLOTS))
    inbox: collections.deque = collections.deque()  # tasks that arrived while waiting for a free slot

    def wait_for_slot() -> int:
        while not free:
            message = pickle.loads(tasks.recv_bytes())
            if isinstance(message, tuple) and message[0] == "free":
                free.append(message[1])
            else:
                inbox.append(message)
        return free.pop()

    def emit(message: tuple) -> None:
        if message[0] == "chunk":
            _, key, start, frames = message
            if (
                ring is not None
                and frames.dtype == np.uint8
                and frames.shape[1:] == ring.shape[2:]
                and len(frames) <= ring.shape[1]
            ):
                slot = wait_for_slot()
                ring[slot, : len(frames)] = frames
                results.send_bytes(pickle.dumps(("slot", key, start, slot, len(frames))))
                return
            frames = np.ascontiguousarray(frames)
            results.send_bytes(pickle.dumps(("chunk", key, start, frames.shape, frames.dtype.str)))
            results.send_bytes(frames.data.cast("B"))
        else:
            results.send_bytes(pickle.dumps(message))

    while True:
        task = inbox.popleft() if inbox else pickle.loads(tasks.recv_bytes())
        if isinstance(task, tuple):  # a slot handed back between tasks
            free.append(task[1])
            continue
        if task is None:
            return
        emit(("done", task.key, run_task(task, options, emit)))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass  # the feed closed its end: nothing left to do
