"""Dagster assets with real Dagster (`materialize()`, an ephemeral instance) against a real local Ray head."""

from __future__ import annotations

import json
import os

import pytest

dg = pytest.importorskip("dagster")
pytest.importorskip("dagster_ray")

from raycluster import ARGS, GOOD, make_videos, start_head  # noqa: E402

TOKEN = "dg-token-51c2-secret"
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from runhelpers import kill_ray

    ray_tmp = tmp_path_factory.mktemp("ray")
    yield start_head(ray_tmp)
    kill_ray(ray_tmp)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("videos"))


def _resource(address: str):
    from tased_batch.integrations.dagster import TasedBatchResource

    return TasedBatchResource(address=address, ray_token=dg.EnvVar("TASED_TEST_RAY_TOKEN"))


def test_materialize_records_metadata_data_version_and_check(cluster, videos, tmp_path, monkeypatch):
    from ray.job_submission import JobSubmissionClient

    from tased_batch.integrations.common import RunStatus
    from tased_batch.integrations.dagster import saliency_asset

    monkeypatch.setenv("TASED_TEST_RAY_TOKEN", TOKEN)
    out = tmp_path / "maps"
    asset, check = saliency_asset("maps", input=str(videos), output=str(out), options=ARGS, max_failed_fraction=0.5)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([asset, check], instance=instance, resources={"tased_batch": _resource(cluster)})
    assert result.success
    mat = result.asset_materializations_for_node("maps")[0]
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert (meta["videos_done"], meta["videos_failed"], meta["videos_total"]) == (len(GOOD), 1, len(GOOD) + 1)
    assert meta["output"] == str(out) and meta["frames"] > 0 and meta["frames_per_second"] > 0
    assert sum(meta["failures_by_reason"].values()) == 1
    status = RunStatus.of(str(out))
    assert mat.tags["dagster/data_version"] == status.config_fingerprint
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.metadata["videos_failed"].value == 1

    again = dg.materialize([asset, check], instance=instance, resources={"tased_batch": _resource(cluster)})
    meta2 = {k: v.value for k, v in again.asset_materializations_for_node("maps")[0].metadata.items()}
    assert meta2["shards_run"] == 0 and meta2["videos_done"] == len(GOOD)  # resumed, nothing redone
    assert again.asset_materializations_for_node("maps")[0].tags["dagster/data_version"] == status.config_fingerprint

    jobs = JobSubmissionClient(cluster).list_jobs()
    records = [str(e) for e in instance.all_logs(result.run_id)] + [str(e) for e in instance.all_logs(again.run_id)]
    for text in (json.dumps(meta), json.dumps([(j.entrypoint, j.runtime_env) for j in jobs]), *records):
        assert TOKEN not in text


def test_partition_check_fails_above_the_threshold(cluster, videos, tmp_path, monkeypatch):
    from tased_batch.integrations.dagster import saliency_asset

    monkeypatch.setenv("TASED_TEST_RAY_TOKEN", TOKEN)
    good = tmp_path / "good"
    good.mkdir()
    os.link(videos / f"{GOOD[0]}.mp4", good / "a.mp4")
    asset, check = saliency_asset(
        "parts", output=str(tmp_path / "maps"), options=ARGS, partitions={"all": str(videos), "good": str(good)}
    )
    result = dg.materialize(
        [asset, check],
        instance=dg.DagsterInstance.ephemeral(),
        partition_key="all",
        resources={"tased_batch": _resource(cluster)},
    )
    assert result.success  # the check is not blocking: the maps are there, the check says they are not all good
    mat = result.asset_materializations_for_node("parts")[0]
    assert mat.partition == "all" and mat.metadata["output"].value == str(tmp_path / "maps" / "all")
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.metadata["failed_fraction"].value > 0


def test_secrets_in_options_are_refused():
    from tased_batch.core.errors import ConfigError
    from tased_batch.integrations.dagster import saliency_asset

    with pytest.raises(ConfigError, match="credentials"):
        saliency_asset("x", input="in", output="out", options={"storage_options": {"key": "AKIA", "secret": "s"}})


def test_workflow_example_defines_the_asset_and_its_check():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "workflows" / "dagster_defs.py"
    spec = importlib.util.spec_from_file_location("dagster_defs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    defs = module.defs
    defs.resolve_all_job_defs()  # every resource the asset and the check need is there
    assert defs.resolve_assets_def("upload_saliency").partitions_def.get_partition_keys() == ["2026-01", "2026-02"]
    assert len(list(defs.resolve_asset_graph().asset_check_keys)) == 1
