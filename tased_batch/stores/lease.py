"""One live driver per OUTPUT: a lease object with a heartbeat, taken with the store's own atomics.

``OUTPUT/_lease.json`` names the driver that holds the output (owner, host, pid, job id),
when it started and when it last beat. A run takes the lease before it plans or deletes
anything, a thread renews it every ``ttl / 6`` seconds, and it is released at the end.

- Taking it: exclusive create (``os.open(O_CREAT | O_EXCL)`` on local disk, S3
  ``PutObject`` with ``If-None-Match: *`` elsewhere).
- Renewing and taking over: a conditional replace. On S3 ``If-Match`` on the ETag that was
  read, so two drivers can never both win; on local disk the same check under a lock file
  made with ``O_EXCL``.
- A lease held by someone else is refused as soon as its heartbeat is seen to advance
  (naming the holder and its last beat); one whose heartbeat stops is taken over once it
  is older than the TTL, so a crashed driver's ``resume`` waits at most the TTL. A holder
  on this host whose process is gone is taken over at once.

Fallback: an S3-compatible endpoint that rejects conditional writes (``NotImplemented``)
gets write-then-read-back: the driver writes its lease, waits a moment and reads it back,
and proceeds only if its own token is there. Two drivers starting within that moment can
both pass; the log says so. Data stays consistent, only duplicate work is possible.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec

from tased_batch.core.errors import TasedError
from tased_batch.stores import layout

LEASE_FILE = "_lease.json"
DEFAULT_TTL = 60.0
_LOCK_STALE = 30.0


class LeaseHeld(TasedError):
    """Another live driver holds the output."""


class LeaseLost(TasedError):
    """This driver's lease was taken over (it stopped beating for longer than the TTL)."""


@dataclass
class LeaseInfo:
    """The lease object as stored (JSON)."""

    token: str
    owner: str
    host: str
    pid: int
    job_id: str | None
    started: float
    heartbeat: float
    ttl: float
    version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LeaseInfo:
        """Raises ValueError for anything but a whole lease of this tool (truncated, wrongly typed)."""
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("the lease is not a JSON object")
        info = cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        numbers = (info.pid, info.started, info.heartbeat, info.ttl)
        if not all(isinstance(x, str) for x in (info.token, info.owner, info.host)) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in numbers
        ):
            raise ValueError("the lease has wrongly typed fields")
        return info

    def describe(self, now: float) -> str:
        job = f", job {self.job_id}" if self.job_id else ""
        return (
            f"{self.owner}@{self.host} (pid {self.pid}{job}), last heartbeat {now - self.heartbeat:.0f} s ago, "
            f"TTL {self.ttl:.0f} s"
        )

    @property
    def started_stamp(self) -> str:
        """The lease's start in the attempt-id time format, to compare with attempt folders."""
        return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.started))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _job_id() -> str | None:
    return os.environ.get("RAY_JOB_SUBMISSION_ID") or os.environ.get("SLURM_JOB_ID") or None


class _Backend:
    """Atomic create / conditional replace of one small object; ``tag`` identifies a version."""

    def read(self) -> tuple[bytes, str] | None:
        raise NotImplementedError

    def create(self, data: bytes) -> str | None:
        """Write if absent; the new tag, or None when the object exists."""
        raise NotImplementedError

    def replace(self, data: bytes, tag: str) -> str | None:
        """Write if the object is still at ``tag``; the new tag, or None when it changed."""
        raise NotImplementedError

    def delete(self, tag: str) -> None:
        raise NotImplementedError


