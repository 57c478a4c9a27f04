"""Canary verification with live metrics from Prometheus: a fake Prometheus over real HTTP(S) answers
instant queries the way the real HTTP API does (``/api/v1/query``: vectors whose sample values are
strings, ``"NaN"`` for a quantile of no traffic, an empty result when nothing matches, several series
when the query does not aggregate), enforces the authentication it is configured with, and the
rollout engine applies the manifest's gates to what it answers — failing safe when the answer is
inconclusive (NaN, no series), unless the manifest allows that many inconclusive measurements."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from pydantic import ValidationError
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from bench.rollouts import InstantTarget, Registry, version
from modelherd.manifest import Deployment, MetricGate, ModelRef, Rollout, Runtime, Serving
from modelherd.metrics_source import Inconclusive, MetricSourceError, PrometheusSource
from modelherd.progress import rollouts_table
from modelherd.rollout import advance, start_rollout
from modelherd.settings import MetricsSettings
from modelherd.store import Store
from tests.clock import FIXED, Clock
from tests.fakes.http import QuietHandler

LATENCY = 'histogram_quantile(0.99, rate(latency_ms_bucket{model="$model",version="$version"}[$window]))'
TOKEN = "prom-token-s3cr3t"

Series = list[tuple[dict[str, str], str]]


class FakePrometheus:
    """``GET``/``POST /api/v1/query`` as Prometheus answers it.

    ``answers`` maps a version label to the series a query for it returns (labels, sample value as
    Prometheus writes it: ``"31.5"``, ``"NaN"``, ``"+Inf"``); a version without an entry matches no
    series. A list of answers for one version is served in turn (then the last one again).
    ``auth`` / ``headers`` are what every request must carry, else 401 (as an authenticating proxy in
    front of Prometheus answers); ``tls`` serves HTTPS with a certificate of a test CA."""

    def __init__(self, *, auth: tuple[str, ...] | None = None, headers: dict[str, str] | None = None,
                 tls: trustme.CA | None = None) -> None:
        self.answers: dict[str, Series | list[Series]] = {}
        self.queries: list[str] = []
        self.seen_headers: list[dict[str, str]] = []
        self.down = False
        self.auth = auth
        self.headers = headers or {}
        ssl_context = None
        if tls is not None:
            import ssl

            ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.issue_cert("127.0.0.1").configure_cert(ssl_context)
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=QuietHandler,
                                   ssl_context=ssl_context)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def set(self, version: str, *answers: Series) -> None:
        self.answers[version] = list(answers)

    def _authorized(self, request: Request) -> bool:
        if any(request.headers.get(k) != v for k, v in self.headers.items()):
            return False
        if self.auth is None:
            return True
        got = request.headers.get("Authorization", "")
        if self.auth[0] == "bearer":
            return got == f"Bearer {self.auth[1]}"
        user, password = self.auth[1], self.auth[2]
        return got == "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        self.seen_headers.append(dict(request.headers))
        if request.path != "/api/v1/query":
            return Response("404 page not found\n", status=404, content_type="text/plain")(environ, start_response)
        if request.method not in ("GET", "POST"):
            return Response("", status=405)(environ, start_response)
        if not self._authorized(request):
            return Response("Unauthorized\n", status=401, content_type="text/plain",
                            headers={"WWW-Authenticate": 'Basic realm="prometheus"'})(environ, start_response)
        query = (request.form if request.method == "POST" else request.args).get("query")
        if not query:
            body, status = {"status": "error", "errorType": "bad_data",
                            "error": 'invalid parameter "query": 1:1: parse error: no expression found in input'}, 400
        elif self.down:
            body, status = {"status": "error", "errorType": "unavailable", "error": "TSDB closed"}, 503
        else:
            self.queries.append(query)
            result = []
            for v, answers in self.answers.items():
                if f'version="{v}"' in query:
                    series = answers.pop(0) if len(answers) > 1 else answers[0]
                    result += [{"metric": labels, "value": [1700000000.123, value]} for labels, value in series]
            body, status = {"status": "success", "data": {"resultType": "vector", "result": result}}, 200
        return Response(json.dumps(body), status=status, content_type="application/json")(environ, start_response)

    def stop(self) -> None:
        self._server.shutdown()


def one(value: str) -> Series:
    return [({"version": "x"}, value)]


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    yield fake
    fake.stop()


def gated(name: str = "fraud", *, inconclusive_limit: int = 0, canary: list[int] | None = None) -> Deployment:
    return Deployment(name=name, environment="production", cluster="c1", namespace="ml",
                      model=ModelRef(name=name, version=2), serving=Serving(runtime=Runtime.KSERVE, format="sklearn",
                                                                            deployment_mode="Knative"),
                      rollout=Rollout(canary=canary or [10, 100], verify_for="0s",
                                      inconclusive_limit=inconclusive_limit),
                      gates={"metrics": {"latency_p99_ms": MetricGate(max=40, max_regression="10%")}},
                      owners=(), labels={})


def source(fake: FakePrometheus, **kw: Any) -> PrometheusSource:
    return PrometheusSource(fake.url, {"latency_p99_ms": LATENCY}, **kw)


# -- the query and its answers ------------------------------------------------------------------------


def test_the_query_is_filled_in_and_read(prometheus):
    prometheus.set("2", one("31.5"))
    assert source(prometheus).measure(gated(), version("fraud", 2), canary_percent=10, window_seconds=600) == \
        {"latency_p99_ms": 31.5}
    assert prometheus.queries == ['histogram_quantile(0.99, rate(latency_ms_bucket{model="fraud",version="2"}[600s]))']


def test_nan_and_no_series_are_inconclusive_and_an_error_is_an_error(prometheus):
    measure = lambda: source(prometheus).measure(gated(), version("fraud", 2), canary_percent=10, window_seconds=60)  # noqa: E731
    assert measure() == {"latency_p99_ms": Inconclusive("no data: the query matched no series")}
    prometheus.set("2", one("NaN"))
    assert measure() == {"latency_p99_ms": Inconclusive("NaN: no traffic?")}
    prometheus.set("2", one("+Inf"))
    assert measure() == {"latency_p99_ms": float("inf")}    # a real answer: every request in the +Inf bucket
    prometheus.down = True
    with pytest.raises(MetricSourceError, match="TSDB closed"):
        measure()


def test_several_series_is_an_error_naming_their_labels(prometheus):
    prometheus.set("2", [({"pod": p}, "30") for p in ("a", "b", "c", "d")])
    with pytest.raises(MetricSourceError) as caught:
        source(prometheus).measure(gated(), version("fraud", 2), canary_percent=10, window_seconds=60)
    assert str(caught.value) == ('query for latency_p99_ms returned 4 series ({pod="a"}, {pod="b"}, {pod="c"}, …): '
                                 'make it return one (aggregate it, e.g. with max(...) or sum by () (...))')


# -- authentication and TLS ---------------------------------------------------------------------------


def test_bearer_token_and_extra_headers_are_sent_and_never_shown():
    fake = FakePrometheus(auth=("bearer", TOKEN), headers={"X-Scope-OrgID": "team-risk"})
    try:
        fake.set("2", one("30"))
        ok = source(fake, bearer_token=TOKEN, headers={"X-Scope-OrgID": "team-risk"})
        assert ok.measure(gated(), version("fraud", 2), canary_percent=10, window_seconds=60) == {"latency_p99_ms": 30.0}
        for wrong in (source(fake, headers={"X-Scope-OrgID": "team-risk"}),
                      source(fake, bearer_token="nope", headers={"X-Scope-OrgID": "team-risk"}),
                      source(fake, bearer_token=TOKEN)):
            with pytest.raises(MetricSourceError, match="HTTP 401 Unauthorized") as caught:
                wrong.measure(gated(), version("fraud", 2), canary_percent=10, window_seconds=60)
            assert TOKEN not in str(caught.value) and "nope" not in str(caught.value)
    finally:
        fake.stop()


def test_bearer_token_file_is_read_at_each_query(tmp_path):
    """A Kubernetes service-account token rotates: the file is read again for every query."""
    fake = FakePrometheus(auth=("bearer", "first"))
    try:
        fake.set("2", one("30"))
        path = tmp_path / "token"
        path.write_text("first\n")
        src = source(fake, bearer_token_file=path)
        assert src.measure(gated(), version("fraud", 2), canary_percent=10, window_seconds=60) == {"latency_p99_ms": 30.0}
        fake.auth = ("bearer", "second")
        path.write_text("second")
        assert src.measure(gated(), version("fraud", 2), canary_percent=10, window_seconds=60) == {"latency_p99_ms": 30.0}
    finally:
        fake.stop()


def test_basic_auth():
    fake = FakePrometheus(auth=("basic", "modelherd", "pa:ss"))
    try:
        fake.set("2", one("30"))
        assert source(fake, basic_auth=("modelherd", "pa:ss")).measure(
            gated(), version("fraud", 2), canary_percent=10, window_seconds=60) == {"latency_p99_ms": 30.0}
        with pytest.raises(MetricSourceError, match="401"):
            source(fake, basic_auth=("modelherd", "wrong")).measure(
                gated(), version("fraud", 2), canary_percent=10, window_seconds=60)
    finally:
        fake.stop()


def test_a_ca_bundle_trusts_a_private_ca(tmp_path):
    ca = trustme.CA()
    fake = FakePrometheus(tls=ca)
    try:
        fake.set("2", one("30"))
        bundle = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        assert source(fake, ca_bundle=bundle).measure(
            gated(), version("fraud", 2), canary_percent=10, window_seconds=60) == {"latency_p99_ms": 30.0}
        with pytest.raises(MetricSourceError, match="certificate verify failed"):
            source(fake).measure(gated(), version("fraud", 2), canary_percent=10, window_seconds=60)
    finally:
        fake.stop()


def test_settings_keep_secrets_out_of_logs_and_build_the_source(tmp_path):
    bundle = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    settings = MetricsSettings(prometheus_url="https://prometheus:9090", queries={"latency_p99_ms": LATENCY},
                               bearer_token=TOKEN, headers={"X-Scope-OrgID": "team-risk"}, ca_bundle=bundle)
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
    src = PrometheusSource.from_settings(settings)
    assert src.session.verify == str(bundle)
    with pytest.raises(ValidationError, match="one of bearer_token, bearer_token_file or basic_auth"):
        MetricsSettings(prometheus_url="http://p", bearer_token=TOKEN,
                        basic_auth={"username": "u", "password": "p"})
    with pytest.raises(ValidationError, match="ca_bundle"):
        MetricsSettings(prometheus_url="http://p", ca_bundle=tmp_path / "missing.pem")


# -- the rollout engine's gates on live values --------------------------------------------------------


def run(store, rid, source):
    """Advance until final, moving the test clock by each decision's wait (no real time passes)."""
    target = InstantTarget()
    for _ in range(100):
        if store.get_rollout(rid).final:
            return store.get_rollout(rid)
        decision = advance(rid, store=store, targets=lambda kind, cluster: target, registry=Registry(),
                           clock=store.now, metrics=source)
        store.clock.advance(decision.next_check_in or 0)
    raise AssertionError("did not finish")


