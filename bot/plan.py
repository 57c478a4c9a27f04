"""Plan types, and the pure step that turns base and head manifests into changes.

``changes()`` compares the manifests of the files a pull request touches, model by model and
environment by environment, with the environment overrides folded in (:func:`manifest.effective`).
A :class:`Plan` is the full result the planner assembles: each change with its registry facts,
rendered objects, diff and findings, plus one :class:`CheckResult` per concern.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelherd.checks import CheckResult, Conclusion, Finding
from modelherd.loading import LoadedManifest
from modelherd.manifest import Deployment, effective
from modelherd.registry import ModelVersionInfo


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    NOOP = "no change"


@dataclass(frozen=True)
class Change:
    """One model in one environment, before (base) and after (head) the pull request."""

    name: str
    environment: str
    action: Action
    base: Deployment | None
    head: Deployment | None
    file: str                       # the manifest file at head (or at base, for a delete)
    base_file: str | None = None
    changed_fields: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.environment)

    @property
    def deployment(self) -> Deployment:
        """The desired state after the change (the base one for a delete)."""
        dep = self.head or self.base
        assert dep is not None
        return dep


@dataclass(frozen=True)
class MetricComparison:
    """One gated metric, candidate against the version serving now."""

    metric: str
    goal: str                       # maximize | minimize
    candidate: float | None
    current: float | None
    delta: float | None
    bounds: str                     # "≥ 0.95", "≤ 40", "regression ≤ 0.01"...
    verdict: str                    # pass | fail | warn | missing | n/a
    mode: str                       # enforce | warn
    reason: str = ""


@dataclass(frozen=True)
class ApprovalRequirement:
    """An approval a policy or the repo config asks for; evaluated by the approvals feature."""

    environment: str
    count: int
    reason: str
    users: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    owners: bool = False


@dataclass
class ChangeReport:
    change: Change
    candidate: ModelVersionInfo | None = None
    current: ModelVersionInfo | None = None
    registry_error: str | None = None
    rendered_before: list[dict[str, Any]] = field(default_factory=list)
    rendered_after: list[dict[str, Any]] = field(default_factory=list)
    diff: str = ""
    metrics: list[MetricComparison] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    approvals: list[ApprovalRequirement] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return any(f.severity == "error" for f in self.findings) or self.registry_error is not None


@dataclass
class Plan:
    base_ref: str
    head_ref: str
    reports: list[ChangeReport]
    checks: dict[str, CheckResult]
    files: list[str]                       # manifest files the change touches
    file_findings: list[Finding] = field(default_factory=list)  # schema/config findings not tied to a change
    config: Any = None                     # the RepoConfig the plan was made with (the rules' revision)

    @property
    def conclusion(self) -> Conclusion:
        order = [Conclusion.ERROR, Conclusion.FAILURE, Conclusion.SUCCESS, Conclusion.NEUTRAL]
        seen = {c.conclusion for c in self.checks.values()}
        return next((c for c in order if c in seen), Conclusion.NEUTRAL)

    @property
    def has_changes(self) -> bool:
        return any(r.change.action is not Action.NOOP for r in self.reports)

    def findings(self) -> list[Finding]:
        out = list(self.file_findings)
        for r in self.reports:
            out.extend(r.findings)
        return out


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def changed_fields(base: Deployment, head: Deployment) -> tuple[str, ...]:
    """Dotted paths that differ between two effective deployments (``serving.replicas.max``...)."""
    a = _flatten(base.model_dump(mode="json"))
    b = _flatten(head.model_dump(mode="json"))
    return tuple(sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)))


def _by_key(manifests: list[LoadedManifest]) -> dict[tuple[str, str], tuple[str, Deployment]]:
    out = {}
    for lm in manifests:
        for env in lm.manifest.spec.environments:
            dep = effective(lm.manifest, env)
            out[dep.key] = (lm.file, dep)
    return out


def changes(base: list[LoadedManifest], head: list[LoadedManifest],
            order: Any = None) -> list[Change]:
    """Per model and environment: create, update, delete or no change.

    ``base`` and ``head`` are the manifests of the touched files at each revision; a manifest moved
    between files is an update (or no change), not a delete plus a create.  ``order(env)`` sorts the
    result by promotion order.
    """
    before, after = _by_key(base), _by_key(head)
    out: list[Change] = []
    for key in before.keys() | after.keys():
        b, a = before.get(key), after.get(key)
        name, env = key
        if b and a:
            fields = changed_fields(b[1], a[1])
            action = Action.UPDATE if fields else Action.NOOP
            out.append(Change(name, env, action, b[1], a[1], a[0], b[0], fields))
        elif a:
            out.append(Change(name, env, Action.CREATE, None, a[1], a[0]))
        else:
            assert b
            out.append(Change(name, env, Action.DELETE, b[1], None, b[0], b[0]))
    rank = order or (lambda env: 0)
    out.sort(key=lambda c: (c.name, rank(c.environment), c.environment))
    return out


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, StrEnum):
        return value.value
    return value


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data (``modelherd plan --format json``)."""
    data = _jsonable(plan)
    data["conclusion"] = plan.conclusion.value
    data["has_changes"] = plan.has_changes
    for finding_holder in [data, *data["reports"]]:
        for key in ("findings", "file_findings"):
            for f in finding_holder.get(key, []):
                if f.get("position"):
                    f["line"], f["column"] = f["position"]["line"], f["position"]["column"]
    return data
