"""The executor's per-video deadline: a hang is no progress, not a long video."""

from __future__ import annotations

from tased_batch.run.executor import VideoClocks


def test_a_long_video_that_keeps_delivering_maps_is_never_overdue():
    clocks = VideoClocks(lambda shard, video: 900.0)
    clocks.started("s1", "feature-film", 0.0)
    for t in range(100, 20_001, 100):  # 5.5 hours on a slow CPU, maps every 100 s
        clocks.progressed("s1", float(t))
        assert clocks.overdue(["s1"], t + 50.0) is None
    assert clocks.running(20_050.0)


def test_a_video_without_progress_is_overdue_after_its_limit_and_then_forgotten():
    clocks = VideoClocks(lambda shard, video: 120.0 if video == "hung" else 900.0)
    clocks.started("s1", "fine", 0.0)
    clocks.started("s2", "hung", 0.0)
    clocks.progressed("s2", 50.0)  # it delivered some maps, then hung
    assert clocks.overdue(["s1", "s2"], 170.0) is None
    assert clocks.overdue(["s1", "s2"], 171.0) == ("s2", "hung", 121.0, 120.0)
    assert clocks.stop("s2") == "hung" and clocks.overdue(["s1", "s2"], 500.0) is None
    assert clocks.overdue(["s1"], 901.0) == ("s1", "fine", 901.0, 900.0)


def test_queued_shards_and_progress_of_unknown_shards_do_not_count():
    clocks = VideoClocks(lambda shard, video: 10.0)
    clocks.progressed("queued", 5.0)  # no video started yet: nothing to time
    assert clocks.overdue(["queued"], 1_000.0) is None and not clocks.running(1_000.0)
    clocks.started("s1", "v", 0.0)
    assert clocks.running(10.0) and not clocks.running(10.5)
