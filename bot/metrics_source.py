"""Live metrics for canary verification, from Prometheus (the source Flagger and Argo Rollouts use).

The server's settings name one PromQL query per metric, with ``$model``, ``$version``,
``$environment``, ``$namespace``, ``$cluster`` and ``$window`` (e.g. ``600s``) filled in for the
version being verified (``string.Template``: PromQL's own braces stay as they are)::

    metrics:
      prometheus_url: http://prometheus.monitoring:9090
      queries:
        latency_p99_ms: >-
          histogram_quantile(0.99, sum by (le) (rate(request_latency_ms_bucket{namespace="$namespace",
          model="$model", version="$version"}[$window])))

During each canary step the rollout engine measures the candidate and the stable version over the
verification window and applies the manifest's gates (absolute bounds, regression against stable,
``warn`` mode). A query with no data gives no value (noted, not failed); a Prometheus that cannot be
asked fails the step, so an unverifiable canary never goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Template

import requests

from modelherd.manifest import Deployment
from modelherd.registry import ModelVersionInfo


class MetricSourceError(Exception):
    """The metric source could not be asked or answered with an error."""


class PrometheusSource:
    def __init__(self, url: str, queries: Mapping[str, str], *, timeout: float = 10.0,
                 session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self.queries = dict(queries)
        self.timeout = timeout
        self.session = session or requests.Session()

    def render(self, template: str, dep: Deployment, version: ModelVersionInfo, window_seconds: int) -> str:
        """A query with the deployment's facts filled in (unknown ``$names`` are left as they are)."""
        return Template(template).safe_substitute(
            model=dep.name, version=version.version, environment=dep.environment, namespace=dep.namespace,
            cluster=dep.cluster, window=f"{int(window_seconds)}s")

    def query(self, promql: str) -> float | None:
        """The value of an instant query: the first sample of a vector (or a scalar); None without data."""
        try:
            response = self.session.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=self.timeout)
            data = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise MetricSourceError(f"Prometheus at {self.url}: {exc}") from None
        if response.status_code != 200 or data.get("status") != "success":
            raise MetricSourceError(f"Prometheus at {self.url}: {data.get('errorType', response.status_code)}: "
                                    f"{data.get('error', response.reason)}")
        result = data.get("data", {})
        if result.get("resultType") == "scalar":
            return float(result["result"][1])
        samples = result.get("result") or []
        return float(samples[0]["value"][1]) if samples else None

    def measure(self, dep: Deployment, version: ModelVersionInfo, *, canary_percent: int | None,
                window_seconds: int) -> Mapping[str, float]:
        """Each configured metric the manifest gates, for ``version`` over the last ``window_seconds``."""
        values: dict[str, float] = {}
        for name in dep.gates.metrics:
            template = self.queries.get(name)
            if template is None:
                continue
            value = self.query(self.render(template, dep, version, window_seconds))
            if value is not None:
                values[name] = value
        return values
