"""From a field of an effective deployment back to where the author wrote it in the manifest.

Policies and gates speak of the *effective* deployment (``serving.resources.gpu``), but the value may
come from ``spec.serving`` or from the environment's override; annotations must land on the line that
set it.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelherd.checks import Position
from modelherd.loading import LoadedManifest

Path = tuple[str | int, ...]


def parse_field(field: str | Sequence[str | int] | None) -> Path | None:
    """``"serving.resources.gpu"`` → ``("serving", "resources", "gpu")``; digits become indexes; None
    for no field."""
    if field is None or field == "":
        return None
    parts = field.split(".") if isinstance(field, str) else list(field)
    return tuple(int(p) if isinstance(p, str) and p.isdigit() else p for p in parts)


def manifest_path(loaded: LoadedManifest, environment: str, path: Path) -> Path:
    """The manifest path that sets ``path`` of the effective deployment in ``environment``."""
    if not path:
        return ("spec", "environments", environment)
    head, rest = path[0], tuple(path[1:])
    env_node = ("spec", "environments", environment)
    env = loaded.manifest.spec.environments.get(environment)
    if head == "serving":
        if rest and rest[0] in ("resources", "replicas") and env is not None and getattr(env, rest[0]) is not None:
            return env_node + rest
        return ("spec", "serving") + rest
    if head == "model":
        if env is not None and env.model is not None and rest[:1] in (("version",), ("alias",)):
            return env_node + ("model",) + rest
        return ("spec", "model") + rest
    if head in ("rollout", "cluster", "namespace", "url"):
        return env_node + (head,) + rest
    if head in ("labels", "owners", "description", "name"):
        return ("metadata", head) + rest
    if head == "gates":
        return ("spec", "gates") + rest
    return path


def locator(loaded: LoadedManifest | None, environment: str):
    """A ``locate(effective_path) -> Position`` callback for checks that report on one deployment."""
    def locate(path: Path | str | None) -> Position | None:
        if loaded is None:
            return None
        if isinstance(path, str) or path is None:
            path = parse_field(path) or ()
        if path and path[0] in ("spec", "metadata"):   # already a manifest path
            return loaded.document.position_of(tuple(path))
        return loaded.document.position_of(manifest_path(loaded, environment, tuple(path)))
    return locate
