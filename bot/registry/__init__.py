"""The model registry behind a small interface; :mod:`modelherd.registry.mlflow` is the real adapter.

The core never calls a registry: the planner asks the adapter for :class:`ModelVersionInfo` records and
hands them to the pure checks and renderers as plain data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class RegistryError(Exception):
    """The registry could not answer (unreachable, timed out, refused): a check *error*, retried later."""


class VersionNotFound(Exception):
    """The registry answered: that model, version or alias does not exist (a check *failure*)."""


@dataclass(frozen=True)
class ModelVersionInfo:
    """What the registry knows about one model version, as plain data."""

    name: str
    version: str
    status: str                                   # READY | PENDING_REGISTRATION | FAILED_REGISTRATION
    storage_uri: str | None                       # real artifact location (s3://, gs://, ...), never models:/
    source: str | None = None                     # the version's source as registered
    run_id: str | None = None
    model_id: str | None = None                   # MLflow 3 logged model
    created_at: str | None = None                 # ISO 8601, UTC
    registered_by: str | None = None
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    run_name: str | None = None
    experiment_id: str | None = None
    url: str | None = None                        # link to the version in the registry UI

    def as_input(self) -> dict:
        """The policy input's view of this version."""
        return {
            "name": self.name, "version": self.version, "status": self.status,
            "storage_uri": self.storage_uri, "source": self.source, "run_id": self.run_id,
            "model_id": self.model_id, "created_at": self.created_at,
            "registered_by": self.registered_by, "tags": dict(self.tags), "aliases": list(self.aliases),
            "metrics": dict(self.metrics), "url": self.url,
        }


class Registry(Protocol):
    def resolve(self, name: str, *, version: int | None = None, alias: str | None = None) -> ModelVersionInfo:
        """Look up a version (or the version an alias points at), with metrics, tags and lineage.

        Raises :class:`VersionNotFound` when the registry says it does not exist and
        :class:`RegistryError` when the registry cannot be asked.
        """
        ...


class CachedResolver:
    """Registry look-ups for one plan or one scan, each asked once: ``resolver(ref)`` returns the version
    a manifest's ``model`` reference names, or raises the same :class:`VersionNotFound` /
    :class:`RegistryError` again (a registry not configured here is a :class:`VersionNotFound`)."""

    def __init__(self, registries: Mapping[str, Registry]):
        self.registries = registries
        self._cache: dict[tuple, ModelVersionInfo | Exception] = {}

    def __call__(self, ref: Any) -> ModelVersionInfo:
        key = (ref.registry, ref.name, ref.version, ref.alias)
        if key not in self._cache:
            registry = self.registries.get(ref.registry)
            try:
                if registry is None:
                    raise VersionNotFound(f"registry {ref.registry!r} is not configured on this server")
                self._cache[key] = registry.resolve(ref.name, version=ref.version, alias=ref.alias)
            except (RegistryError, VersionNotFound) as exc:
                self._cache[key] = exc
        value = self._cache[key]
        if isinstance(value, Exception):
            raise value
        return value

    def known(self, ref: Any) -> ModelVersionInfo | None:
        """The version already resolved for ``ref``, without asking (None when not, or when it failed)."""
        value = self._cache.get((ref.registry, ref.name, ref.version, ref.alias))
        return None if isinstance(value, Exception) else value
