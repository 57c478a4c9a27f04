"""The drift scan's I/O edge: desired state from Git, versions from the registries, live state from targets.

:func:`scan_repo` is the periodic entry point (the worker schedules it per repository and publishes the
``modelherd/drift`` check on the default branch's latest commit; ``modelherd drift`` runs it on a local
checkout). For every model/environment in the manifests at ``ref``:

1. A rollout in progress (``rolling``) is left alone: its objects are moving on purpose.
2. The version Git asks for is resolved in the manifest's registry (a pinned version, or the version an
   alias points at now) and rendered; the ``mlflow-alias`` target wants its alias on that version.
3. The target's ``live`` state is compared with it (:func:`modelherd.drift.compare`).
4. A model/environment pinned by ``/rollback`` (``is_pinned``) is compared but never healed, and its
   difference does not count as drift: Git catches up when the revert pull request merges.
5. Where ``.modelherd.yaml`` (read at the same ``ref``) sets ``self_heal: true`` for the environment,
   ``heal(dep, version)`` is called for each drifted model/environment.

Anything that cannot be asked (a cluster or registry down, a cluster not configured here, a version the
registry does not have) becomes an ``unknown`` item with the reason; a cluster found unreachable once is
not asked again in the same scan. Nothing here raises for one bad model/environment.

6. **Orphans**: afterwards, every ``(cluster, namespace)`` the manifests use is listed for objects this
   repository deployed that no manifest declares any more (:mod:`modelherd.orphan_scan`). They are
   reported, never healed or deleted. When a manifest or ``.modelherd.yaml`` does not load, what Git
   declares is not known, so orphans are not listed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from modelherd.checks import Severity
from modelherd.clock import Clock, rfc3339
from modelherd.drift import (
    ALIAS_KIND,
    DriftItem,
    DriftReport,
    Skipped,
    compare,
    object_version,
)
from modelherd.forges.base import RevisionReader, SourceError
from modelherd.loading import load_files
from modelherd.manifest import Deployment, ModelRef, effective
from modelherd.orphan_scan import scan_orphans
from modelherd.orphans import OrphanReport
from modelherd.registry import (
    CachedResolver,
    ModelVersionInfo,
    RegistryError,
    VersionNotFound,
)
from modelherd.render import RenderError, render
from modelherd.repoconfig import CONFIG_FILE, RepoConfig, parse_config
from modelherd.targets import Target, TargetError

log = logging.getLogger(__name__)

IsPinned = Callable[[str, str, str], bool]
Heal = Callable[[Deployment, ModelVersionInfo], Any]
TargetFactory = Callable[[str, str], Target]


# ---------------------------------------------------------------------------------- desired state

@dataclass
class DesiredState:
    """The repository's settings and every model/environment its manifests declare at one revision."""

    config: RepoConfig
    deployments: list[Deployment] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def manifest_folders(config: RepoConfig) -> list[str]:
    """The folders to list for the manifest globs: each pattern's part before its first wildcard."""
    folders = set()
    for pattern in config.manifests:
        fixed = []
        for part in pattern.split("/")[:-1]:
            if any(c in part for c in "*?["):
                break
            fixed.append(part)
        folders.add("/".join(fixed))
    return sorted(folders)


def read_desired(reader: RevisionReader, ref: str) -> DesiredState:
    """``.modelherd.yaml`` and the manifests at ``ref``, folded per environment (:func:`effective`).

    A file that does not load is reported in ``errors``; its models are not compared (what it wants is
    not known), the rest are."""
    config, findings = parse_config(reader.read_many(ref, [CONFIG_FILE]).get(CONFIG_FILE))
    state = DesiredState(config, errors=[f.one_line() for f in findings])
    paths: set[str] = set()
    for folder in manifest_folders(config):
        paths.update(p for p in _list_files(reader, ref, folder) if config.is_manifest(p))
    loaded = load_files(reader.read_many(ref, sorted(paths)))
    state.errors += [f.one_line() for f in loaded.findings if f.severity is Severity.ERROR]
    for lm in loaded.manifests:
        for environment in lm.manifest.spec.environments:
            state.deployments.append(effective(lm.manifest, environment))
    return state


def _list_files(reader: RevisionReader, ref: str, folder: str) -> list[str]:
    """``reader.list_files``; the repository root is ``""``, which a local checkout spells ``"."``."""
    if folder:
        return reader.list_files(ref, folder)
    try:
        return reader.list_files(ref, "")
    except SourceError:
        return reader.list_files(ref, ".")


# ----------------------------------------------------------------------------------------- scan

