"""The Airflow 3 provider with real Airflow (`dag.test()`, SQLite) against a real local Ray head's job API."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time

import pytest

_HOME = tempfile.mkdtemp(prefix="tased-airflow-")
os.environ.update(
    {
        "AIRFLOW_HOME": _HOME,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": os.path.join(_HOME, "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
)
pytest.importorskip("airflow.sdk")

from raycluster import ARGS, GOOD, make_videos, start_head  # noqa: E402

TOKEN = "tok-3f9a-very-secret"
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def airflow_db():
    from airflow.utils import db

    db.initdb()  # what `airflow db migrate` does on a fresh database


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, airflow_db):
    from runhelpers import kill_ray

    ray_tmp = tmp_path_factory.mktemp("ray")
    address = start_head(ray_tmp)
    os.environ["AIRFLOW_CONN_TASED_BATCH_RAY_DEFAULT"] = json.dumps(
        {"conn_type": "tased_batch_ray", "host": address, "password": TOKEN}
    )
    yield address
    kill_ray(ray_tmp)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("videos"))


def _dag(dag_id: str, task=None, **operator):
    """A DAG of one task (the run operator with ``operator``, or ``task()``), serialized for dag.test()."""
    import pendulum
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.sdk import DAG

    from tased_batch.integrations.airflow.operators import TasedBatchRunOperator

    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        if task is None:
            TasedBatchRunOperator(task_id="saliency", **operator)
        else:
            task()
    DagBundlesManager().sync_bundles_to_db()  # dag.test() runs serialized DAGs only
    bag = DagBag(dag_folder="/nonexistent", collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag


def _xcom(run) -> dict:
    return run.get_task_instances()[0].xcom_pull(task_ids="saliency")


def _reports(out) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "reports").glob("run-*.json"))]


def test_provider_is_listed_by_airflow():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "tased-batch" in manager.providers
    assert (
        manager.hooks["tased_batch_ray"].hook_class_name == "tased_batch.integrations.airflow.hooks.TasedBatchRayHook"
    )


def test_options_are_checked_by_the_schema_and_credentials_refused():
    from tased_batch.integrations.airflow.operators import TasedBatchRunOperator

    with pytest.raises(ValueError, match="shard_size"):
        TasedBatchRunOperator(task_id="t", output="o", options={"shard_size": 0})
    with pytest.raises(ValueError, match="sise"):
        TasedBatchRunOperator(task_id="t", output="o", options={"sise": "32x64"})
    with pytest.raises(ValueError, match="credentials") as caught:
        TasedBatchRunOperator(task_id="t", output="o", options={"storage_options": {"secret": "hunter2"}})
    assert "hunter2" not in str(caught.value)


def test_run_xcom_holds_status_and_second_run_resumes(cluster, videos, tmp_path, capfd):
    from ray.job_submission import JobSubmissionClient

    out = tmp_path / "out"
    dag = _dag("tased_remote", input=str(videos), output=str(out), options=ARGS)
    first = dag.test(logical_date=None)
    assert first.state == "success"
    status = _xcom(first)
    assert status["output"] == str(out)
    assert (status["videos_done"], status["videos_failed"], status["videos_pending"]) == (len(GOOD), 1, 0)
    assert status["shards_pending"] == 0 and sum(status["failures_by_reason"].values()) == 1
    assert _reports(out)[-1]["shards_run"] == len(GOOD) + 1

    second = dag.test(logical_date=None)
    assert second.state == "success"
    assert _xcom(second)["videos_done"] == len(GOOD)
    reports = _reports(out)
    assert len(reports) == 2 and reports[-1]["shards_run"] == 0  # resumed: nothing redone

    jobs = JobSubmissionClient(cluster).list_jobs()
    logged = capfd.readouterr()
    for text in (json.dumps(status), json.dumps([j.entrypoint for j in jobs]), logged.out, logged.err):
        assert TOKEN not in text
    assert any(str(out) in j.entrypoint for j in jobs)

    strict = _dag("tased_strict", input=str(videos), output=str(out), options=ARGS, max_failed_fraction=0.1, retries=0)
    failed = strict.test(logical_date=None)
    assert failed.state == "failed"  # 1 of 3 failed: above 10 %
    assert _reports(out)[-1]["shards_run"] == 0


def test_deferrable_run_streams_the_job_log(cluster, videos, tmp_path, capfd):
    out = tmp_path / "out"
    dag = _dag("tased_deferred", input=str(videos), output=str(out), options=ARGS, deferrable=True, poll_interval=0.5)
    run = dag.test(logical_date=None)
    assert run.state == "success"
    assert _xcom(run)["videos_done"] == len(GOOD)
    logged = capfd.readouterr()
    assert '"event": "summary"' in logged.out + logged.err  # the job's own log line, through the trigger
    assert TOKEN not in logged.out + logged.err


def test_bad_options_fail_with_the_reason(cluster, videos, tmp_path, capfd):
    dag = _dag("tased_bad", input=str(tmp_path / "missing"), output=str(tmp_path / "out"), options=ARGS, retries=0)
    run = dag.test(logical_date=None)
    assert run.state == "failed"
    logged = capfd.readouterr()
    assert "exit 2" in logged.out + logged.err


def test_on_kill_stops_the_job(cluster, videos, tmp_path):
    from ray.job_submission import JobSubmissionClient

    from tased_batch.integrations.airflow.operators import TasedBatchRunOperator

    op = TasedBatchRunOperator(
        task_id="k", input=str(videos), output=str(tmp_path / "out"), options=ARGS, poll_interval=0.2
    )
    failure: list[BaseException] = []

    def execute():
        try:
            op.execute({})
        except BaseException as e:  # noqa: BLE001
            failure.append(e)

    worker = threading.Thread(target=execute)
    worker.start()
    client = JobSubmissionClient(cluster)
    deadline = time.time() + 120
    while op._job_id is None or str(client.get_job_status(op._job_id)) not in ("RUNNING", "JobStatus.RUNNING"):
        assert time.time() < deadline and worker.is_alive()
        time.sleep(0.2)
    op.on_kill()
    worker.join(120)
    assert not worker.is_alive()
    assert str(getattr(client.get_job_status(op._job_id), "value", "")) == "STOPPED"
    assert failure and "exit" in str(failure[0])


def test_local_run_in_the_worker(videos, tmp_path, airflow_db, ray_tmp, monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    out = tmp_path / "out"
    dag = _dag("tased_local", input=str(videos), output=str(out), options=ARGS, ray_conn_id=None)
    run = dag.test(logical_date=None)
    assert run.state == "success"
    status = _xcom(run)
    assert status["videos_done"] == len(GOOD) and status["videos_failed"] == 1
    assert status["shards_pending"] == 0

    from tased_batch.integrations.airflow.sensors import TasedBatchStatusSensor

    def sensor(output, **kwargs):
        return lambda: TasedBatchStatusSensor(task_id="saliency", output=output, poke_interval=0.1, **kwargs)

    done = _dag("tased_sensor", sensor(str(out))).test(logical_date=None)
    assert done.state == "success" and _xcom(done)["videos_done"] == len(GOOD)
    strict = _dag("tased_sensor_strict", sensor(str(out), max_failed_fraction=0.1)).test(logical_date=None)
    assert strict.state == "failed"
    waiting = _dag("tased_sensor_wait", sensor(str(tmp_path / "none"), timeout=1, retries=0)).test(logical_date=None)
    assert waiting.state == "failed"  # never complete: the sensor times out


def test_workflow_example_dag_imports(airflow_db):
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag

    folder = Path(__file__).resolve().parents[2] / "workflows"
    bag = DagBag(dag_folder=str(folder / "airflow_dag.py"))
    assert bag.import_errors == {}
    dag = bag.get_dag("tased_batch_nightly")
    assert [t.task_id for t in dag.topological_sort()] == ["saliency", "maps_complete"]
    assert dag.get_task("saliency").deferrable


def test_connection_gives_address_token_header_and_tls(monkeypatch, airflow_db):
    from tased_batch.integrations.airflow.hooks import TasedBatchRayHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_RAY_TLS",
        json.dumps(
            {
                "conn_type": "tased_batch_ray",
                "host": "ray-head.internal",
                "port": 8265,
                "password": TOKEN,
                "extra": {"tls": True, "verify": "/etc/ssl/ca.pem", "headers": {"X-Team": "vision"}},
            }
        ),
    )
    address, headers, verify = TasedBatchRayHook("ray_tls").settings()
    assert address == "https://ray-head.internal:8265"
    assert headers == {"X-Team": "vision", "Authorization": f"Bearer {TOKEN}"}
    assert verify == "/etc/ssl/ca.pem"