def rollout(tmp_path, prometheus, dep: Deployment | None = None):
    store = Store.from_url(f"sqlite:///{tmp_path / 's.db'}", clock=Clock(FIXED))
    store.upgrade()
    rid = start_rollout(store, repo="acme/models", dep=dep or gated(), candidate=version("fraud", 2),
                        stable=version("fraud", 1), trigger="merge", actor="alice", clock=store.now)
    return store, run(store, rid, source(prometheus))


@pytest.mark.parametrize("candidate,state", [("33.0", "succeeded"), ("36.0", "rolled_back"), ("45.0", "rolled_back")],
                         ids=["within-gates", "regressed-over-10%", "over-max"])
def test_a_canary_is_verified_by_its_live_metrics(tmp_path, prometheus, candidate, state):
    prometheus.set("1", one("32.0"))
    prometheus.set("2", one(candidate))
    _, record = rollout(tmp_path, prometheus)
    assert record.state == state, record.error
    if state == "rolled_back":
        assert "latency_p99_ms" in (record.error or "")


def test_a_canary_without_traffic_is_inconclusive_and_fails_the_step(tmp_path, prometheus):
    """histogram_quantile over no requests is NaN: it used to pass every gate."""
    prometheus.set("1", one("32.0"))
    prometheus.set("2", one("NaN"))
    _, record = rollout(tmp_path, prometheus)
    assert record.state == "rolled_back"
    assert record.error == ("step 1 (10%) failed its gates: canary metric latency_p99_ms inconclusive "
                            "(NaN: no traffic?) 1 of 0 allowed")
    # and the pull request's "Rollouts" table says why (Markdown-escaped)
    assert r"canary metric latency\_p99\_ms inconclusive (NaN: no traffic?) 1 of 0 allowed" in rollouts_table([record])