def scan_repo(reader: RevisionReader, ref: str, *, registries: Mapping[str, Any], targets: TargetFactory,
              clusters: Mapping[str, Any], is_pinned: IsPinned | None = None, heal: Heal | None = None,
              now: datetime | str, repo: str = "",
              rolling: Collection[tuple[str, str]] = (),
              deployed: Collection[tuple[str, str]] = ()) -> DriftReport:
    """Compare every model/environment declared at ``ref`` with what serves (see the module notes).

    ``targets(kind, cluster)``: the target factory (:class:`modelherd.targets.factory.Targets`);
    ``clusters``: the server's clusters (``Settings.clusters`` or ``Settings.cluster_facts()``), for each
    cluster's target kind; ``is_pinned(repo, model, environment)``; ``heal(dep, version)`` starts a
    ``self-heal`` rollout; ``rolling``: ``(model, environment)`` pairs with a rollout in progress;
    ``deployed``: ``(cluster, namespace)`` places the store says this repository was deployed to (orphans
    are looked for there too, besides the namespaces the manifests use).
    Raises :class:`~modelherd.forges.base.SourceError` only when ``ref`` itself cannot be read.
    """
    desired = read_desired(reader, ref)
    report = DriftReport(errors=list(desired.errors), ref=ref, checked_at=_timestamp(now))
    scan = _Scan(registries, targets, clusters)
    for dep in desired.deployments:
        if (dep.name, dep.environment) in rolling:
            report.skipped.append(Skipped(dep.name, dep.environment, dep.cluster, "a rollout is in progress"))
            continue
        item = _check_one(scan, dep, repo, is_pinned)
        if item is None:
            report.checked += 1
            _note_pin(report, dep, scan)
            continue
        if item.kind != "unknown":
            report.checked += 1
        if item.drifted and heal is not None and _self_heals(desired.config, dep.environment):
            item = _heal(item, dep, scan.versions.known(dep.model), heal, report)
        _note_pin(report, dep, scan)
        report.items.append(item)
    report.orphans = _orphans(desired, scan, repo, deployed)
    return report


def _orphans(desired: DesiredState, scan: _Scan, repo: str, deployed: Collection[tuple[str, str]]) -> OrphanReport:
    """The orphans of ``repo``; none listed when part of what Git declares could not be read."""
    if desired.errors:
        return OrphanReport(not_listed=["a manifest or .modelherd.yaml could not be read, so what "
                                        "Git declares is not fully known"])
    return scan_orphans(desired.deployments, targets=scan.targets, kind_of=scan.kind_of, repo=repo, down=scan.down,
                        deployed=deployed)


class _Scan:
    """Look-ups shared by one scan: versions per model reference, targets per cluster, dead clusters."""

    def __init__(self, registries: Mapping[str, Any], targets: TargetFactory, clusters: Mapping[str, Any]):
        self.targets, self.clusters = targets, clusters
        self.versions = CachedResolver(registries)
        self.down: dict[str, str] = {}
        self.pinned: set[tuple[str, str]] = set()

    def resolve(self, ref: ModelRef) -> ModelVersionInfo:
        """The version ``ref`` names, asked once per scan; raises :class:`LookupError` with the reason."""
        try:
            return self.versions(ref)
        except (RegistryError, VersionNotFound) as exc:
            raise LookupError(f"registry: {ref.name} {ref.reference}: {_one_line(exc)}") from exc

    def kind_of(self, cluster: str) -> str:
        """The target kind serving ``cluster``; raises :class:`LookupError` when it is not configured."""
        config = self.clusters.get(cluster)
        if config is None:
            raise LookupError(f"cluster {cluster!r} is not configured on this server")
        kind = config.get("target") if isinstance(config, Mapping) else getattr(config, "target", None)
        return kind or "kubernetes"


def _check_one(scan: _Scan, dep: Deployment, repo: str, is_pinned: IsPinned | None) -> DriftItem | None:
    """The drift item of one model/environment, or None when it matches Git."""
    base: dict[str, Any] = {"model": dep.name, "environment": dep.environment, "cluster": dep.cluster}
    try:
        pinned = bool(is_pinned(repo, dep.name, dep.environment)) if is_pinned is not None else False
    except Exception as exc:  # noqa: BLE001  # the pin store is down: do not compare, and above all do not heal
        return DriftItem(**base, kind="unknown", summary=f"cannot tell whether it is pinned: {_one_line(exc)}")
    if pinned:
        scan.pinned.add((dep.name, dep.environment))
        base["pinned"] = True
    if dep.cluster in scan.down:
        return DriftItem(**base, kind="unknown", summary=scan.down[dep.cluster])
    try:
        kind = scan.kind_of(dep.cluster)
        version = scan.resolve(dep.model)
        target = scan.targets(kind, dep.cluster)
        wanted = desired_objects(dep, version, target, kind)
        live = target.live(dep)
    except (LookupError, RenderError) as exc:
        return DriftItem(**base, kind="unknown", summary=_one_line(exc))
    except TargetError as exc:
        if getattr(exc, "status", 0) is None:       # the API server was not reached: not asked again
            scan.down[dep.cluster] = (f"not asked: the cluster did not answer for {dep.name}/{dep.environment}: "
                                      f"{_one_line(exc)}")
        return DriftItem(**base, kind="unknown", summary=_one_line(exc))
    except Exception as exc:  # a broken target must not end the scan of the others
        log.exception("drift: %s/%s on %s", dep.name, dep.environment, dep.cluster)
        return DriftItem(**base, kind="unknown", summary=f"{type(exc).__name__}: {_one_line(exc)}")
    found = compare(wanted, live, live_name=f"live ({dep.cluster})", desired_name="git")
    if found.kind is None:
        return None
    return DriftItem(**base, kind=found.kind, summary=found.summary, diff=found.diff, target=kind,
                     desired_version=str(version.version), live_version=object_version(live))


