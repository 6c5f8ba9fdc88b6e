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


def test_a_taken_over_runs_late_commit_is_refused_and_the_new_runs_stands(output):
    """An actor of a driver that lost its lease finishes its shard: no record, the new driver's shard stays."""
    import numpy as np

    from tased_batch import open_results
    from tased_batch.core.errors import StoreError
    from tased_batch.core.records import VideoResult
    from tased_batch.stores import open_shard_writer, read_commit

    fs, root = output
    uri = fs.unstrip_protocol(root) if not layout.is_local(fs) else root
    options = getattr(fs, "storage_options", None) if not layout.is_local(fs) else None
    run_info = {"config_fingerprint": "fp", "weights": {"sha256": "0" * 64, "kind": "custom", "uri": "w"}}

    def result(value: int) -> VideoResult:
        maps = np.full((2, 16, 32), value, np.uint8)
        return VideoResult("v", "/v.mp4", n_frames=2, frame_indices=np.arange(2), timestamps=np.arange(2.0), maps=maps)

    def writer(fence: str):
        return open_shard_writer(
            uri, "s1", store_size=(8, 16), model_size=(16, 32), run_info=run_info, storage_options=options, fence=fence
        )

    old = acquire(fs, root, ttl=20, owner="old")
    late = writer(old.info.token)
    late.write(result(10))  # the old run's actor is mid-shard when its driver stops beating
    clock = FakeClock()
    clock.now = old.info.heartbeat
    new = acquire(fs, root, ttl=20, owner="new", clock=clock, sleep=clock.sleep)
    with writer(new.info.token) as redo:
        redo.write(result(200))
        redo.commit()
    with pytest.raises(StoreError, match="no longer holds the output's lease") as caught:
        late.commit()
    assert "new@" in str(caught.value)
    assert read_commit(uri, "s1", options).attempt == redo.attempt
    assert int(open_results(uri, options).maps("v").max()) == 200
    assert not fs.exists(layout.join(root, late.prefix))  # the refused attempt removed itself
    new.release()