def test_no_series_is_inconclusive_and_fails_the_step(tmp_path, prometheus):
    prometheus.set("1", one("32.0"))
    _, record = rollout(tmp_path, prometheus)
    assert record.state == "rolled_back"
    assert "canary metric latency_p99_ms inconclusive (no data: the query matched no series) 1 of 0 allowed" \
        in record.error


def test_a_stable_baseline_without_data_is_inconclusive_during_a_canary(tmp_path, prometheus):
    prometheus.set("2", one("33.0"))
    _, record = rollout(tmp_path, prometheus)
    assert record.state == "rolled_back"
    assert "canary metric latency_p99_ms inconclusive (stable baseline: no data: the query matched no series)" \
        in record.error


def test_allowed_inconclusive_measurements_wait_and_measure_again(tmp_path, prometheus):
    prometheus.set("1", one("32.0"))
    prometheus.set("2", one("NaN"), one("NaN"), one("33.0"))
    store, record = rollout(tmp_path, prometheus, gated(inconclusive_limit=2))
    assert record.state == "succeeded", record.error
    waits = [e.message for e in store.rollout_events(record.id) if e.detail.get("inconclusive")]
    assert waits == ["step 1 (10%): canary metric latency_p99_ms inconclusive (NaN: no traffic?) 1 of 2 allowed; "
                     "measuring again in 60s",
                     "step 1 (10%): canary metric latency_p99_ms inconclusive (NaN: no traffic?) 2 of 2 allowed; "
                     "measuring again in 60s"]


