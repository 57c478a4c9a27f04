"""The ``mlflow-alias`` target: a registry alias is what serves, for serving stacks that follow aliases.

``apply`` points the alias (by default the environment's name, e.g. ``production``) at the version;
``health`` is READY once the alias points there; ``live`` is the version the alias points at; ``remove``
deletes the alias, and ``absent`` is READY once it is gone.  An alias has no traffic split, so a canary step (``canary_percent`` below 100) is
refused: the rollout engine plans a canary on this target as one 100% step and records why
(:func:`modelherd.rollout.plan_steps`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from modelherd.manifest import Deployment
from modelherd.registry import ModelVersionInfo, RegistryError, VersionNotFound
from modelherd.targets import Health, Readiness, TargetError

KIND = "mlflow-alias"


class MlflowAliasTarget:
    """:class:`~modelherd.targets.Target` over a registry with ``set_alias`` / ``delete_alias`` / ``resolve``
    (:class:`~modelherd.registry.mlflow.MlflowRegistry`).

    ``alias``: a fixed alias name, or a function of the deployment; default: the environment name.
    """

    kind = KIND

    def __init__(self, registry: Any, *, alias: str | Callable[[Deployment], str] | None = None):
        self.registry = registry
        self._alias = alias

    def alias_for(self, dep: Deployment) -> str:
        """The alias this deployment moves."""
        if self._alias is None:
            return dep.environment
        return self._alias(dep) if callable(self._alias) else self._alias

    def apply(self, dep: Deployment, version: ModelVersionInfo, *, canary_percent: int | None = None,
              stable: ModelVersionInfo | None = None) -> None:
        """Point the alias at ``version`` (idempotent); a canary percentage is refused."""
        if canary_percent is not None and canary_percent < 100:
            raise ValueError(f"the {KIND} target has no traffic split: it cannot serve {canary_percent}% of "
                             "traffic (a canary runs as one 100% step on this target)")
        with _target_errors():
            self.registry.set_alias(dep.model.name, self.alias_for(dep), version.version)

    def health(self, dep: Deployment, version: ModelVersionInfo, *, canary_percent: int | None = None) -> Health:
        """READY when the alias points at ``version``; PROGRESSING otherwise (missing or elsewhere)."""
        alias = self.alias_for(dep)
        current = self._current(dep)
        if current is None:
            return Health(Readiness.PROGRESSING, f"alias {alias} is not set", {"alias": alias})
        details = {"alias": alias, "version": current.version}
        if current.version == str(version.version):
            return Health(Readiness.READY, f"alias {alias} -> v{current.version}", details)
        return Health(Readiness.PROGRESSING, f"alias {alias} -> v{current.version}, not v{version.version}", details)

    def live(self, dep: Deployment) -> list[dict[str, Any]] | None:
        """``[{"kind": "MlflowAlias", "model", "alias", "version"}]``, or None when the alias is not set."""
        current = self._current(dep)
        if current is None:
            return None
        return [{"kind": "MlflowAlias", "model": dep.model.name, "alias": self.alias_for(dep),
                 "version": current.version}]

    def remove(self, dep: Deployment) -> None:
        """Delete the alias (nothing to do when it is already gone)."""
        if self._current(dep) is None:
            return
        with _target_errors():
            try:
                self.registry.delete_alias(dep.model.name, self.alias_for(dep))
            except VersionNotFound:
                return

    def absent(self, dep: Deployment) -> Health:
        """READY once the alias is gone; PROGRESSING while it still points at a version."""
        alias = self.alias_for(dep)
        current = self._current(dep)
        if current is None:
            return Health(Readiness.READY, f"absent: alias {alias} is not set", {"alias": alias})
        return Health(Readiness.PROGRESSING, f"alias {alias} still -> v{current.version}",
                      {"alias": alias, "version": current.version})

    def _current(self, dep: Deployment) -> ModelVersionInfo | None:
        """The version the alias points at, or None when it (or the model) does not exist."""
        with _target_errors():
            try:
                return self.registry.resolve(dep.model.name, alias=self.alias_for(dep))
            except VersionNotFound:
                return None


@contextmanager
def _target_errors() -> Iterator[None]:
    """Registry errors (unreachable, refused) become :class:`TargetError` (retried by the engine)."""
    try:
        yield
    except RegistryError as exc:
        raise TargetError(str(exc)) from exc


__all__ = ["KIND", "MlflowAliasTarget"]
