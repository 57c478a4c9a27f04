"""Model/environment locks for a plan, as Atlantis locks projects.

A pull request that plans a change to a model in an environment holds that model/environment until it
is merged, closed or ``/unlock``-ed. Another pull request touching the same one gets a ``lock``
finding ("locked by #N") in its plan, which fails the plan check. Locks the PR no longer needs (a new
commit dropped the change) are released at once.
"""

from __future__ import annotations

from modelherd.checks import CheckResult, Finding, Severity, conclude
from modelherd.forges.base import ChangeRequest
from modelherd.plan import Action, Plan
from modelherd.store import Store

CHECK = "locks"


def apply_locks(plan: Plan, store: Store, cr: ChangeRequest) -> CheckResult | None:
    """Take the locks the plan needs; add a finding to each change another PR holds. None when the
    plan changes nothing (no lock needed)."""
    wanted = {r.change.key: r for r in plan.reports if r.change.action is not Action.NOOP}
    for lock in store.locks(cr.repo):
        if lock.pr_number == cr.number and (lock.model, lock.environment) not in wanted:
            store.release_lock(cr.repo, lock.model, lock.environment, cr.number)
    findings: list[Finding] = []
    for (model, environment), report in wanted.items():
        lock = store.take_lock(cr.repo, model, environment, pr_number=cr.number, head_sha=cr.head_sha,
                               author=cr.author)
        if lock.pr_number != cr.number:
            since = lock.created_at.strftime("%Y-%m-%d %H:%M UTC")
            finding = Finding(CHECK, Severity.ERROR,
                              f"{model} in {environment} is locked by #{lock.pr_number} (opened by "
                              f"{lock.author}) since {since}", report.change.file, None, model, environment,
                              hint=f"merge or close #{lock.pr_number}, or comment `/unlock {environment}` there")
            report.findings.append(finding)
            findings.append(finding)
    if not wanted:
        return None
    result = conclude(CHECK, findings, f"{len(wanted)} model/environment lock(s) held by this pull request")
    plan.checks[CHECK] = result
    return result
