"""Live metrics for canary verification, from Prometheus (the source Flagger and Argo Rollouts use).

The server's settings name one PromQL query per metric, with ``$model``, ``$version``,
``$environment``, ``$namespace``, ``$cluster`` and ``$window`` (e.g. ``600s``) filled in for the
version being verified (``string.Template``: PromQL's own braces stay as they are)::

    metrics:
      prometheus_url: https://prometheus.monitoring:9090
      bearer_token: …                      # or bearer_token_file, or basic_auth: {username, password}
      headers: {X-Scope-OrgID: risk}       # e.g. the tenant of a Mimir / Cortex / Thanos front end
      ca_bundle: /etc/modelherd/prometheus-ca.pem
      queries:
        latency_p99_ms: >-
          histogram_quantile(0.99, sum by (le) (rate(request_latency_ms_bucket{namespace="$namespace",
          model="$model", version="$version"}[$window])))

Each query must answer **one** value, as an instant vector of one series or a scalar. Following
Flagger and Argo Rollouts, an answer that says nothing is *inconclusive*, not a pass:

* a value of ``NaN`` — what ``histogram_quantile`` or a ratio of rates gives for a version that had no
  traffic in the window — is :class:`Inconclusive` ``("NaN: no traffic?")``;
* no series at all (nothing matched the labels) is :class:`Inconclusive` ``("no data: …")``;
* several series is an error (:class:`MetricSourceError`) naming their labels: taking one of them
  silently would verify an arbitrary pod or label set;
* ``+Inf`` / ``-Inf`` are values (every request fell in the ``+Inf`` bucket: as slow as it gets).

The rollout engine fails a step on an inconclusive value unless the manifest allows that many
(``rollout.inconclusive_limit``), and on any error: an unverifiable canary never goes on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from http import HTTPStatus
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

import requests

from modelherd.manifest import Deployment
from modelherd.registry import ModelVersionInfo

if TYPE_CHECKING:  # pragma: no cover
    from modelherd.settings import MetricsSettings

SHOWN_SERIES = 3


class MetricSourceError(Exception):
    """The metric source could not be asked, answered with an error, or answered something that is not
    one value."""


@dataclass(frozen=True)
class Inconclusive:
    """A measurement that says nothing about the version (no traffic, no series): not a pass."""

    reason: str

    def __str__(self) -> str:
        return self.reason


Measurement = float | Inconclusive


def labels_text(labels: Mapping[str, str]) -> str:
    """``{pod="a", version="2"}`` as PromQL writes a series' labels (``__name__`` first)."""
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def _phrase(response: requests.Response) -> str:
    try:
        return HTTPStatus(response.status_code).phrase
    except ValueError:
        return response.reason or ""


def _sample(value: Any) -> Measurement:
    """A sample value as Prometheus writes it (``"31.5"``, ``"NaN"``, ``"+Inf"``)."""
    number = float(value)
    return Inconclusive("NaN: no traffic?") if math.isnan(number) else number


