"""The metric gate: the candidate version's metrics against the manifest's bounds and the version serving now.

Pure: registry facts arrive as :class:`~modelherd.registry.ModelVersionInfo` records (``None`` when there
is no such version) and the caller supplies ``locate`` to place findings on manifest lines.

For each gated metric (in manifest order) :func:`evaluate_gates` gives one
:class:`~modelherd.plan.MetricComparison`:

* ``missing`` — the candidate has not logged the metric: an error (a warning in ``mode: warn``);
* a value that is not a finite number (MLflow stores NaN, e.g. a metric computed over no data) never
  passes: ``fail`` (``warn`` in warn mode) with the reason; NaN for the version serving now leaves the
  regression bound unchecked, like a metric it never logged;
* ``fail`` / ``warn`` — a bound is broken: ``min``/``max`` (absolute), or ``max_regression`` (how much worse
  than the current version's value, absolute ``0.01`` or relative ``"5%"`` of the current value), worse
  meaning lower for ``maximize`` and higher for ``minimize``; ``warn`` is a broken bound in ``mode: warn``;
* ``pass`` — every bound that could be checked holds (``reason`` notes a regression left unchecked
  because nothing serves now, or the current version lacks the metric);
* ``n/a`` — nothing to check: no bound at all, or only a regression bound and nothing to compare with,
  or no candidate version.

``delta`` is candidate − current whenever both values exist.  Values within 1e-9 (relative) of a bound
count as meeting it, so ``0.95 − 0.94`` is a regression of exactly ``0.01``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from modelherd.checks import Finding, Position, Severity
from modelherd.manifest import GateMode, Gates, Goal, MetricGate
from modelherd.plan import MetricComparison
from modelherd.registry import ModelVersionInfo

CHECK = "metrics"
READY = "READY"

PASS, FAIL, WARN, MISSING, NA = "pass", "fail", "warn", "missing", "n/a"
UNCHECKED = "regression not checked"   # ends the reason of a gate whose regression bound had no baseline

Locate = Callable[[tuple[str, ...]], Position | None]


@dataclass(frozen=True)
class OtherMetric:
    """A metric no gate names, shown side by side in the plan."""

    metric: str
    candidate: float | None
    current: float | None
    delta: float | None


# ---------------------------------------------------------------------------------------------------
# Numbers and words
# ---------------------------------------------------------------------------------------------------


def fmt(value: float) -> str:
    """A metric value for people: ``0.95``, ``40``, ``1.23e-05``."""
    return f"{value:.6g}"


def fmt_special(value: float) -> str:
    """``NaN``, ``+Inf``, ``-Inf`` as MLflow and Prometheus write them."""
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def _exceeds(value: float, limit: float) -> bool:
    """``value > limit`` beyond floating-point noise."""
    return value > limit and not math.isclose(value, limit, rel_tol=1e-9, abs_tol=1e-12)


def _vname(info: ModelVersionInfo) -> str:
    return f"version {info.version}"


def worsening(goal: Goal, candidate: float, current: float) -> float:
    """How much worse ``candidate`` is than ``current`` (negative when it is better)."""
    return current - candidate if goal is Goal.MAXIMIZE else candidate - current


def bounds_text(gate: MetricGate) -> str:
    """``"≥ 0.95, regression ≤ 5%"``: the gate's bounds as the plan shows them."""
    parts = []
    if gate.min is not None:
        parts.append(f"≥ {fmt(gate.min)}")
    if gate.max is not None:
        parts.append(f"≤ {fmt(gate.max)}")
    if gate.max_regression is not None:
        limit = gate.max_regression
        parts.append(f"regression ≤ {limit.strip() if isinstance(limit, str) else fmt(limit)}")
    return ", ".join(parts) or "—"


# ---------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------


def absolute_failures(metric: str, gate: MetricGate, value: float) -> list[str]:
    """What the candidate's ``value`` breaks among ``min`` and ``max``."""
    out = []
    if gate.min is not None and _exceeds(gate.min, value):
        out.append(f"{metric} {fmt(value)} is below the minimum {fmt(gate.min)}")
    if gate.max is not None and _exceeds(value, gate.max):
        out.append(f"{metric} {fmt(value)} is above the maximum {fmt(gate.max)}")
    return out


def regression_check(metric: str, gate: MetricGate, value: float,
                     current: ModelVersionInfo | None) -> tuple[str | None, str | None]:
    """``(failure, note)`` for ``max_regression``: a failure message, or a note saying why it was not checked."""
    if gate.max_regression is None:
        return None, None
    if current is None:
        return None, f"{metric}: no version serves now, {UNCHECKED}"
    base = current.metrics.get(metric)
    if base is None:
        return None, f"{metric} not logged for {_vname(current)} (serving now), {UNCHECKED}"
    if not math.isfinite(base):
        return None, f"{metric} is {fmt_special(base)} for {_vname(current)} (serving now), {UNCHECKED}"
    limit = gate.regression_limit(base)
    assert limit is not None
    worse = worsening(gate.direction, value, base)
    if not _exceeds(worse, limit):
        return None, None
    relative = f" ({worse / abs(base):.1%})" if base else ""
    allowed = gate.max_regression.strip() if isinstance(gate.max_regression, str) else fmt(limit)
    direction = "fell" if gate.direction is Goal.MAXIMIZE else "rose"
    return (f"{metric} {direction} by {fmt(worse)}{relative} from {fmt(base)} ({_vname(current)}) to "
            f"{fmt(value)}; at most {allowed} allowed"), None