def test_inconclusive_measurements_count_over_the_whole_rollout(tmp_path, prometheus):
    prometheus.set("1", one("32.0"))
    prometheus.set("2", one("NaN"), one("33.0"), one("NaN"))
    _, record = rollout(tmp_path, prometheus, gated(inconclusive_limit=1, canary=[10, 50, 100]))
    assert record.state == "rolled_back"
    assert record.error == ("step 2 (50%) failed its gates: canary metric latency_p99_ms inconclusive "
                            "(NaN: no traffic?) 2 of 1 allowed")


def test_several_series_fail_the_step_with_their_labels(tmp_path, prometheus):
    prometheus.set("1", one("32.0"))
    prometheus.set("2", [({"pod": "a"}, "30"), ({"pod": "b"}, "31"), ({"pod": "c"}, "NaN")])
    _, record = rollout(tmp_path, prometheus)
    assert record.state == "rolled_back"
    assert record.error == ('step 1 (10%) failed its gates: metric source failed: query for latency_p99_ms returned '
                            '3 series ({pod="a"}, {pod="b"}, {pod="c"}): make it return one (aggregate it, e.g. '
                            'with max(...) or sum by () (...))')


def test_an_unreachable_prometheus_fails_the_step(tmp_path, prometheus):
    prometheus.down = True
    _, record = rollout(tmp_path, prometheus)
    assert record.state == "rolled_back" and "metric source failed" in record.error