class PrometheusSource:
    """Instant queries against the Prometheus HTTP API (``/api/v1/query``).

    Authentication: ``bearer_token`` (sent as ``Authorization: Bearer``), ``bearer_token_file`` (read
    at every query, for rotated service-account tokens) or ``basic_auth`` ``(username, password)``;
    ``headers`` are sent with every query (e.g. ``X-Scope-OrgID``); ``ca_bundle`` is a PEM file of the
    CAs that sign the server's certificate. None of them ever appears in an error message.
    """

    def __init__(self, url: str, queries: Mapping[str, str], *, timeout: float = 10.0,
                 session: requests.Session | None = None, bearer_token: str | None = None,
                 bearer_token_file: str | Path | None = None, basic_auth: tuple[str, str] | None = None,
                 headers: Mapping[str, str] | None = None, ca_bundle: str | Path | None = None):
        self.url = url.rstrip("/")
        self.queries = dict(queries)
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers.update(dict(headers or {}))
        if bearer_token is not None:
            self.session.headers["Authorization"] = f"Bearer {bearer_token}"
        if basic_auth is not None:
            self.session.auth = basic_auth
        if ca_bundle is not None:
            self.session.verify = str(ca_bundle)
        # per request too: requests lets REQUESTS_CA_BUNDLE override a session's verify (psf/requests#3829)
        self.verify: str | bool = str(ca_bundle) if ca_bundle is not None else True
        self.bearer_token_file = Path(bearer_token_file) if bearer_token_file is not None else None

    @classmethod
    def from_settings(cls, settings: MetricsSettings, *, session: requests.Session | None = None) -> PrometheusSource:
        """The source the server's ``metrics`` settings describe (secrets unwrapped only here)."""
        basic = settings.basic_auth
        return cls(settings.prometheus_url, settings.queries, timeout=settings.timeout_seconds, session=session,
                   bearer_token=settings.bearer_token.get_secret_value() if settings.bearer_token else None,
                   bearer_token_file=settings.bearer_token_file,
                   basic_auth=(basic.username, basic.password.get_secret_value()) if basic else None,
                   headers={k: v.get_secret_value() for k, v in settings.headers.items()},
                   ca_bundle=settings.ca_bundle)

    def render(self, template: str, dep: Deployment, version: ModelVersionInfo, window_seconds: int) -> str:
        """A query with the deployment's facts filled in (unknown ``$names`` are left as they are)."""
        return Template(template).safe_substitute(
            model=dep.name, version=version.version, environment=dep.environment, namespace=dep.namespace,
            cluster=dep.cluster, window=f"{int(window_seconds)}s")

    def _headers(self) -> dict[str, str]:
        if self.bearer_token_file is None:
            return {}
        try:
            token = self.bearer_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise MetricSourceError(f"Prometheus bearer token file {self.bearer_token_file}: "
                                    f"{exc.strerror or exc}") from None
        return {"Authorization": f"Bearer {token}"}

    def query(self, promql: str) -> dict[str, Any]:
        """The ``data`` of an instant query's successful answer; :class:`MetricSourceError` otherwise."""
        where = f"Prometheus at {self.url}"
        try:
            response = self.session.post(f"{self.url}/api/v1/query", data={"query": promql},
                                         headers=self._headers(), timeout=self.timeout, verify=self.verify)
        except requests.RequestException as exc:
            raise MetricSourceError(f"{where}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            hint = " (check metrics.bearer_token / basic_auth / headers)" if response.status_code in (401, 403) else ""
            raise MetricSourceError(f"{where}: HTTP {response.status_code} {_phrase(response)}{hint}")
        if response.status_code != 200 or body.get("status") != "success":
            raise MetricSourceError(f"{where}: {body.get('errorType', response.status_code)}: "
                                    f"{body.get('error', response.reason)}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise MetricSourceError(f"{where}: the answer has no data")
        return data

    def value(self, name: str, promql: str) -> Measurement:
        """The one value ``promql`` answers for metric ``name`` (see the module notes)."""
        data = self.query(promql)
        kind, result = data.get("resultType"), data.get("result")
        try:
            if kind == "scalar":
                return _sample(result[1])
            if kind != "vector":
                raise MetricSourceError(f"query for {name} returned a {kind}, not an instant vector: "
                                        f"write an instant query (no [range] at the end)")
            series = list(result or [])
            if not series:
                return Inconclusive("no data: the query matched no series")
            if len(series) > 1:
                shown = ", ".join(labels_text(s.get("metric") or {}) for s in series[:SHOWN_SERIES])
                more = ", …" if len(series) > SHOWN_SERIES else ""
                raise MetricSourceError(f"query for {name} returned {len(series)} series ({shown}{more}): "
                                        f"make it return one (aggregate it, e.g. with max(...) or sum by () (...))")
            return _sample(series[0]["value"][1])
        except (TypeError, KeyError, IndexError, ValueError):
            raise MetricSourceError(f"Prometheus at {self.url}: unexpected answer to the query for {name}") from None

    def measure(self, dep: Deployment, version: ModelVersionInfo, *, canary_percent: int | None,
                window_seconds: int) -> Mapping[str, Measurement]:
        """Each configured metric the manifest gates, for ``version`` over the last ``window_seconds``;
        metrics without a query are left out (they are not live metrics)."""
        values: dict[str, Measurement] = {}
        for name in dep.gates.metrics:
            template = self.queries.get(name)
            if template is not None:
                values[name] = self.value(name, self.render(template, dep, version, window_seconds))
        return values
