"""Starting rollouts for a plan: each deployable change, per model in promotion order.

Used after a merge (every environment) and by ``/deploy`` (one environment). Production waits until
staging's rollout of the same change succeeded (``after_id``), and is cancelled if it did not.
After a merge, a change that deletes a deployment starts a *decommission* (:mod:`modelherd.decommission`)
in the same order, unless ``prune`` is off for its environment in ``.modelherd.yaml``; ``/deploy`` never
removes anything.  Changes that are blocked (a failing check), or that lack a resolved version, are not
started; the caller reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from modelherd.clock import Clock
from modelherd.decommission import start_decommission
from modelherd.plan import Action, ChangeReport, Plan
from modelherd.rollout import start_rollout
from modelherd.targets import TargetError


@dataclass
class Started:
    rollouts: list[tuple[ChangeReport, int]] = field(default_factory=list)
    skipped: list[tuple[ChangeReport, str]] = field(default_factory=list)


BY_HAND = "deleting a deployment is not rolled out automatically: remove it from the cluster by hand"


def skip_reason(report: ChangeReport, *, prunes: bool = True, after_merge: bool = False) -> str | None:
    """Why a change cannot be rolled out automatically, or None.

    A deleted deployment is decommissioned only ``after_merge`` and where its environment ``prunes``."""
    if report.change.action is Action.NOOP:
        return "no change"
    if report.change.action is Action.DELETE:
        if not prunes:
            return f"prune is off for {report.change.environment}: {BY_HAND}"
        if not after_merge:
            return "a deleted deployment is removed after merge, not before"
        if report.blocked:
            return "its plan is blocked (see the plan's findings): remove it from the cluster by hand or fix the plan"
        return None
    if report.blocked:
        return "its plan is blocked (see the plan's findings)"
    if report.candidate is None:
        return "its model version could not be resolved"
    return None


def rollout_key(key: str, model: str, environment: str) -> str:
    """The idempotency key of the rollout of ``model`` to ``environment`` that ``key`` started."""
    return f"{key}:{model}:{environment}"


def start_for_plan(plan: Plan, *, store, kind_of: Callable[[str], str], enqueue: Callable[[int], None],
                   repo: str, actor: str, pr: int | None, sha: str, trigger: str,
                   clock: Clock, environments: Iterable[str] | None = None, decommission: bool = False,
                   key: str | None = None) -> Started:
    """Start (and enqueue) the rollouts of ``plan``'s changes in ``environments`` (default: all).

    ``decommission``: deleted deployments are removed where the repo config prunes (after a merge).
    ``key``: what starts them (a delivery's command, a merge); each rollout is keyed by it with its
    model and environment (:func:`rollout_key`), so starting again finds the rollouts already started."""
    wanted = set(environments) if environments is not None else None
    order = plan.config.order if plan.config is not None else (lambda env: 0)
    started = Started()
    previous: dict[str, int] = {}          # model → its last rollout started here (promotion chain)
    for report in sorted(plan.reports, key=lambda r: (r.change.name, order(r.change.environment))):
        change = report.change
        if wanted is not None and change.environment not in wanted:
            continue
        prunes = plan.config.prunes(change.environment) if plan.config is not None else True
        reason = skip_reason(report, prunes=prunes, after_merge=decommission)
        if reason is None:
            try:
                kind = kind_of(change.deployment.cluster)
            except TargetError as exc:
                reason = str(exc)
        if reason is not None:
            if change.action is not Action.NOOP:
                started.skipped.append((report, reason))
            continue
        keyed = rollout_key(key, change.name, change.environment) if key is not None else None
        if change.action is Action.DELETE:
            rollout_id = start_decommission(store, repo=repo, dep=change.base, current=report.current,
                                            trigger=trigger, actor=actor, pr=pr, sha=sha,
                                            after_id=previous.get(change.name), target=kind, key=keyed,
                                            clock=clock)
        else:
            rollout_id = start_rollout(store, repo=repo, dep=change.head, candidate=report.candidate,
                                       stable=report.current, trigger=trigger, actor=actor, pr=pr, sha=sha,
                                       after_id=previous.get(change.name), target=kind, key=keyed, clock=clock)
        previous[change.name] = rollout_id
        started.rollouts.append((report, rollout_id))
        enqueue(rollout_id)
    return started
