"""Orphans: live objects modelherd deployed for this repository that its manifests no longer declare (pure).

Argo CD calls them *orphaned resources*. A model whose manifest was deleted or renamed keeps serving,
and the drift comparison (which starts from what Git declares) never sees it. :func:`find_orphans`
takes the objects a target listed per ``(cluster, namespace)`` (:class:`modelherd.targets.ListsManaged`)
and what the manifests declare, and keeps the live objects that

* carry modelherd's label ``app.kubernetes.io/managed-by: modelherd`` (a hand-made object does not),
* carry this repository in the ``modelherd.dev/repository`` annotation (the rollout engine writes it, see
  :mod:`modelherd.render`); objects of another repository sharing the namespace are not ours, and objects
  applied before modelherd recorded the repository cannot be attributed: they are only counted
  (``unattributed``), never reported as orphans,
* and are not one of the kinds a declared model/environment serves with, under its name, in that cluster
  and namespace (a stale HPA of a declared model is drift, not an orphan).

Orphans are a warning: they do not change the drift check's conclusion or exit code, and nothing deletes
them (removing what serves is a reviewed pull request's business). :func:`orphans_markdown` renders the
section of the drift report; every string read from a cluster goes through :mod:`modelherd.escape`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelherd.escape import clip, md_cell, md_text
from modelherd.manifest import Deployment
from modelherd.render import (
    ANNOTATION_REPOSITORY,
    LABEL_ENVIRONMENT,
    LABEL_MANAGED_BY,
    LABEL_MODEL,
    LABEL_VERSION,
    MANAGED_BY,
)
from modelherd.targets.kubernetes import RUNTIME_RESOURCES

ROWS_SHOWN = 100                      # rows in the Markdown table; the rest are counted
_CELL = 120                           # characters of one untrusted value shown in a cell

Place = tuple[str, str]               # (cluster, namespace)
Key = tuple[str, str, str, str]       # (cluster, kind, namespace, name)


@dataclass(frozen=True)
class Orphan:
    """One live object of this repository that no manifest declares; model labels when it has them."""

    cluster: str
    kind: str
    namespace: str
    name: str
    model: str | None = None
    environment: str | None = None
    version: str | None = None


@dataclass
class OrphanReport:
    """The orphans found, where the targets were asked (``listed``), what could not be listed and why
    (``not_listed``), and how many of modelherd's objects carried no repository (``unattributed``)."""

    orphans: list[Orphan] = field(default_factory=list)
    listed: list[Place] = field(default_factory=list)
    not_listed: list[str] = field(default_factory=list)
    unattributed: int = 0


def declared_keys(deployments: Iterable[Deployment]) -> set[Key]:
    """Every object a declared model/environment may serve with: each kind of its runtime (an HPA too,
    rendered or not: a stale one is drift), under its name, in its cluster and namespace."""
    return {(d.cluster, r.kind, d.namespace, d.name)
            for d in deployments for r in RUNTIME_RESOURCES[d.serving.runtime]}


def find_orphans(live: Mapping[Place, Iterable[Mapping[str, Any]]], declared: set[Key],
                 repo: str) -> tuple[list[Orphan], int]:
    """The orphans among the ``live`` objects listed per place, sorted, and the number of undeclared
    objects of modelherd's that carry no repository annotation (see the module notes)."""
    orphans: list[Orphan] = []
    unattributed = 0
    for (cluster, namespace), objects in live.items():
        for obj in objects:
            meta = obj.get("metadata") or {}
            labels = meta.get("labels") or {}
            if labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
                continue
            name, kind = str(meta.get("name") or ""), str(obj.get("kind") or "")
            if (cluster, kind, namespace, name) in declared:
                continue
            owner = (meta.get("annotations") or {}).get(ANNOTATION_REPOSITORY)
            if not owner:
                unattributed += 1
                continue
            if owner != repo:
                continue
            orphans.append(Orphan(cluster, kind, str(meta.get("namespace") or namespace), name,
                                  _text(labels.get(LABEL_MODEL)), _text(labels.get(LABEL_ENVIRONMENT)),
                                  _text(labels.get(LABEL_VERSION))))
    orphans.sort(key=lambda o: (o.cluster, o.namespace, o.name, o.kind))
    return orphans, unattributed


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# -------------------------------------------------------------------------------------- Markdown

def orphans_title(report: OrphanReport) -> str:
    """A short addition to the check's title, or "" when there are none."""
    return f"{len(report.orphans)} orphaned object(s) not in Git" if report.orphans else ""


def orphans_markdown(report: OrphanReport) -> list[str]:
    """The lines of the orphans section (empty when there is nothing to say)."""
    lines: list[str] = []
    if report.orphans:
        lines += ["", f"#### Orphaned: {len(report.orphans)} live object(s) of this repository that Git no "
                      "longer declares", "",
                  "Left alone: not counted as drift and never deleted by self-heal. Delete them, or declare "
                  "them again, in a reviewed change.", "",
                  "| Kind | Namespace/name | Cluster | Model | Environment | Version |", "|---|---|---|---|---|---|"]
        lines += [f"| {_cell(o.kind)} | {_cell(f'{o.namespace}/{o.name}')} | {_cell(o.cluster)} | "
                  f"{_cell(o.model)} | {_cell(o.environment)} | {_cell(o.version)} |"
                  for o in report.orphans[:ROWS_SHOWN]]
        if len(report.orphans) > ROWS_SHOWN:
            lines += ["", f"_{len(report.orphans) - ROWS_SHOWN} more orphaned object(s) are left out; "
                          "run `modelherd drift --format json` to see them._"]
    if report.unattributed:
        lines += ["", f"{report.unattributed} object(s) labelled as managed by modelherd in these namespaces "
                      "are not declared here and carry no repository annotation (applied before modelherd "
                      "recorded it): they may be left over from this or another repository; not counted as "
                      "orphans."]
    if report.not_listed:
        lines += ["", "Orphans not listed:"]
        lines += [f"- {md_text(clip(n, 500))}" for n in report.not_listed]
    return lines


def _cell(value: str | None) -> str:
    return md_cell(clip(value, _CELL)) if value else "—"


def orphans_to_dict(report: OrphanReport) -> dict[str, Any]:
    """The orphans part of the drift JSON."""
    return {
        "orphans": [{"cluster": o.cluster, "kind": o.kind, "namespace": o.namespace, "name": o.name,
                     "model": o.model, "environment": o.environment, "version": o.version}
                    for o in report.orphans],
        "orphans_listed": [{"cluster": c, "namespace": n} for c, n in report.listed],
        "orphans_not_listed": list(report.not_listed),
        "unattributed": report.unattributed,
    }


__all__ = ["Orphan", "OrphanReport", "declared_keys", "find_orphans", "orphans_markdown", "orphans_title",
           "orphans_to_dict"]
