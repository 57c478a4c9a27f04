"""MlflowRegistry against a real MLflow server (seeded through MLflow's own API), plus its pure helpers."""

from __future__ import annotations

import http.server
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from modelherd.registry import RegistryError, VersionNotFound
from modelherd.registry.mlflow import (
    MlflowRegistry,
    failure_cause,
    http_limit_env,
    http_limits,
    iso_utc,
    logged_model_id,
    merge_metrics,
    redact_uri,
    register_version,
    serving_uri,
    storage_problem,
    version_url,
)
from modelherd.settings import MlflowRegistryConfig
from tests.mlflow_server import free_port

# -- helpers ----------------------------------------------------------------------------------------


def registry(url: str, **config) -> MlflowRegistry:
    return MlflowRegistry(MlflowRegistryConfig(tracking_uri=url, **config))


def logged_model_version(client, name: str, *, run_metrics: dict, model_metrics: dict,
                         artifact_location: str | None = None):
    """A run, an MLflow 3 logged model with its own metrics, and a version registered from it."""
    from mlflow.entities import Metric

    experiment = client.create_experiment(f"exp-{name}", artifact_location=artifact_location)
    run = client.create_run(experiment, run_name=f"train-{name}")
    now = int(time.time() * 1000)
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in run_metrics.items()])
    model = client.create_logged_model(experiment, name=name, source_run_id=run.info.run_id)
    client.log_batch(run.info.run_id, metrics=[
        Metric(k, v, now, 0, model_id=model.model_id) for k, v in model_metrics.items()])
    client.create_registered_model(name)
    mv = client.create_model_version(name, f"models:/{model.model_id}", run_id=run.info.run_id,
                                     model_id=model.model_id, await_creation_for=0)
    return mv, model, run


def set_status(db_path, name: str, version: str, status: str) -> None:
    """Put a version in a status the public API cannot produce on a SQL store (it creates READY)."""
    with sqlite3.connect(db_path) as db:
        changed = db.execute("UPDATE model_versions SET status = ? WHERE name = ? AND version = ?",
                             (status, name, int(version))).rowcount
    assert changed == 1


@contextmanager
def stub_server(handler_body) -> Iterator[tuple[str, list[float]]]:
    """An HTTP server on 127.0.0.1 whose every request runs ``handler_body(handler)``; yields its URL and
    the arrival times of the requests it got."""
    hits: list[float] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            hits.append(time.monotonic())
            handler_body(self)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def answer_503(handler) -> None:
    handler.send_response(503)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def answer_slowly(handler) -> None:
    time.sleep(3)
    try:
        answer_503(handler)
    except OSError:
        pass


# -- resolve against a real server ---------------------------------------------------------------------


@pytest.mark.mlflow
def test_resolve_by_version_with_run_metrics_tags_and_lineage(mlflow_server, mlflow_client, unique_name):
    register_version(mlflow_client, unique_name, metrics={"auc": 0.91}, source="s3://models/old")
    mv = register_version(mlflow_client, unique_name, metrics={"auc": 0.95, "latency_p95": 38.0},
                          tags={"team": "risk", "dataset": "2026-11"}, description="retrained",
                          run_name="nightly-42")

    info = registry(mlflow_server, ui_url="http://mlflow.example/").resolve(unique_name, version=2)

    assert (info.name, info.version, info.status) == (unique_name, "2", "READY")
    assert info.metrics == {"auc": 0.95, "latency_p95": 38.0}
    assert info.tags == {"team": "risk", "dataset": "2026-11"}
    assert info.description == "retrained"
    assert info.storage_uri == info.source == f"s3://models/{unique_name}/2"
    assert info.run_id == mv.run_id and info.run_name == "nightly-42"
    run = mlflow_client.get_run(mv.run_id)
    assert info.experiment_id == run.info.experiment_id
    assert info.created_at == iso_utc(mv.creation_timestamp) and info.created_at.endswith("Z")
    assert info.model_id is None and info.aliases == ()
    assert info.url == f"http://mlflow.example/#/models/{unique_name}/versions/2"