def compare_metric(metric: str, gate: MetricGate, candidate: ModelVersionInfo | None,
                   current: ModelVersionInfo | None) -> MetricComparison:
    """One gated metric: candidate against bounds and against the version serving now."""
    value = candidate.metrics.get(metric) if candidate else None
    base = current.metrics.get(metric) if current else None
    delta = value - base if value is not None and base is not None else None
    if delta is not None and not math.isfinite(delta):
        delta = None

    def result(verdict: str, reason: str = "") -> MetricComparison:
        return MetricComparison(metric=metric, goal=str(gate.direction), candidate=value, current=base,
                                delta=delta, bounds=bounds_text(gate), verdict=verdict,
                                mode=str(gate.mode), reason=reason)

    if candidate is None:
        return result(NA, "no candidate version")
    if value is None:
        return result(MISSING, f"metric {metric} not logged for {_vname(candidate)}")
    if not math.isfinite(value):
        return result(FAIL if gate.mode is GateMode.ENFORCE else WARN,
                      f"{metric} is {fmt_special(value)} for {_vname(candidate)}: "
                      f"{'not a number' if math.isnan(value) else 'not a finite number'}, so the gate cannot pass")
    failures = absolute_failures(metric, gate, value)
    failure, note = regression_check(metric, gate, value, current)
    failures += [failure] if failure else []
    if failures:
        return result(FAIL if gate.mode is GateMode.ENFORCE else WARN, "; ".join(failures))
    checked = gate.min is not None or gate.max is not None or (gate.max_regression is not None and note is None)
    if not checked:
        return result(NA, note or "no bound set; shown for comparison")
    return result(PASS, note or "")


def evaluate_gates(gates: Gates, candidate: ModelVersionInfo | None,
                   current: ModelVersionInfo | None) -> list[MetricComparison]:
    """A comparison per gated metric, in manifest order."""
    return [compare_metric(name, gate, candidate, current) for name, gate in gates.metrics.items()]


def other_metrics(candidate: ModelVersionInfo | None, current: ModelVersionInfo | None,
                  *, exclude: Iterable[str] = ()) -> list[OtherMetric]:
    """Metrics of either version that no gate names (``exclude``), by name, with both values."""
    cand = candidate.metrics if candidate else {}
    cur = current.metrics if current else {}
    skip = set(exclude)
    out = []
    for name in sorted((cand.keys() | cur.keys()) - skip):
        a, b = cand.get(name), cur.get(name)
        out.append(OtherMetric(name, a, b, a - b if a is not None and b is not None else None))
    return out


# ---------------------------------------------------------------------------------------------------
# Findings
# ---------------------------------------------------------------------------------------------------


def _severity(comparison: MetricComparison) -> Severity | None:
    """ERROR for a failed or missing enforce gate, WARNING in warn mode, NOTICE for a note, else none."""
    if comparison.verdict == FAIL:
        return Severity.ERROR
    if comparison.verdict == WARN:
        return Severity.WARNING
    if comparison.verdict == MISSING:
        return Severity.ERROR if comparison.mode == GateMode.ENFORCE else Severity.WARNING
    if comparison.reason.endswith(UNCHECKED):
        return Severity.NOTICE
    return None


def _hint(comparison: MetricComparison) -> str | None:
    if comparison.verdict == MISSING:
        return "log it on the version's run or logged model, or remove the gate"
    if comparison.candidate is not None and not math.isfinite(comparison.candidate):
        return "log a real value on the version's run or logged model (the evaluation produced none)"
    if comparison.verdict == FAIL:
        return "pick a better version, change the bound, or set `mode: warn` to only report"
    return None


def gate_findings(comparisons: Iterable[MetricComparison], *, file: str | None, model: str | None,
                  environment: str | None, locate: Locate) -> list[Finding]:
    """Findings for the comparisons that need saying, each placed on its metric's line in the manifest."""
    out = []
    for c in comparisons:
        severity = _severity(c)
        if severity is None:
            continue
        out.append(Finding(check=CHECK, severity=severity, message=c.reason, file=file,
                           position=locate(("spec", "gates", "metrics", c.metric)),
                           model=model, environment=environment, hint=_hint(c)))
    return out


def readiness_finding(gates: Gates, candidate: ModelVersionInfo | None, *, file: str | None,
                      model: str | None, environment: str | None, locate: Locate) -> Finding | None:
    """An error when ``require_ready`` and the candidate is not READY (a warning when not required)."""
    if candidate is None or candidate.status == READY:
        return None
    severity = Severity.ERROR if gates.require_ready else Severity.WARNING
    hint = ("registration failed: register the model again and point the manifest at the new version"
            if candidate.status == "FAILED_REGISTRATION" else "wait until the registry marks it READY")
    position = locate(("spec", "gates", "require_ready")) or locate(("spec", "model"))
    message = f"{candidate.name} {_vname(candidate)} is {candidate.status} in the registry, not READY"
    return Finding(check=CHECK, severity=severity, message=message,
                   file=file, position=position, model=model, environment=environment, hint=hint)


def summary(comparisons: Iterable[MetricComparison]) -> str:
    """``"3 gates: 2 pass, 1 fail"`` for a check summary."""
    comparisons = list(comparisons)
    if not comparisons:
        return "no metric gates"
    counts: dict[str, int] = {}
    for c in comparisons:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    order = [PASS, WARN, FAIL, MISSING, NA]
    parts = ", ".join(f"{counts[v]} {v}" for v in order if v in counts)
    return f"{len(comparisons)} gate{'s' * (len(comparisons) != 1)}: {parts}"