class _LocalBackend(_Backend):
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = path + ".lock"

    def read(self) -> tuple[bytes, str] | None:
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        return data, layout.sha256_hex(data)

    def create(self, data: bytes) -> str | None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        # Under the lock: replace() and delete() wait until the content is complete.
        if not self._lock():
            return None
        try:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return None
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            return layout.sha256_hex(data)
        finally:
            self._unlock()

    def replace(self, data: bytes, tag: str) -> str | None:
        if not self._lock():
            return None
        try:
            current = self.read()
            if current is None or current[1] != tag:
                return None
            layout.put_whole(fsspec.filesystem("file"), self.path, data)
            return layout.sha256_hex(data)
        finally:
            self._unlock()

    def delete(self, tag: str) -> None:
        if not self._lock():
            return
        try:
            current = self.read()
            if current is not None and current[1] == tag:
                os.remove(self.path)
        finally:
            self._unlock()

    def _lock(self, wait: float = 5.0) -> bool:
        """A short critical section between drivers on one machine or one shared file system."""
        deadline = time.monotonic() + wait
        while True:
            try:
                os.close(os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                return True
            except FileExistsError:
                try:
                    if time.time() - os.path.getmtime(self.lock) > _LOCK_STALE:  # its holder died inside
                        os.remove(self.lock)
                        continue
                except FileNotFoundError:
                    continue
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def _unlock(self) -> None:
        try:
            os.remove(self.lock)
        except FileNotFoundError:
            pass


class _S3Backend(_Backend):
    """Conditional PUTs through s3fs's botocore client (``If-None-Match`` / ``If-Match``)."""

    def __init__(self, fs: Any, path: str, log: Callable[[str], None]) -> None:
        self.fs = fs
        self.bucket, self.key, _ = fs.split_path(path)
        self.log = log
        self.conditional = True

    def _call(self, method: str, **kwargs: Any) -> Any:
        from fsspec.asyn import sync

        return sync(self.fs.loop, self.fs._call_s3, method, Bucket=self.bucket, Key=self.key, **kwargs)

    def read(self) -> tuple[bytes, str] | None:
        try:
            response = self._call("get_object")
        except FileNotFoundError:
            return None
        from fsspec.asyn import sync

        body = response["Body"]
        data = sync(self.fs.loop, body.read)
        body.close()
        return data, response["ETag"]

    def _put(self, data: bytes, **condition: str) -> str | None:
        if not self.conditional:
            return self._put_fallback(data, condition)
        try:
            return self._call("put_object", Body=data, **condition)["ETag"]
        except FileExistsError:
            return None
        except OSError as exc:
            text = str(exc)
            if "pre-condition" in text.lower() or "precondition" in text.lower() or "conditional" in text.lower():
                return None
            if "notimplemented" in text.replace(" ", "").lower() or "not implemented" in text.lower():
                self.conditional = False
                self.log(
                    "the object store does not support conditional writes: using write-then-read-back "
                    "(two drivers started within a second of each other could both proceed)"
                )
                return self._put_fallback(data, condition)
            raise

    def _put_fallback(self, data: bytes, condition: dict[str, str]) -> str | None:
        current = self.read()
        if condition.get("IfNoneMatch") and current is not None:
            return None
        if condition.get("IfMatch") and (current is None or current[1] != condition["IfMatch"]):
            return None
        etag = self._call("put_object", Body=data)["ETag"]
        time.sleep(1.0)
        after = self.read()
        return etag if after is not None and after[0] == data else None

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def replace(self, data: bytes, tag: str) -> str | None:
        return self._put(data, IfMatch=tag)

    def delete(self, tag: str) -> None:
        current = self.read()
        if current is not None and current[1] == tag:
            self._call("delete_object")


class _FsBackend(_Backend):
    """Other fsspec stores (GCS, Azure, memory): read-compare-write, documented as best effort."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs, self.path = fs, path

    def read(self) -> tuple[bytes, str] | None:
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        return data, layout.sha256_hex(data)

    def create(self, data: bytes) -> str | None:
        if self.read() is not None:
            return None
        self.fs.pipe_file(self.path, data)
        current = self.read()
        return current[1] if current is not None and current[0] == data else None

    def replace(self, data: bytes, tag: str) -> str | None:
        current = self.read()
        if current is None or current[1] != tag:
            return None
        self.fs.pipe_file(self.path, data)
        return layout.sha256_hex(data)

    def delete(self, tag: str) -> None:
        current = self.read()
        if current is not None and current[1] == tag:
            self.fs.rm_file(self.path)


def _backend(fs: Any, root: str, log: Callable[[str], None]) -> _Backend:
    path = layout.join(root, LEASE_FILE)
    if layout.is_local(fs):
        return _LocalBackend(path)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("s3", "s3a"):
        return _S3Backend(fs, path, log)
    return _FsBackend(fs, path)


class Lease:
    """The lease on one output. Use :func:`acquire`; then ``start_heartbeat()``, and ``release()`` at the end."""

    def __init__(self, backend: _Backend, info: LeaseInfo, tag: str, *, clock: Callable[[], float] = time.time) -> None:
        self._backend = backend
        self.info = info
        self._tag = tag
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.lost: str | None = None

    def renew(self) -> bool:
        """Beat once; False (and ``lost`` set) when another driver took the lease over."""
        with self._lock:
            if self.lost:
                return False
            info = LeaseInfo(**{**asdict(self.info), "heartbeat": self._clock()})
            try:
                tag = self._backend.replace(info.to_json(), self._tag)
            except Exception:
                return True  # a storage hiccup: the next beat retries; the TTL covers several misses
            if tag is None:
                current = self._backend.read()
                holder = LeaseInfo.from_json(current[0]).describe(self._clock()) if current else "nobody"
                self.lost = f"the lease on this output was taken over (now held by {holder})"
                return False
            self.info, self._tag = info, tag
            return True

    def start_heartbeat(self) -> None:
        interval = max(0.2, self.info.ttl / 6)

        def beat() -> None:
            while not self._stop.wait(interval):
                if not self.renew():
                    return

        self._thread = threading.Thread(target=beat, name="tased-batch-lease", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise :class:`LeaseLost` when another driver took over this output."""
        if self.lost:
            raise LeaseLost(self.lost, "another driver now writes this output; let it finish and check `status`")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            if not self.lost:
                try:
                    self._backend.delete(self._tag)
                except Exception:
                    pass  # it expires after its TTL

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_lease(fs: Any, root: str) -> LeaseInfo | None:
    """The current lease of an output (None when nobody holds it)."""
    current = _backend(fs, root, lambda m: None).read()
    if current is None:
        return None
    try:
        return LeaseInfo.from_json(current[0])
    except (ValueError, TypeError, KeyError):
        return None


def acquire(
    fs: Any,
    root: str,
    *,
    ttl: float = DEFAULT_TTL,
    owner: str | None = None,
    log: Callable[[str], None] = lambda message: None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Lease:
    """Take the lease on the output at ``root``, waiting at most ``ttl`` for a silent holder.

    Raises :class:`LeaseHeld` when another driver is seen alive (its heartbeat advances).
    """
    backend = _backend(fs, root, log)
    now = clock()
    me = LeaseInfo(
        token=uuid.uuid4().hex,
        owner=owner or _user(),
        host=socket.gethostname(),
        pid=os.getpid(),
        job_id=_job_id(),
        started=now,
        heartbeat=now,
        ttl=float(ttl),
    )
    if layout.is_local(fs):
        os.makedirs(root, exist_ok=True)
    first_seen: tuple[float, float] | None = None  # (holder's heartbeat, when we first saw it)
    announced = False
    while True:
        tag = backend.create(me.to_json())
        if tag is not None:
            return Lease(backend, me, tag, clock=clock)
        current = backend.read()
        if current is None:
            continue  # released in between: try again
        data, held_tag = current
        try:
            holder = LeaseInfo.from_json(data)
        except (ValueError, TypeError, KeyError):
            holder = None
        now = clock()
        if holder is None:
            stale, why = True, "the lease object is unreadable"
        elif holder.host == me.host and not _pid_alive(holder.pid):
            stale, why = True, f"its holder {holder.describe(now)} is no longer running on this host"
        elif now - holder.heartbeat > holder.ttl:
            stale, why = True, f"its holder {holder.describe(now)} stopped beating"
        else:
            stale, why = False, ""
        if stale:
            me = LeaseInfo(**{**asdict(me), "started": now, "heartbeat": now})
            new_tag = backend.replace(me.to_json(), held_tag)
            if new_tag is not None:
                log(f"took over the lease: {why}")
                return Lease(backend, me, new_tag, clock=clock)
            continue  # someone else changed it first: look again
        assert holder is not None
        if first_seen is None:
            first_seen = (holder.heartbeat, now)
        elif holder.heartbeat > first_seen[0]:
            raise LeaseHeld(
                f"another driver is writing this output: {holder.describe(now)}",
                "wait for it to finish (`tased-batch status OUTPUT`), stop it, or write to another OUTPUT",
            )
        if not announced:
            wait = max(0.0, holder.heartbeat + holder.ttl - now)
            log(
                f"the output is leased by {holder.describe(now)}; waiting up to {wait:.0f} s to see whether it is "
                "alive (a crashed driver's lease expires after its TTL)"
            )
            announced = True
        sleep(min(1.0, max(0.05, holder.ttl / 12)))


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:
        return "unknown"