def desired_objects(dep: Deployment, version: ModelVersionInfo, target: Target, kind: str) -> list[dict[str, Any]]:
    """What Git wants live: the rendered objects, or for ``mlflow-alias`` the alias on the version."""
    if kind == "mlflow-alias":
        alias = target.alias_for(dep) if hasattr(target, "alias_for") else dep.environment
        return [{"kind": ALIAS_KIND, "model": dep.model.name, "alias": alias, "version": str(version.version)}]
    if not version.storage_uri:
        raise RenderError(f"version {version.version} of {version.name} has no storage location in the registry")
    return render(dep, version)


def _self_heals(config: RepoConfig, environment: str) -> bool:
    env = config.environment(environment)
    return env is not None and env.self_heal


def _heal(item: DriftItem, dep: Deployment, version: ModelVersionInfo | None, heal: Heal,
          report: DriftReport) -> DriftItem:
    """Ask for a self-heal rollout; a failure to start one is reported, not raised."""
    if version is None:
        return item
    try:
        heal(dep, version)
    except Exception as exc:  # noqa: BLE001  # reported; the scan goes on
        report.errors.append(f"{dep.name}/{dep.environment}: self-heal could not start: {_one_line(exc)}")
        return item
    return replace(item, healing=True)


def _note_pin(report: DriftReport, dep: Deployment, scan: _Scan) -> None:
    if (dep.name, dep.environment) in scan.pinned:
        report.pinned.append((dep.name, dep.environment))


def _timestamp(now: datetime | str) -> str:
    return now if isinstance(now, str) else rfc3339(now)


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ------------------------------------------------------------------------------- store adapters

def store_pins(store: Any) -> IsPinned:
    """``is_pinned`` over the store's pins (``/rollback`` pins until its revert pull request merges)."""
    return lambda repo, model, environment: store.pinned(repo, model, environment) is not None


def store_rolling(store: Any, repo: str) -> frozenset[tuple[str, str]]:
    """``(model, environment)`` pairs of ``repo`` with an unfinished rollout."""
    from modelherd.rollout import active_rollouts

    return frozenset((r.model, r.environment) for r in active_rollouts(store, repo))


def rollout_healer(store: Any, *, repo: str, kind_of: Callable[[str], str],
                   clock: Clock, enqueue: Callable[[int], Any] | None = None, sha: str | None = None) -> Heal:
    """A ``heal`` that records a ``self-heal`` rollout of the desired version (and enqueues its id).

    The version the engine last rolled out successfully is the rollout's ``stable`` side, so a heal that
    fails rolls back to it rather than removing what serves; with no such rollout (or when the last one
    decommissioned the environment) it is a create."""
    from modelherd.rollout import start_rollout, version_of

    def heal(dep: Deployment, version: ModelVersionInfo) -> int:
        last = store.last_succeeded_rollout(repo, dep.name, dep.environment, deploys_only=False)
        stable = version_of(last.candidate) if last is not None and not last.decommission else None
        rollout_id = start_rollout(store, repo=repo, dep=dep, candidate=version, stable=stable, trigger="self-heal",
                                   actor=None, sha=sha, target=kind_of(dep.cluster),
                                   reason="drift: live state differs from the default branch", clock=clock)
        if enqueue is not None:
            enqueue(rollout_id)
        return rollout_id

    return heal


def pinned_pairs(pairs: Iterable[str]) -> IsPinned:
    """``is_pinned`` from ``model/environment`` strings (the command line's ``--pinned``)."""
    wanted = {tuple(p.split("/", 1)) for p in pairs if "/" in p}
    return lambda repo, model, environment: (model, environment) in wanted


__all__ = ["DesiredState", "desired_objects", "manifest_folders", "pinned_pairs", "read_desired", "rollout_healer",
           "scan_repo", "store_pins", "store_rolling"]
