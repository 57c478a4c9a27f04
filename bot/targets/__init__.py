"""Rollout targets: where a model version is made to serve, behind one small interface.

- :mod:`modelherd.targets.kubernetes`: server-side apply of the rendered KServe ``InferenceService``
  (or ``Deployment`` + ``Service``) with the official ``kubernetes`` client; readiness from the
  object's status.
- :mod:`modelherd.targets.mlflow_alias`: moves a registry alias (e.g. ``production``) to the version,
  for serving stacks that follow aliases.

A decommission (the manifest's environment was deleted) calls ``remove`` and then polls ``absent``
the way a rollout polls ``health``.

Every method is idempotent: the rollout engine may call it again after a crash.

A target that can also list what modelherd manages in a namespace implements :class:`ListsManaged`
(the ``kubernetes`` target does); drift uses it to report orphans, and skips targets that cannot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from modelherd.manifest import Deployment
from modelherd.registry import ModelVersionInfo


class TargetError(Exception):
    """The target could not be reached or refused the request (retried; reported if it persists)."""


class Readiness(StrEnum):
    READY = "ready"              # serving the version with the requested traffic
    PROGRESSING = "progressing"  # still rolling out: ask again later
    FAILED = "failed"            # will not become ready without a change (failed load, invalid spec)


@dataclass(frozen=True)
class Health:
    state: Readiness
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class Target(Protocol):
    kind: str

    def apply(self, dep: Deployment, version: ModelVersionInfo, *, canary_percent: int | None = None,
              stable: ModelVersionInfo | None = None) -> None:
        """Make ``dep`` serve ``version`` (``canary_percent`` of traffic while a canary step runs)."""
        ...

    def health(self, dep: Deployment, version: ModelVersionInfo, *, canary_percent: int | None = None) -> Health:
        """Whether the last apply has taken effect."""
        ...

    def live(self, dep: Deployment) -> list[dict[str, Any]] | None:
        """What serves now (the live objects, or the alias's version), for drift; None if nothing."""
        ...

    def remove(self, dep: Deployment) -> None:
        """Stop serving ``dep`` (the manifest's environment was deleted)."""
        ...

    def absent(self, dep: Deployment) -> Health:
        """Whether the last ``remove`` has taken effect: READY once nothing modelherd manages for ``dep``
        is left, PROGRESSING while something still is (being deleted)."""
        ...


@runtime_checkable
class ListsManaged(Protocol):
    """A target that can list the live objects modelherd manages in one namespace (for orphans)."""

    def managed(self, namespace: str) -> list[dict[str, Any]]:
        """Every live object in ``namespace`` labelled as managed by modelherd, each with its
        ``apiVersion`` and ``kind``; raises :class:`TargetError` when the target cannot be asked."""
        ...
