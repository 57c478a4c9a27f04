"""Canary verification with live metrics from Prometheus: a fake Prometheus over real HTTP answers the
instant queries, and the rollout engine applies the manifest's gates to them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from bench.rollouts import InstantTarget, Registry, version
from modelherd.manifest import Deployment, MetricGate, ModelRef, Rollout, Runtime, Serving
from modelherd.metrics_source import MetricSourceError, PrometheusSource
from modelherd.rollout import advance, start_rollout
from modelherd.store import Store
from tests.fakes.http import QuietHandler

LATENCY = 'histogram_quantile(0.99, rate(latency_ms_bucket{model="$model",version="$version"}[$window]))'


class FakePrometheus:
    """Answers ``/api/v1/query`` from a table of (version label → value); records the queries."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.queries: list[str] = []
        self.down = False
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        query = request.args.get("query", "")
        self.queries.append(query)
        if self.down:
            body, status = {"status": "error", "errorType": "unavailable", "error": "TSDB closed"}, 503
        else:
            result = [{"metric": {"version": v}, "value": [1700000000, str(x)]}
                      for v, x in self.values.items() if f'version="{v}"' in query]
            body, status = {"status": "success", "data": {"resultType": "vector", "result": result}}, 200
        return Response(json.dumps(body), status=status, content_type="application/json")(environ, start_response)

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    yield fake
    fake.stop()


def gated(name: str = "fraud") -> Deployment:
    return Deployment(name=name, environment="production", cluster="c1", namespace="ml",
                      model=ModelRef(name=name, version=2), serving=Serving(runtime=Runtime.KSERVE, format="sklearn",
                                                                            deployment_mode="Knative"),
                      rollout=Rollout(canary=[10, 100], verify_for="0s"),
                      gates={"metrics": {"latency_p99_ms": MetricGate(max=40, max_regression="10%")}},
                      owners=(), labels={})


def test_the_query_is_filled_in_and_read(prometheus):
    prometheus.values = {"2": 31.5}
    source = PrometheusSource(prometheus.url, {"latency_p99_ms": LATENCY})
    assert source.measure(gated(), version("fraud", 2), canary_percent=10, window_seconds=600) == {"latency_p99_ms": 31.5}
    assert prometheus.queries == ['histogram_quantile(0.99, rate(latency_ms_bucket{model="fraud",version="2"}[600s]))']


def test_no_data_is_no_value_and_an_error_is_an_error(prometheus):
    source = PrometheusSource(prometheus.url, {"latency_p99_ms": LATENCY})
    assert source.measure(gated(), version("fraud", 2), canary_percent=10, window_seconds=60) == {}
    prometheus.down = True
    with pytest.raises(MetricSourceError, match="TSDB closed"):
        source.measure(gated(), version("fraud", 2), canary_percent=10, window_seconds=60)


def run(store, rid, source):
    target = InstantTarget()
    for _ in range(100):
        if store.get_rollout(rid).final:
            return store.get_rollout(rid)
        advance(rid, store=store, targets=lambda kind, cluster: target, registry=Registry(), clock=store.now,
                metrics=source)
    raise AssertionError("did not finish")


@pytest.mark.parametrize("candidate,state", [(33.0, "succeeded"), (36.0, "rolled_back"), (45.0, "rolled_back")],
                         ids=["within-gates", "regressed-over-10%", "over-max"])
def test_a_canary_is_verified_by_its_live_metrics(tmp_path, prometheus, candidate, state):
    store = Store.from_url(f"sqlite:///{tmp_path / 's.db'}")
    store.upgrade()
    prometheus.values = {"1": 32.0, "2": candidate}
    rid = start_rollout(store, repo="acme/models", dep=gated(), candidate=version("fraud", 2),
                        stable=version("fraud", 1), trigger="merge", actor="alice", clock=store.now)
    record = run(store, rid, PrometheusSource(prometheus.url, {"latency_p99_ms": LATENCY}))
    assert record.state == state, record.error
    if state == "rolled_back":
        assert "latency_p99_ms" in (record.error or "")


def test_an_unreachable_prometheus_fails_the_step(tmp_path, prometheus):
    store = Store.from_url(f"sqlite:///{tmp_path / 's.db'}")
    store.upgrade()
    prometheus.down = True
    rid = start_rollout(store, repo="acme/models", dep=gated(), candidate=version("fraud", 2),
                        stable=version("fraud", 1), trigger="merge", actor="alice", clock=store.now)
    record = run(store, rid, PrometheusSource(prometheus.url, {"latency_p99_ms": LATENCY}))
    assert record.state == "rolled_back" and "metric source failed" in record.error
