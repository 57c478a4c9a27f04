"""An in-memory registry: for tests, benchmarks and dry runs that must not depend on a server."""

from __future__ import annotations

from dataclasses import replace

from modelherd.registry import ModelVersionInfo, RegistryError, VersionNotFound


class InMemoryRegistry:
    def __init__(self, versions: list[ModelVersionInfo] = (), aliases: dict[tuple[str, str], str] | None = None):
        self.versions = {(v.name, v.version): v for v in versions}
        self.aliases = dict(aliases or {})
        self.down: str | None = None          # set to a reason to simulate an outage
        self.calls = 0

    def add(self, name: str, version: int | str, *, metrics: dict[str, float] | None = None,
            status: str = "READY", tags: dict[str, str] | None = None) -> ModelVersionInfo:
        info = ModelVersionInfo(name=name, version=str(version), status=status,
                                storage_uri=f"s3://models/{name}/{version}", source=f"s3://models/{name}/{version}",
                                run_id=f"run-{name}-{version}", metrics=dict(metrics or {}), tags=dict(tags or {}))
        self.versions[(name, str(version))] = info
        return info

    def set_alias(self, name: str, alias: str, version: int | str) -> None:
        self._up()
        self.aliases[(name, alias)] = str(version)

    def delete_alias(self, name: str, alias: str) -> None:
        self._up()
        self.aliases.pop((name, alias), None)

    def set_version_tag(self, name: str, version: int | str, key: str, value: str) -> None:
        self._up()
        info = self.versions[(name, str(version))]
        self.versions[(name, str(version))] = replace(info, tags={**info.tags, key: value})

    def _up(self) -> None:
        if self.down:
            raise RegistryError(self.down)

    def resolve(self, name: str, *, version: int | None = None, alias: str | None = None) -> ModelVersionInfo:
        self.calls += 1
        self._up()
        if alias is not None:
            if (name, alias) not in self.aliases:
                raise VersionNotFound(f"model {name!r} has no alias @{alias}")
            found = self.versions[(name, self.aliases[(name, alias)])]
            return replace(found, aliases=tuple(sorted({*found.aliases, alias})))
        if (name, str(version)) not in self.versions:
            raise VersionNotFound(f"model {name!r} has no version {version}")
        return self.versions[(name, str(version))]
