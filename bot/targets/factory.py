"""Which target serves a cluster, built once per worker process from the settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelherd.settings import Settings
from modelherd.targets import Target, TargetError


class Targets:
    """``targets(kind, cluster) -> Target``: the rollout engine's target factory.

    Kubernetes clients are made lazily, one per cluster (a broken kubeconfig fails only that cluster);
    the ``mlflow-alias`` target moves aliases in the registry the manifests name (``mlflow`` by default).
    """

    def __init__(self, settings: Settings, registries: Mapping[str, Any]):
        self.settings = settings
        self.registries = registries
        self._kube: dict[str, Any] | None = None

    def kind_of(self, cluster: str) -> str:
        config = self.settings.clusters.get(cluster)
        if config is None:
            raise TargetError(f"cluster {cluster!r} is not configured on this server")
        return config.target

    def __call__(self, kind: str, cluster: str) -> Target:
        if kind == "mlflow-alias":
            from modelherd.targets.mlflow_alias import MlflowAliasTarget

            registry = self.registries.get("mlflow") or next(iter(self.registries.values()), None)
            if registry is None:
                raise TargetError("the mlflow-alias target needs a registry in the settings")
            return MlflowAliasTarget(registry)
        if kind == "kubernetes":
            if self._kube is None:
                from modelherd.targets.kubernetes import clients_from_settings

                self._kube = clients_from_settings(self.settings)
            if cluster not in self._kube:
                raise TargetError(f"cluster {cluster!r} is not configured on this server")
            return self._kube[cluster]
        raise TargetError(f"unknown target kind {kind!r}")
