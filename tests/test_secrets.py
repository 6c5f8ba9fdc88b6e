"""Secrets never leave the process: nested options, signed URLs and userinfo are scrubbed; backoff bounds."""

from __future__ import annotations

import pytest

from tased_batch.config import RunConfig
from tased_batch.core.backoff import SHARD_BASE, SHARD_CAP, backoff_delay
from tased_batch.core.errors import ConfigError
from tased_batch.core.secrets import scrub, scrub_text
from tased_batch.run.executor import check_shared_paths

SIGNED = (
    "https://bucket.s3.amazonaws.com/w.pt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAXXXX%2F2026"
    "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=600&X-Amz-SignedHeaders=host&X-Amz-Security-Token=TOKEN123"
    "&X-Amz-Signature=deadbeef42"
)


def test_nested_options_signed_urls_and_userinfo_are_scrubbed():
    options = {
        "anon": False,
        "client_kwargs": {"region_name": "eu-west-1", "aws_secret_access_key": "S3CR3T"},
        "headers": {"Authorization": "Bearer S3CR3T2", "Accept": "*/*"},
        "key": "AKIA",
        "list": [{"token": "T"}],
    }
    clean = scrub(
        {
            "storage_options": options,
            "weights": SIGNED,
            "input": "https://alice:pa55word@host/videos.csv",
            "note": f"cannot open {SIGNED}: 403",
        }
    )
    text = repr(clean)
    for secret in ("S3CR3T", "S3CR3T2", "AKIA", "deadbeef42", "TOKEN123", "AKIAXXXX", "pa55word", "'T'"):
        assert secret not in text
    assert clean["storage_options"]["client_kwargs"] == {"region_name": "eu-west-1"}
    assert clean["storage_options"]["headers"] == {"Accept": "*/*"}
    assert (
        clean["weights"].startswith("https://bucket.s3.amazonaws.com/w.pt?") and "X-Amz-Expires=600" in clean["weights"]
    )
    assert clean["input"] == "https://***@host/videos.csv"
    assert clean["note"].endswith(": 403")
    assert (
        scrub_text("https://a.blob.core.windows.net/c/v.mp4?sv=2024&sig=abc%3D")
        == "https://a.blob.core.windows.net/c/v.mp4?sv=2024&sig=***"
    )
    assert scrub_text("s3://bucket/clip [1080p].mp4") == "s3://bucket/clip [1080p].mp4"  # nothing to scrub: unchanged


def test_backoff_grows_to_minutes_with_jitter_and_a_cap():
    low = [backoff_delay(n, base=SHARD_BASE, cap=SHARD_CAP, rng=lambda: 0.0) for n in range(1, 8)]
    high = [backoff_delay(n, base=SHARD_BASE, cap=SHARD_CAP, rng=lambda: 1.0) for n in range(1, 8)]
    assert low[0] == 15 and high[0] == 30 and high[2] == 120  # 30 s, 60 s, 120 s ... jittered down to half
    assert max(high) == SHARD_CAP == 900 and all(a < b for a, b in zip(high[:5], high[1:5]))


def test_local_paths_refused_on_a_cluster_of_several_nodes():
    config = RunConfig(input="/data/videos", output="s3://bucket/maps").validate()
    check_shared_paths(config, nodes=1)  # one node: its disk is the only disk
    with pytest.raises(ConfigError, match="INPUT '/data/videos' is a local path") as caught:
        check_shared_paths(config, nodes=3)
    assert "--shared-fs" in str(caught.value)
    check_shared_paths(RunConfig(input="/nfs/videos", output="/nfs/maps", shared_fs=True).validate(), nodes=3)


def test_a_signed_source_url_is_stored_scrubbed(tmp_path):
    from tased_batch import open_results
    from tased_batch.core.records import VideoResult
    from tased_batch.stores import open_shard_writer

    source = "https://cdn.example/v.mp4?X-Amz-Signature=deadbeef42&X-Amz-Security-Token=TOKEN123"
    writer = open_shard_writer(
        str(tmp_path / "out"),
        "s0",
        model_size=(32, 64),
        store_size=(8, 16),
        run_info={"config_fingerprint": "fp", "weights": {"sha256": "0" * 64, "kind": "custom", "uri": "w"}},
    )
    writer.write(VideoResult.failed("v", source, "missing", f"{source}: 404 not found"))
    record = writer.commit()
    row = open_results(str(tmp_path / "out")).videos().to_pylist()[0]
    stored = repr(row) + repr(record)
    assert "deadbeef42" not in stored and "TOKEN123" not in stored
    assert row["source"] == "https://cdn.example/v.mp4?X-Amz-Signature=***&X-Amz-Security-Token=***"