@pytest.mark.mlflow
def test_resolve_by_alias_gives_the_version_and_its_aliases(mlflow_server, mlflow_client, unique_name):
    register_version(mlflow_client, unique_name, metrics={"auc": 0.9}, aliases=["champion"])
    register_version(mlflow_client, unique_name, metrics={"auc": 0.93}, aliases=["challenger", "staging"])

    reg = registry(mlflow_server)
    assert reg.resolve(unique_name, alias="champion").version == "1"
    challenger = reg.resolve(unique_name, alias="challenger")
    assert challenger.version == "2"
    assert challenger.aliases == ("challenger", "staging")
    assert challenger.metrics == {"auc": 0.93}


@pytest.mark.mlflow
def test_logged_model_metrics_merge_and_win_over_the_run(mlflow_server, mlflow_client, unique_name):
    mv, model, run = logged_model_version(
        mlflow_client, unique_name, run_metrics={"auc": 0.90, "loss": 0.3},
        model_metrics={"auc": 0.94, "latency_p95": 41.0},
        artifact_location=f"s3://bucket/experiments/{unique_name}")

    info = registry(mlflow_server).resolve(unique_name, version=int(mv.version))

    assert info.metrics == {"auc": 0.94, "loss": 0.3, "latency_p95": 41.0}
    # the OSS SQL store drops model_id from the version; the adapter recovers it from the models:/ source
    assert info.model_id == model.model_id
    assert info.source == f"models:/{model.model_id}"
    assert info.storage_uri == model.artifact_location
    assert info.storage_uri.startswith(f"s3://bucket/experiments/{unique_name}/")
    assert info.run_id == run.info.run_id


@pytest.mark.mlflow
def test_artifacts_on_the_tracking_servers_disk_are_not_a_storage_uri(mlflow_server, mlflow_client,
                                                                       unique_name):
    mv, model, _ = logged_model_version(mlflow_client, unique_name, run_metrics={},
                                        model_metrics={"auc": 0.9})

    info = registry(mlflow_server).resolve(unique_name, version=int(mv.version))

    assert info.storage_uri is None
    assert "tracking server's disk" in storage_problem(model.artifact_location)


@pytest.mark.mlflow
def test_runs_uri_source_resolves_to_the_runs_artifact_location(mlflow_server, mlflow_client, unique_name):
    experiment = mlflow_client.create_experiment(f"exp-{unique_name}",
                                                 artifact_location=f"gs://ml/{unique_name}")
    run = mlflow_client.create_run(experiment)
    mlflow_client.create_registered_model(unique_name)
    mlflow_client.create_model_version(unique_name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id,
                                       await_creation_for=0)

    info = registry(mlflow_server).resolve(unique_name, version=1)

    assert info.source == f"runs:/{run.info.run_id}/model"
    assert info.storage_uri == f"{run.info.artifact_uri}/model"
    assert info.storage_uri.startswith(f"gs://ml/{unique_name}/")


@pytest.mark.mlflow
@pytest.mark.parametrize("status", ["PENDING_REGISTRATION", "FAILED_REGISTRATION"])
def test_status_other_than_ready(mlflow_server_process, mlflow_client, unique_name, status):
    register_version(mlflow_client, unique_name, metrics={"auc": 0.9})
    set_status(mlflow_server_process.db_path, unique_name, "1", status)

    assert registry(mlflow_server_process.url).resolve(unique_name, version=1).status == status


@pytest.mark.mlflow
def test_unknown_model_version_and_alias_are_version_not_found(mlflow_server, mlflow_client, unique_name):
    register_version(mlflow_client, unique_name, metrics={"auc": 0.9}, aliases=["champion"])
    reg = registry(mlflow_server)

    with pytest.raises(VersionNotFound, match=f"no registered model named 'nope-{unique_name}'"):
        reg.resolve(f"nope-{unique_name}", version=1)
    with pytest.raises(VersionNotFound, match=f"no registered model named 'nope-{unique_name}'"):
        reg.resolve(f"nope-{unique_name}", alias="champion")
    with pytest.raises(VersionNotFound, match=f"'{unique_name}' has no version 7 in the MLflow registry at "
                                              f"{mlflow_server}"):
        reg.resolve(unique_name, version=7)
    with pytest.raises(VersionNotFound, match=f"'{unique_name}' has no alias @prod"):
        reg.resolve(unique_name, alias="prod")


