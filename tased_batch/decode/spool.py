"""Spool: remote objects and tar members become local files in a bounded, cleaned-up area."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

from tased_batch.core.errors import ConfigError

SPOOL_DIR_ENV = "TASED_SPOOL_DIR"
SPOOL_MAX_ENV = "TASED_SPOOL_MAX_BYTES"
DEFAULT_SPOOL_MAX = 4 << 30


class _Spool:
    """Per-process spool directory with a byte budget shared by this process's readers.

    Files live in ``<TASED_SPOOL_DIR or tmp>/tased-spool/<pid>-<random>/``; each is removed
    when its reader closes, the directory at exit, and directories left by dead processes
    (killed workers) are swept when a new one is created.
    """

    _lock = threading.Lock()
    _dir: Path | None = None
    _used = 0

    @classmethod
    def limit(cls) -> int:
        text = os.environ.get(SPOOL_MAX_ENV)
        try:
            return int(text) if text else DEFAULT_SPOOL_MAX
        except ValueError:
            raise ConfigError(f"{SPOOL_MAX_ENV}={text!r} is not a number of bytes") from None

    @classmethod
    def root(cls) -> Path:
        return Path(os.environ.get(SPOOL_DIR_ENV) or tempfile.gettempdir()) / "tased-spool"

    @classmethod
    def directory(cls) -> Path:
        with cls._lock:
            if cls._dir is None or not cls._dir.name.startswith(f"{os.getpid()}-"):
                root = cls.root()
                root.mkdir(parents=True, exist_ok=True)
                _sweep_dead(root)
                cls._dir = root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
                cls._dir.mkdir()
                cls._used = 0
                atexit.register(shutil.rmtree, cls._dir, True)
            return cls._dir

    @classmethod
    def reserve(cls, size: int) -> bool:
        """Claim ``size`` bytes of the budget (and of the disk); False means stream instead."""
        directory = cls.directory()
        with cls._lock:
            if cls._used + size > cls.limit():
                return False
            if shutil.disk_usage(directory).free < size + (256 << 20):
                return False
            cls._used += size
            return True

    @classmethod
    def release(cls, size: int) -> None:
        with cls._lock:
            cls._used = max(0, cls._used - size)


def _sweep_dead(root: Path) -> None:
    """Remove spool directories whose process no longer exists."""
    for entry in root.iterdir():
        pid_text = entry.name.split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except PermissionError:
            pass  # alive, owned by someone else
