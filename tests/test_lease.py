"""The lease on an output: one live driver, refusal naming the holder, takeover after the TTL."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tased_batch.stores import layout
from tased_batch.stores.lease import LeaseHeld, acquire, read_lease


class FakeClock:
    """Time that advances only when the code sleeps (no real waiting in tests)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(params=["local", "s3"])
def output(request, tmp_path):
    if request.param == "local":
        return layout.open_fs(str(tmp_path / "out"))
    s3 = request.getfixturevalue("s3")
    return layout.open_fs(f"s3://{s3['bucket']}/out", s3["storage_options"])


def test_second_driver_refused_while_the_first_beats(output):
    fs, root = output
    first = acquire(fs, root, ttl=30, owner="alice")
    clock = FakeClock()
    clock.now = first.info.heartbeat

    def sleep(seconds: float) -> None:  # the holder keeps beating while the second one waits
        clock.sleep(seconds)
        first.renew()

    with pytest.raises(LeaseHeld) as caught:
        acquire(fs, root, ttl=30, owner="bob", clock=clock, sleep=sleep)
    assert "alice@" in str(caught.value) and "last heartbeat" in str(caught.value)
    assert clock.slept < 30
    first.release()
    assert read_lease(fs, root) is None
    second = acquire(fs, root, ttl=30, owner="bob")
    assert read_lease(fs, root).owner == "bob"
    second.release()


def test_silent_holder_taken_over_after_its_ttl_and_loses_the_lease(output):
    fs, root = output
    first = acquire(fs, root, ttl=20, owner="crashed")
    clock = FakeClock()
    clock.now = first.info.heartbeat
    messages: list[str] = []
    second = acquire(fs, root, ttl=20, owner="resume", clock=clock, sleep=clock.sleep, log=messages.append)
    assert 20 <= clock.slept <= 22  # waited the TTL, no longer
    assert any("waiting up to 20 s" in m for m in messages) and any("stopped beating" in m for m in messages)
    assert read_lease(fs, root).owner == "resume"
    assert first.renew() is False and "taken over" in first.lost  # the old holder cannot renew any more
    first.release()  # and releasing does not remove the new holder's lease
    assert read_lease(fs, root).owner == "resume"
    second.release()


def test_holder_process_gone_on_this_host_is_taken_over_at_once(tmp_path):
    fs, root = layout.open_fs(str(tmp_path / "out"))
    first = acquire(fs, root, ttl=600)
    first.info.pid = _dead_pid()
    first._tag = first._backend.replace(first.info.to_json(), first._tag)
    clock = FakeClock()
    clock.now = first.info.heartbeat
    second = acquire(fs, root, ttl=600, clock=clock, sleep=clock.sleep)
    assert clock.slept == 0
    assert read_lease(fs, root).token == second.info.token
    second.release()


def test_lease_file_is_created_exclusively(tmp_path):
    fs, root = layout.open_fs(str(tmp_path / "out"))
    lease = acquire(fs, root, ttl=60)
    assert os.path.exists(os.path.join(root, "_lease.json"))
    assert lease._backend.create(b"{}") is None  # an exclusive create never replaces a lease
    lease.release()