@pytest.mark.mlflow
def test_a_deleted_run_leaves_the_version_resolvable(mlflow_server, mlflow_client, unique_name):
    mv = register_version(mlflow_client, unique_name, metrics={"auc": 0.9})
    mlflow_client.delete_run(mv.run_id)  # soft delete: still readable

    info = registry(mlflow_server).resolve(unique_name, version=1)

    assert info.version == "1" and info.run_id == mv.run_id


@pytest.mark.mlflow
def test_alias_and_tag_passthroughs(mlflow_server, mlflow_client, unique_name):
    register_version(mlflow_client, unique_name, metrics={"auc": 0.9})
    register_version(mlflow_client, unique_name, metrics={"auc": 0.92})
    reg = registry(mlflow_server)

    reg.set_alias(unique_name, "champion", 2)
    reg.set_alias(unique_name, "champion", 2)  # idempotent
    reg.set_version_tag(unique_name, 2, "modelherd.deployed", "prod")
    info = reg.resolve(unique_name, alias="champion")
    assert info.version == "2" and info.tags["modelherd.deployed"] == "prod"

    reg.delete_alias(unique_name, "champion")
    with pytest.raises(VersionNotFound):
        reg.resolve(unique_name, alias="champion")
    with pytest.raises(VersionNotFound):
        reg.set_alias(f"nope-{unique_name}", "champion", 1)


@pytest.mark.mlflow
def test_http_limits_leave_the_environment_as_they_found_it(mlflow_server, mlflow_client, unique_name,
                                                            monkeypatch):
    register_version(mlflow_client, unique_name, metrics={"auc": 0.9})
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)

    registry(mlflow_server, timeout_seconds=3, retries=1).resolve(unique_name, version=1)

    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ


# -- failures to reach the registry -------------------------------------------------------------------


def test_unreachable_registry_is_a_registry_error_naming_its_limits():
    url = f"http://127.0.0.1:{free_port()}"
    reg = registry(url, timeout_seconds=2)  # default retries: 2

    with pytest.raises(RegistryError, match=f"MLflow registry at {url} failed on fraud v3: connection refused "
                                            r"\(timeout 2 s, 2 retries\)"):
        reg.resolve("fraud", version=3)


def test_5xx_is_retried_as_configured_then_a_registry_error():
    """One retry configured: exactly two requests, then the error (counted, not timed: the backoff
    between them depends on urllib3's schedule and the machine's load, the number of requests does not)."""
    with stub_server(answer_503) as (url, hits):
        with pytest.raises(RegistryError, match=f"at {url} failed on fraud @champion: HTTP 503"):
            registry(url, retries=1).resolve("fraud", alias="champion")
    assert len(hits) == 2


def test_a_slow_registry_times_out_after_timeout_seconds():
    with stub_server(answer_slowly) as (url, hits):
        with pytest.raises(RegistryError, match=url) as failed:
            registry(url, timeout_seconds=1, retries=0).resolve("fraud", version=1)
        assert "timed out (timeout 1 s, 0 retries)" in str(failed.value)   # before the answer, 3 s late
    assert len(hits) == 1


def test_in_process_sqlite_registry(tmp_path):
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("alembic")
    reg = registry(f"sqlite:///{tmp_path}/registry.db")
    register_version(reg.client, "fraud", metrics={"auc": 0.9}, aliases=["champion"])

    info = reg.resolve("fraud", alias="champion")

    assert (info.version, info.metrics, info.storage_uri) == ("1", {"auc": 0.9}, "s3://models/fraud/1")
    with pytest.raises(VersionNotFound, match="has no version 2"):
        reg.resolve("fraud", version=2)


def test_resolve_needs_exactly_one_reference():
    reg = registry("http://127.0.0.1:1")
    with pytest.raises(ValueError):
        reg.resolve("fraud")
    with pytest.raises(ValueError):
        reg.resolve("fraud", version=1, alias="champion")


