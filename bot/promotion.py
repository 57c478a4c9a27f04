"""Starting rollouts for a plan: each deployable change, per model in promotion order.

Used after a merge (every environment) and by ``/deploy`` (one environment). Production waits until
staging's rollout of the same change succeeded (``after_id``), and is cancelled if it did not.
Changes that are blocked (a failing check), that delete a deployment, or that lack a resolved version
are not started; the caller reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from modelherd.plan import Action, ChangeReport, Plan
from modelherd.rollout import start_rollout
from modelherd.targets import TargetError


@dataclass
class Started:
    rollouts: list[tuple[ChangeReport, int]] = field(default_factory=list)
    skipped: list[tuple[ChangeReport, str]] = field(default_factory=list)


def skip_reason(report: ChangeReport) -> str | None:
    """Why a change cannot be rolled out automatically, or None."""
    if report.change.action is Action.NOOP:
        return "no change"
    if report.change.action is Action.DELETE:
        return "deleting a deployment is not rolled out automatically: remove it from the cluster by hand"
    if report.blocked:
        return "its plan is blocked (see the plan's findings)"
    if report.candidate is None:
        return "its model version could not be resolved"
    return None


def start_for_plan(plan: Plan, *, store, kind_of: Callable[[str], str], enqueue: Callable[[int], None],
                   repo: str, actor: str, pr: int | None, sha: str, trigger: str,
                   environments: Iterable[str] | None = None) -> Started:
    """Start (and enqueue) the rollouts of ``plan``'s changes in ``environments`` (default: all)."""
    wanted = set(environments) if environments is not None else None
    order = plan.config.order if plan.config is not None else (lambda env: 0)
    started = Started()
    previous: dict[str, int] = {}          # model → its last rollout started here (promotion chain)
    for report in sorted(plan.reports, key=lambda r: (r.change.name, order(r.change.environment))):
        change = report.change
        if wanted is not None and change.environment not in wanted:
            continue
        reason = skip_reason(report)
        if reason is None:
            try:
                kind = kind_of(change.deployment.cluster)
            except TargetError as exc:
                reason = str(exc)
        if reason is not None:
            if change.action is not Action.NOOP:
                started.skipped.append((report, reason))
            continue
        rollout_id = start_rollout(store, repo=repo, dep=change.head, candidate=report.candidate,
                                   stable=report.current, trigger=trigger, actor=actor, pr=pr, sha=sha,
                                   after_id=previous.get(change.name), target=kind)
        previous[change.name] = rollout_id
        started.rollouts.append((report, rollout_id))
        enqueue(rollout_id)
    return started
