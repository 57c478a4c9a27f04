"""Drift: what serves now compared with what the default branch says should serve (pure).

:func:`compare` takes the objects Git wants (what :func:`modelherd.render.render` produced, or the
``mlflow-alias`` target's ``{"kind": "MlflowAlias", ...}`` record) and what a target's ``live`` returned,
and says whether they differ **in the fields modelherd manages**:

* Only fields the desired objects set are compared: the live object is *projected* onto the desired
  one's shape, so what the API server adds (``status``, ``managedFields``, ``resourceVersion``,
  ``generation``, ``uid``, ``creationTimestamp``, defaulted fields) and labels or annotations that others
  put on the object never count. A normal deployment therefore shows no drift.
* Lists of named items (containers, env, ports) are matched by ``name``; named items that only the live
  object has belong to another field manager (a server-side apply would leave them) and are ignored.
  Other lists are compared whole, as an apply replaces them.
* Fields modelherd writes only during a canary (:data:`CANARY_FIELDS`) count when they are live but
  not in Git: a canary left at 10% is drift. ``canaryTrafficPercent: 100`` means the same as none.
* Resource quantities compare by amount (``0.5`` and ``500m`` are the same CPU), as the API server
  rewrites them in canonical form.
* A live object that modelherd manages (``app.kubernetes.io/managed-by: modelherd``) but that Git no
  longer renders (a stale HPA) is drift; a desired object that is not live is *missing*.

The diff is a unified diff of the compared fields, live (``-``) to Git (``+``): what applying Git would
change. :func:`drift_markdown` renders a :class:`DriftReport` as plan-style Markdown (every untrusted
string through :mod:`modelherd.escape`), :func:`drift_check` as the ``modelherd/drift`` check, and
:func:`drift_to_dict` as JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelherd.escape import md_cell, md_fence, md_html, md_text
from modelherd.forges.base import CheckReport, CheckStatus
from modelherd.orphans import OrphanReport, orphans_markdown, orphans_title, orphans_to_dict
from modelherd.render import LABEL_MANAGED_BY, LABEL_VERSION, MANAGED_BY
from modelherd.yamldiff import diff as yaml_diff

DRIFT_CHECK = "modelherd/drift"
SUMMARY_LIMIT = 60_000                 # GitHub keeps 65,535 characters of a check run's summary
KINDS = ("changed", "missing", "unknown")
ALIAS_KIND = "MlflowAlias"

#: Fields modelherd sets only while a canary runs; live without them in Git, they are drift.
CANARY_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "InferenceService": (("spec", "predictor", "canaryTrafficPercent"), ("spec", "canary")),
}
_SHOWN_METADATA = ("name", "namespace", "labels", "annotations")
_FOREIGN_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
_PATHS_IN_SUMMARY = 3
_QUANTITY_PATH = re.compile(r"\.resources\.(requests|limits)(\.|\[)")

ObjectKey = tuple[Any, Any, Any, Any]


# ------------------------------------------------------------------------------------------ report

@dataclass(frozen=True)
class DriftItem:
    """One model/environment whose live state differs from Git, or could not be compared.

    ``kind``: ``changed`` (live objects differ), ``missing`` (a desired object is not live),
    ``unknown`` (could not compare: ``summary`` holds the error). ``pinned``: a ``/rollback`` pinned the
    environment, so the difference is expected and never healed. ``healing``: a self-heal rollout was
    started for it.
    """

    model: str
    environment: str
    cluster: str
    kind: str
    summary: str
    diff: str = ""
    pinned: bool = False
    healing: bool = False
    target: str = ""                          # kubernetes | mlflow-alias ("" when not known)
    desired_version: str | None = None
    live_version: str | None = None

    @property
    def drifted(self) -> bool:
        """Live differs from Git and nobody pinned it: what makes the check fail."""
        return self.kind in ("changed", "missing") and not self.pinned


@dataclass(frozen=True)
class Skipped:
    """A model/environment that was not compared, and why (a rollout is moving it right now)."""

    model: str
    environment: str
    cluster: str
    reason: str


@dataclass
class DriftReport:
    """The result of one drift scan of one repository at one revision.

    ``checked``: model/environments whose live state was compared (in sync or not). ``errors``: what
    stopped part of the scan and belongs to no one model/environment (an unreadable manifest file, a
    broken ``.modelherd.yaml``, a failed self-heal start). ``pinned``: every pinned model/environment
    seen, drifted or not. ``orphans``: live objects of this repository that Git no longer declares (a
    warning: they change neither the check's conclusion nor the exit code).
    """

    items: list[DriftItem] = field(default_factory=list)
    checked: int = 0
    errors: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    pinned: list[tuple[str, str]] = field(default_factory=list)
    ref: str = ""
    checked_at: str = ""
    orphans: OrphanReport = field(default_factory=OrphanReport)

    @property
    def drifted(self) -> list[DriftItem]:
        return [i for i in self.items if i.drifted]

    @property
    def unknown(self) -> list[DriftItem]:
        return [i for i in self.items if i.kind == "unknown"]

    @property
    def in_sync(self) -> int:
        """Compared and equal to Git."""
        return self.checked - sum(1 for i in self.items if i.kind != "unknown")

    @property
    def complete(self) -> bool:
        """Everything in Git could be compared."""
        return not self.unknown and not self.errors

    def exit_code(self) -> int:
        """0 no drift, 1 drift, 2 nothing drifted but something could not be checked."""
        if self.drifted:
            return 1
        return 0 if self.complete else 2


# ------------------------------------------------------------------------------------ comparison

@dataclass(frozen=True)
class FieldChange:
    """One compared field that differs: where, and its live and desired values (absent: ``None``)."""

    object: str
    path: str
    live: Any
    desired: Any


@dataclass(frozen=True)
class Comparison:
    """The outcome of :func:`compare`: ``kind`` None when in sync."""

    kind: str | None
    summary: str = ""
    diff: str = ""
    changes: tuple[FieldChange, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()


def compare(desired: Iterable[Mapping[str, Any]], live: Iterable[Mapping[str, Any]] | None, *,
            live_name: str = "live", desired_name: str = "git") -> Comparison:
    """Compare the managed fields of the desired objects with the live ones (see the module notes)."""
    wanted = [dict(o) for o in desired]
    found = {object_key(o): o for o in live or ()}
    keys = {object_key(o) for o in wanted}
    before: list[dict[str, Any]] = []
    changes: list[FieldChange] = []
    missing: list[str] = []
    for obj in wanted:
        current = found.get(object_key(obj))
        if current is None:
            missing.append(object_label(obj))
            continue
        projected = managed_view(obj, current)
        before.append(projected)
        changes.extend(FieldChange(object_label(obj), p, lv, dv) for p, lv, dv in field_changes(projected, obj))
    extra = [o for k, o in found.items() if k not in keys and _ours(o)]
    before.extend(shown_object(o) for o in extra)
    extra_labels = tuple(object_label(o) for o in extra)
    if not missing and not changes and not extra:
        return Comparison(None)
    text = yaml_diff(before, wanted, before_name=live_name, after_name=desired_name)
    kind = "missing" if missing else "changed"
    summary = _summary(tuple(missing), tuple(changes), extra_labels)
    return Comparison(kind, summary, text, tuple(changes), tuple(missing), extra_labels)


def managed_view(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """``live`` reduced to the fields ``desired`` sets, plus live canary fields (:data:`CANARY_FIELDS`)."""
    view = _project(desired, live)
    for path in CANARY_FIELDS.get(str(desired.get("kind")), ()):
        value = _get(live, path)
        if value is None or _get(desired, path) is not None:
            continue
        if path[-1] == "canaryTrafficPercent" and value == 100:
            continue
        if path[-1] == "canary" and not value:
            continue
        _set(view, path, value)
    return view


def _project(desired: Any, live: Any) -> Any:
    """``live`` restricted to the shape of ``desired`` (maps by key, named lists by name)."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return live
        return {k: _project(v, live[k]) for k, v in desired.items() if k in live}
    if isinstance(desired, list):
        if not isinstance(live, list):
            return live
        if _named(desired):
            by_name = {i.get("name"): i for i in live if isinstance(i, Mapping)}
            return [_project(d, by_name[d["name"]]) for d in desired if d["name"] in by_name]
        return [_project(desired[i], v) if i < len(desired) else v for i, v in enumerate(live)]
    return live


def _named(items: list[Any]) -> bool:
    """A list of maps each carrying a distinct ``name`` (Kubernetes' map-lists keyed by name)."""
    names = [i.get("name") for i in items if isinstance(i, Mapping)]
    return bool(items) and len(names) == len(items) and None not in names and len(set(names)) == len(names)


def field_changes(live: Any, desired: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """The leaf paths where ``live`` and ``desired`` differ, as ``(path, live, desired)``."""
    if isinstance(live, Mapping) and isinstance(desired, Mapping):
        out: list[tuple[str, Any, Any]] = []
        for key in list(desired) + [k for k in live if k not in desired]:
            out.extend(field_changes(live.get(key), desired.get(key), _join(path, key)))
        return out
    if isinstance(live, list) and isinstance(desired, list) and len(live) == len(desired) \
            and not _named(desired):
        return [c for i, (a, b) in enumerate(zip(live, desired)) for c in field_changes(a, b, f"{path}[{i}]")]
    if isinstance(live, list) and isinstance(desired, list) and _named(desired):
        live_by = {i.get("name"): i for i in live if isinstance(i, Mapping)}
        out = []
        for item in desired:
            out.extend(field_changes(live_by.get(item["name"]), item, f"{path}[{item['name']}]"))
        return out
    return [] if _same_value(path, live, desired) else [(path, live, desired)]


def _same_value(path: str, live: Any, desired: Any) -> bool:
    """Equal values; resource quantities by amount (the API server writes ``0.5`` back as ``500m``)."""
    if live == desired:
        return True
    if isinstance(live, str) and isinstance(desired, str) and _QUANTITY_PATH.search(path):
        from kubernetes.utils import parse_quantity

        try:
            return parse_quantity(live) == parse_quantity(desired)
        except ValueError:
            return False
    return False


def _join(path: str, key: Any) -> str:
    """``a.b`` path notation; keys holding a dot or slash (label names) are bracketed."""
    text = str(key)
    if "." in text or "/" in text:
        return f"{path}[{text}]"
    return f"{path}.{text}" if path else text


def object_key(obj: Mapping[str, Any]) -> ObjectKey:
    """Identity of an object: apiVersion, kind, namespace, name (an alias record: kind, model, alias)."""
    if obj.get("kind") == ALIAS_KIND:
        return (None, ALIAS_KIND, obj.get("model"), obj.get("alias"))
    meta = obj.get("metadata") or {}
    return (obj.get("apiVersion"), obj.get("kind"), meta.get("namespace"), meta.get("name"))


def object_label(obj: Mapping[str, Any]) -> str:
    """``Kind namespace/name``, or ``alias <alias> of <model>``."""
    if obj.get("kind") == ALIAS_KIND:
        return f"alias {obj.get('alias')} of {obj.get('model')}"
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')} {meta.get('namespace')}/{meta.get('name')}"


def object_version(objects: Iterable[Mapping[str, Any]] | None) -> str | None:
    """The model version objects carry (the version label, or an alias record's version)."""
    for obj in objects or ():
        if obj.get("kind") == ALIAS_KIND and obj.get("version") is not None:
            return str(obj["version"])
        value = ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_VERSION)
        if value is not None:
            return str(value)
    return None


def shown_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A live object without server-populated fields, for showing one Git no longer renders."""
    out = {k: v for k, v in obj.items() if k not in ("status", "metadata")}
    meta = obj.get("metadata") or {}
    shown = {k: meta[k] for k in _SHOWN_METADATA if k in meta}
    if "annotations" in shown:
        shown["annotations"] = {k: v for k, v in shown["annotations"].items() if k not in _FOREIGN_ANNOTATIONS}
    if meta:
        out["metadata"] = shown
    return out


def _ours(obj: Mapping[str, Any]) -> bool:
    """A live object modelherd manages (an alias record always is)."""
    if obj.get("kind") == ALIAS_KIND:
        return True
    return ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY


def _summary(missing: tuple[str, ...], changes: tuple[FieldChange, ...], extra: tuple[str, ...]) -> str:
    """One line: what is missing, which version serves, which fields differ, what is left over."""
    parts = [f"{m} is missing" for m in missing]
    version = next((c for c in changes if c.path in (f"metadata.labels[{LABEL_VERSION}]", "version")), None)
    if version is not None:
        parts.append(f"serves version {_value(version.live)}, Git says {_value(version.desired)}")
    others = [c for c in changes if c is not version]
    shown = [f"{c.path} is {_value(c.live)} (Git: {_value(c.desired)})" for c in others[:_PATHS_IN_SUMMARY]]
    if len(others) > _PATHS_IN_SUMMARY:
        shown.append(f"{len(others) - _PATHS_IN_SUMMARY} more field(s)")
    if shown:
        objects = sorted({c.object for c in others})
        parts.append(f"{', '.join(objects)}: " + "; ".join(shown))
    parts.extend(f"{e} is live but not in Git" for e in extra)
    return "; ".join(parts)


def _value(value: Any) -> str:
    """A field value in a summary (absent shows as ``absent``; long values are cut)."""
    if value is None:
        return "absent"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _set(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        obj = obj.setdefault(key, {})
    obj[path[-1]] = value


# -------------------------------------------------------------------------------------- Markdown

_STATE = {"changed": "changed", "missing": "missing", "unknown": "could not check"}


def item_state(item: DriftItem) -> str:
    """The state column: the kind, and what modelherd does about it."""
    text = _STATE.get(item.kind, item.kind)
    if item.pinned:
        return f"{text} · pinned (a rollback waits for its revert PR; not healed)"
    if item.healing:
        return f"{text} · self-heal started"
    return text


def title(report: DriftReport) -> str:
    """The one-line headline of a report (the check's title), orphans appended when there are some."""
    orphans = orphans_title(report.orphans)
    return f"{_drift_title(report)}; {orphans}" if orphans else _drift_title(report)


def _drift_title(report: DriftReport) -> str:
    drifted, unknown = len(report.drifted), len(report.unknown) + len(report.errors)
    if drifted:
        healing = sum(1 for i in report.drifted if i.healing)
        text = f"{drifted} model/environment(s) drifted from Git"
        text += f" ({healing} self-healing)" if healing else ""
        return text + (f"; {unknown} could not be checked" if unknown else "")
    if unknown:
        return f"No drift found, but {unknown} could not be checked"
    return f"No drift: {report.checked} model/environment(s) match Git"


def drift_markdown(report: DriftReport, *, limit: int = SUMMARY_LIMIT) -> str:
    """Plan-style Markdown: headline, a table of differences, then each diff folded (within ``limit``)."""
    head = [f"### modelherd drift at {md_text(report.ref) or 'the default branch'}", "",
            f"**{md_text(title(report))}**"]
    facts = [f"{report.checked} compared", f"{report.in_sync} in sync"]
    if report.checked_at:
        facts.append(f"checked {md_text(report.checked_at)}")
    head.append(" · ".join(facts))
    if report.items:
        head += ["", "| Model | Environment | Cluster | State | What differs |", "|---|---|---|---|---|"]
        head += [f"| {md_cell(i.model)} | {md_cell(i.environment)} | {md_cell(i.cluster)} | "
                 f"{md_cell(item_state(i))} | {md_cell(i.summary)} |" for i in report.items]
    head += orphans_markdown(report.orphans)
    head += _notes(report)
    text = "\n".join(head) + "\n"
    for item in (i for i in report.items if i.diff):
        block = "\n" + _details(f"{item.model} · {item.environment} ({item.cluster}): {_STATE[item.kind]}",
                                md_fence(item.diff, "diff")) + "\n"
        if len(text) + len(block) > limit:
            text += "\n_Further diffs are left out: the report is too long. Run `modelherd drift` to see them._\n"
            break
        text += block
    return text


def _notes(report: DriftReport) -> list[str]:
    """Lines for pinned and skipped model/environments and for errors."""
    lines: list[str] = []
    if report.pinned:
        names = ", ".join(md_text(f"{m}/{e}") for m, e in report.pinned)
        lines += ["", f"Pinned (a rollback waits for its revert pull request; left alone): {names}"]
    if report.skipped:
        lines += ["", "Not compared:"]
        lines += [f"- {md_text(f'{s.model}/{s.environment}')} on {md_text(s.cluster)}: {md_text(s.reason)}"
                  for s in report.skipped]
    if report.errors:
        lines += ["", "Could not check:"]
        lines += [f"- {md_text(e)}" for e in report.errors]
    return lines


def _details(summary: str, body: str) -> str:
    """A folded ``<details>`` block; ``summary`` is raw text, ``body`` Markdown."""
    return f"<details><summary>{md_html(summary)}</summary>\n\n{body}\n\n</details>"


# -------------------------------------------------------------------------------- check and JSON

def drift_check(report: DriftReport) -> CheckReport:
    """The ``modelherd/drift`` check: failure when something drifted; neutral when something could not
    be checked, a pinned environment differs on purpose, or orphans were found (the title and summary
    say so; orphans are a warning, as in Argo CD); success when everything serves what Git says."""
    if report.drifted:
        conclusion = "failure"
    elif report.unknown or report.errors or report.pinned or report.orphans.orphans:
        conclusion = "neutral"
    else:
        conclusion = "success"
    return CheckReport(name=DRIFT_CHECK, status=CheckStatus.COMPLETED, conclusion=conclusion,
                       title=title(report), summary=drift_markdown(report))


def drift_to_dict(report: DriftReport) -> dict[str, Any]:
    """The report as JSON-ready data."""
    return {
        "ref": report.ref, "checked_at": report.checked_at, "checked": report.checked,
        "in_sync": report.in_sync, "drifted": len(report.drifted), "exit_code": report.exit_code(),
        "items": [_item_dict(i) for i in report.items],
        "skipped": [{"model": s.model, "environment": s.environment, "cluster": s.cluster, "reason": s.reason}
                    for s in report.skipped],
        "pinned": [{"model": m, "environment": e} for m, e in report.pinned],
        "errors": list(report.errors),
        **orphans_to_dict(report.orphans),
    }


def _item_dict(item: DriftItem) -> dict[str, Any]:
    return {"model": item.model, "environment": item.environment, "cluster": item.cluster,
            "target": item.target, "kind": item.kind, "summary": item.summary, "diff": item.diff,
            "pinned": item.pinned, "healing": item.healing, "desired_version": item.desired_version,
            "live_version": item.live_version}


__all__ = ["DRIFT_CHECK", "Comparison", "DriftItem", "DriftReport", "FieldChange", "Skipped", "compare",
           "drift_check", "drift_markdown", "drift_to_dict", "managed_view", "object_version", "title"]
