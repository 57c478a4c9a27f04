"""Fixtures shared by the whole suite.  Keep each one small and documented; group them by topic.

MLflow
    ``mlflow_server_process`` (session) starts one real ``mlflow server`` per test run (see
    :mod:`tests.mlflow_server`), ``mlflow_server`` is its URL, ``mlflow_client`` an ``MlflowClient`` on it,
    and ``unique_name`` a registered-model name no other test uses.  Without the full ``mlflow`` package
    the tests that need the server are skipped with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.mlflow_server import MlflowServer, ServerDidNotStart, mlflow_server_available, start_mlflow_server

# Fixture modules shared by the suite: the fake forges, clusters and Slack, the store/queue/webhook
# fixtures, and the rollout engine's rig (``rig``).
pytest_plugins = ["pytester", "tests.fakes.github", "tests.fakes.gitlab", "tests.fakes.kube", "tests.fakes.slack",
                  "tests.fixtures_store", "tests.rollout_rig"]

_MLFLOW_STARTUP = pytest.StashKey[float]()


# -- MLflow ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mlflow_server_process(request: pytest.FixtureRequest,
                          tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One ``mlflow server`` (SQLite store, local artifact root) for the whole run; stopped at the end."""
    missing = mlflow_server_available()
    if missing:
        pytest.skip(missing)
    try:
        server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    except ServerDidNotStart as exc:
        pytest.fail(str(exc), pytrace=False)
    request.config.stash[_MLFLOW_STARTUP] = server.started_in
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(mlflow_server_process: MlflowServer) -> str:
    """The URL of the suite's MLflow server, e.g. ``http://127.0.0.1:40123``."""
    return mlflow_server_process.url


@pytest.fixture
def mlflow_client(mlflow_server: str):
    """An ``MlflowClient`` talking to the suite's server (tracking and registry)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A registered-model name unique to this test, so tests sharing one server never collide."""
    stem = request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")[:40]
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Say how long the MLflow server took to answer ``/health``, when one was started."""
    started = config.stash.get(_MLFLOW_STARTUP, None)
    if started is not None:
        terminalreporter.write_line(f"mlflow server: healthy after {started:.1f} s")