# -- pure helpers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri, expected", [
    ("s3://models/fraud/8", "s3://models/fraud/8"),
    ("gs://b/m", "gs://b/m"),
    ("https://host/model.tar.gz", "https://host/model.tar.gz"),
    ("pvc://models/fraud", "pvc://models/fraud"),
    ("hf://org/model", "hf://org/model"),
    ("oci://registry/model:1", "oci://registry/model:1"),
    ("wasbs://models@acct.blob.core.windows.net/fraud/8",
     "https://acct.blob.core.windows.net/models/fraud/8"),
    ("mlflow-artifacts:/1/models/m-abc/artifacts", None),
    ("models:/fraud/8", None),
    ("runs:/abc/model", None),
    ("/srv/mlflow/artifacts/1", None),
    ("file:///srv/mlflow/artifacts/1", None),
    ("dbfs:/databricks/mlflow/1", None),
    (None, None),
])
def test_serving_uri_never_gives_an_mlflow_or_local_uri(uri, expected):
    assert serving_uri(uri) == expected
    assert (storage_problem(uri) is None) == (expected is not None)


def test_storage_problem_explains_mlflow_artifacts():
    assert "--serve-artifacts" in storage_problem("mlflow-artifacts:/1/models/m-abc/artifacts")
    assert "not one a model server can fetch" in storage_problem("dbfs:/x")


def test_merge_metrics_prefers_the_logged_models_latest_step():
    from mlflow.entities import Metric

    merged = merge_metrics({"auc": 0.8, "loss": 0.4}, [
        Metric("auc", 0.93, 2000, 1), Metric("auc", 0.91, 1000, 0), Metric("f1", 0.7, 1000, 0)])
    assert merged == {"auc": 0.93, "loss": 0.4, "f1": 0.7}
    assert merge_metrics({"auc": 1}, None) == {"auc": 1.0}


def test_small_helpers():
    assert iso_utc(1795670150811) == "2026-11-26T05:15:50Z"
    assert iso_utc(None) is None and iso_utc(0) is None
    assert logged_model_id(None, "models:/m-0123456789abcdef0123456789abcdef") == \
        "m-0123456789abcdef0123456789abcdef"
    assert logged_model_id("m-1", "s3://x") == "m-1"
    assert logged_model_id(None, "models:/fraud/3") is None
    assert version_url(None, "fraud", "3") is None
    assert version_url("https://ui/", "fraud scorer", "3") == "https://ui/#/models/fraud%20scorer/versions/3"


@pytest.mark.parametrize("text, cause", [
    ("HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded (Caused by NewConnectionError("
     "'Failed to establish a new connection: [Errno 111] Connection refused'))", "connection refused"),
    ("Max retries exceeded (Caused by ResponseError('too many 502 error responses'))", "HTTP 502"),
    ("API request to endpoint /api/2.0/mlflow/registered-models/alias failed with error code 503 != 200. "
     "Response body: ''", "HTTP 503"),
    ("Read timed out. (read timeout=1)", "timed out"),
    ("Failed to resolve 'x.invalid' ([Errno -2] Name or service not known)", "host name not found"),
    ("PERMISSION_DENIED: nope", None),
])
def test_failure_cause(text, cause):
    assert failure_cause(text) == cause


def test_http_limit_env_rounds_the_timeout_up_to_whole_seconds():
    env = http_limit_env(2.5, 3)
    assert env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "3"
    assert env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"
    assert http_limit_env(0.2, 0)["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "1"


def test_http_limits_restore_on_error(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    with pytest.raises(RuntimeError):
        with http_limits(5, 1):
            assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "5"
            raise RuntimeError
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ


def test_messages_never_show_a_password_from_the_uri():
    assert redact_uri("postgresql://bot:s3cret@db:5432/mlflow") == "postgresql://bot:***@db:5432/mlflow"
    assert redact_uri("https://mlflow.example") == "https://mlflow.example"
    url = f"http://bot:s3cret@127.0.0.1:{free_port()}"
    with pytest.raises(RegistryError) as failed:
        registry(url, timeout_seconds=1, retries=0).resolve("fraud", version=1)
    assert "s3cret" not in str(failed.value) and "bot:***@127.0.0.1" in str(failed.value)
