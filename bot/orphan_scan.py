"""The orphan listing's I/O edge: ask each cluster's target what modelherd manages in each namespace.

:func:`scan_orphans` lists every ``(cluster, namespace)`` the repository's manifests use, once per
namespace (the ``kubernetes`` target makes one list call per kind there, whatever the number of models),
and hands the objects to :func:`modelherd.orphans.find_orphans`. What cannot be listed is said in
``not_listed``, never raised: a target without :class:`~modelherd.targets.ListsManaged` (``mlflow-alias``:
registry aliases carry no owner, so they are not listed), a cluster not configured here or found
unreachable, a refused list call. ``deployed``: places modelherd deployed this repository to before
(from the store), so a model deleted with its own namespace is still looked for there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from modelherd.manifest import Deployment
from modelherd.orphans import OrphanReport, Place, declared_keys, find_orphans
from modelherd.targets import ListsManaged, TargetError

log = logging.getLogger(__name__)

TargetFactory = Callable[[str, str], Any]


def scan_orphans(deployments: Iterable[Deployment], *, targets: TargetFactory, kind_of: Callable[[str], str],
                 repo: str, down: Mapping[str, str] | None = None,
                 deployed: Iterable[Place] = ()) -> OrphanReport:
    """The orphans of ``repo`` in the namespaces its ``deployments`` use (see the module notes).

    ``targets(kind, cluster)`` builds a target; ``kind_of(cluster)`` names the cluster's target kind
    (raising :class:`LookupError` when it is not configured); ``down``: clusters already found
    unreachable in this scan, with the reason, which are not asked again; ``deployed``: further
    ``(cluster, namespace)`` places this repository was deployed to."""
    deps = list(deployments)
    report = OrphanReport()
    if not repo:
        report.not_listed.append("no repository given: modelherd tells this repository's objects from "
                                 "others' by the repository they were deployed from")
        return report
    down = dict(down or {})
    live: dict[Place, list[dict[str, Any]]] = {}
    for cluster, namespaces in _places(deps, deployed).items():
        lister = _lister(cluster, targets, kind_of, down, report)
        if lister is None:
            continue
        for namespace in namespaces:
            try:
                live[(cluster, namespace)] = list(lister.managed(namespace))
            except Exception as exc:  # noqa: BLE001  # a refused or failed list must not end the scan
                if not isinstance(exc, TargetError):
                    log.exception("orphans: listing %s on %s", namespace, cluster)
                report.not_listed.append(f"cluster {cluster}, namespace {namespace}: {_one_line(exc)}")
                if isinstance(exc, TargetError) and getattr(exc, "status", 0) is None:
                    break                                  # unreachable: its other namespaces are not asked
                continue
            report.listed.append((cluster, namespace))
    report.orphans, report.unattributed = find_orphans(live, declared_keys(deps), repo)
    return report


def _places(deps: list[Deployment], deployed: Iterable[Place] = ()) -> dict[str, list[str]]:
    """The namespaces each cluster's deployments use, and those deployed to before, sorted."""
    places: dict[str, set[str]] = {}
    for cluster, namespace in [*((dep.cluster, dep.namespace) for dep in deps), *deployed]:
        places.setdefault(cluster, set()).add(namespace)
    return {cluster: sorted(places[cluster]) for cluster in sorted(places)}


def _lister(cluster: str, targets: TargetFactory, kind_of: Callable[[str], str], down: Mapping[str, str],
            report: OrphanReport) -> ListsManaged | None:
    """The cluster's target when it can list what it manages; else None, with the reason noted."""
    if cluster in down:
        report.not_listed.append(f"cluster {cluster}: not asked: it did not answer in this scan")
        return None
    try:
        kind = kind_of(cluster)
        target = targets(kind, cluster)
    except Exception as exc:  # noqa: BLE001  # not configured, or the target cannot be built
        report.not_listed.append(f"cluster {cluster}: {_one_line(exc)}")
        return None
    if not isinstance(target, ListsManaged):
        report.not_listed.append(f"cluster {cluster}: the {kind} target cannot list what modelherd manages")
        return None
    return target


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = ["scan_orphans"]
