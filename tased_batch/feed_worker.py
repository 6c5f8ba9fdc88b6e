"""A decode worker process of :class:`tased_batch.feed.DecodeFeed`: ``python -m tased_batch.feed_worker TASKS RESULTS PARENT``.

It reads pickled :class:`~tased_batch.feed.FeedOptions` then :class:`~tased_batch.feed.Task` s
from file descriptor TASKS (``None``: finish), and writes each task's messages to RESULTS;
a chunk's frames follow their header as raw bytes. It dies with its parent (PARENT's pid):
``PR_SET_PDEATHSIG`` on Linux, and a watchdog thread everywhere, since Ray SIGKILLs actors
and an orphaned decoder would otherwise run on. It never imports torch.
"""

from __future__ import annotations

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
    tasks_fd, results_fd, parent = (int(v) for v in argv)
    die_with_parent(parent)
    tasks = Connection(tasks_fd, writable=False)
    results = Connection(results_fd, readable=False)
    from tased_batch.feed import (
        run_task,  # after the watchdog: importing decoders takes a while
    )

    options = pickle.loads(tasks.recv_bytes())

    def emit(message: tuple) -> None:
        if message[0] == "chunk":
            _, key, start, frames = message
            frames = np.ascontiguousarray(frames)
            results.send_bytes(pickle.dumps(("chunk", key, start, frames.shape, frames.dtype.str)))
            results.send_bytes(frames.data.cast("B"))
        else:
            results.send_bytes(pickle.dumps(message))

    while True:
        task = pickle.loads(tasks.recv_bytes())
        if task is None:
            return
        run_task(task, options, emit)
        emit(("done", task.key))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass  # the feed closed its end: nothing left to do
