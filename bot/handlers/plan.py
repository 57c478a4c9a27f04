"""What happens when a pull request is opened, updated or reviewed: plan it, lock what it changes,
evaluate its approvals, and publish the result.

Routes: ``pull_request`` opened / synchronize / reopened / ready_for_review; ``pull_request_review``
submitted / edited / dismissed; a "Re-run" of the plan check (``check_run`` / ``check_suite``
rerequested); and the ``/plan`` command (see :mod:`modelherd.handlers.commands`).

Work on one PR is serialised across workers (a store mutex) and the PR is read fresh from the forge
inside it (never trusted from the payload), so the last result published is the newest head's. The
plan uses the rules at the default branch's tip (resolved once per event, whatever the PR's base), and
only a PR into the default branch takes locks: one into another branch is planned, and the comment says
it cannot deploy. Then three writes follow, whatever the number of manifests:
the sticky comment (first, so people see it soonest), the ``modelherd/plan`` check and the
``modelherd/approvals`` check — the comment and the approvals check are built from the same outcome,
so they always agree. All are upserts, so a retried job duplicates nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from modelherd.approval_facts import evaluate_pull
from modelherd.checkrun import PLAN_CHECK, plan_check
from modelherd.checks.approvals import check_report as approvals_check
from modelherd.checks.approvals import requirements_for, summary_markdown
from modelherd.clock import rfc3339
from modelherd.commands import Command
from modelherd.comment import MARKER, render_plan
from modelherd.escape import md_code
from modelherd.forges.base import BranchTip, ChangeRequest, Forge
from modelherd.handlers.commands import CommandContext, command
from modelherd.locking import apply_locks
from modelherd.planner import PlanContext, build_plan
from modelherd.router import Router
from modelherd.slack_events import plan_events

log = logging.getLogger(__name__)
router = Router()

COMMENT_LIMIT = 60_000     # GitHub takes 65,536; the rest is room for the rollouts section after a merge
PLAN_ACTIONS = ("opened", "synchronize", "reopened", "ready_for_review")
REVIEW_ACTIONS = ("submitted", "edited", "dismissed")
NO_MANIFEST_COMMENT = (f"{MARKER}\n\n### modelherd plan\n\nThis pull request no longer changes any model "
                       "manifest: nothing to deploy.")


def plan_context(cr: Any, *, registries: Mapping[str, Any], clusters: Mapping[str, dict],
                 clock: Callable[[], datetime]) -> PlanContext:
    """What a plan of ``cr`` depends on outside the repository, as the handlers' dependencies give it."""
    return PlanContext(registries=registries, clusters=clusters, now=rfc3339(clock()), pr=cr.facts(),
                       repository=cr.repo)


def not_deployable(cr: ChangeRequest, rules: BranchTip) -> str | None:
    """Why nothing of ``cr`` may ever deploy, or None: only a pull request into the default branch
    deploys (its rules and protection are the default branch's; another branch's are nobody's)."""
    if cr.base_ref == rules.branch:
        return None
    return (f"its base {md_code(cr.base_ref)} is not the default branch {md_code(rules.branch)}: only a pull "
            f"request into {md_code(rules.branch)} deploys")


def pr_key(repo: str, number: int) -> str:
    """The mutex that serialises all work on one pull request across workers."""
    return f"pr:{repo}#{number}"


def refresh_pull_request(forge: Forge, number: int, *, store: Any, registries: Mapping[str, Any],
                         clusters: Mapping[str, dict], clock: Callable[[], datetime], notifier: Any = None,
                         rules: BranchTip | None = None, **_: Any) -> Any:
    """Plan PR ``number`` at its current head, take its locks, evaluate its approvals, and publish.

    ``rules``: the default branch's tip the event resolved (resolved here when not given).
    Returns the plan (None when the PR is not open)."""
    cr = forge.change_request(number)
    if cr.state != "open":
        log.info("%s#%d is %s: not planned", forge.repo, number, cr.state)
        return None
    rules = rules or forge.default_branch_tip()
    ctx = plan_context(cr, registries=registries, clusters=clusters, clock=clock)
    plan = build_plan(forge.reader(cr), cr.base_sha, cr.head_sha, ctx, rules_ref=rules.sha)
    blocked = not_deployable(cr, rules)
    if blocked:
        store.release_locks(cr.repo, cr.number)      # it will never deploy: it holds nothing up
    else:
        apply_locks(plan, store, cr)
    outcome = evaluate_pull(forge, cr, requirements_for(plan.reports), plan.config)
    body = NO_MANIFEST_COMMENT
    if plan.files:
        approvals_md = "#### Approvals\n\n" + summary_markdown(outcome)
        cannot_deploy = (f"{blocked}. It is planned with the rules of {md_code(rules.branch)} at "
                         f"{md_code(rules.sha[:7])}." if blocked else None)
        body = render_plan(plan, sections=[approvals_md], limit=COMMENT_LIMIT, cannot_deploy=cannot_deploy)
        forge.upsert_comment(number, MARKER, body)
    else:
        forge.upsert_comment(number, MARKER, body, create=False)
    store.save_pull(forge.repo, number, head_sha=cr.head_sha, base_sha=cr.base_sha,
                    plan_conclusion=plan.conclusion.value, approvals_status=outcome.status.value,
                    comment_body=body)
    forge.report_check(cr.head_sha, plan_check(plan))
    forge.report_check(cr.head_sha, approvals_check(outcome))
    if notifier is not None:
        for slack_event in plan_events(plan, outcome, cr):
            notifier.notify(slack_event)
    log.info("%s#%d at %s: plan %s, approvals %s", forge.repo, number, cr.head_sha[:7],
             plan.conclusion.value, outcome.status.value)
    return plan


def refresh_serialised(forge: Forge, number: int, *, store: Any, **deps: Any) -> Any:
    """:func:`refresh_pull_request` under the PR's mutex."""
    with store.mutex(pr_key(forge.repo, number)):
        return refresh_pull_request(forge, number, store=store, **deps)


def _deps(store: Any, registries: Mapping[str, Any], clusters: Mapping[str, dict],
          clock: Callable[[], datetime], notifier: Any = None) -> dict[str, Any]:
    return {"store": store, "registries": registries, "clusters": clusters, "clock": clock, "notifier": notifier}


def on_pull_request(event: Any, *, forge: Forge, store: Any, registries: Mapping[str, Any],
                    clusters: Mapping[str, dict], clock: Callable[[], datetime], notifier: Any = None,
                    **_: Any) -> None:
    """A PR was opened, pushed to, reopened or marked ready, or reviewed: plan it again."""
    number = int(event.payload["pull_request"]["number"])
    refresh_serialised(forge, number, **_deps(store, registries, clusters, clock, notifier))


for _action in PLAN_ACTIONS:
    router.add(on_pull_request, "pull_request", action=_action)
for _action in REVIEW_ACTIONS:
    router.add(on_pull_request, "pull_request_review", action=_action)


def on_check_rerun(event: Any, *, forge: Forge, store: Any, registries: Mapping[str, Any],
                   clusters: Mapping[str, dict], clock: Callable[[], datetime], **_: Any) -> None:
    """Someone pressed "Re-run" on the plan check (or on all checks): plan that commit's PRs again."""
    payload = event.payload
    if event.event == "check_run":
        if payload["check_run"].get("name") != PLAN_CHECK:
            return
        pulls = payload["check_run"].get("pull_requests") or []
    else:
        pulls = payload["check_suite"].get("pull_requests") or []
    rules = forge.default_branch_tip() if pulls else None       # one tip for every PR of the event
    for pr in pulls:
        refresh_serialised(forge, int(pr["number"]), **_deps(store, registries, clusters, clock), rules=rules)


@command("plan")
def plan_command(ctx: CommandContext, cmd: Command) -> str:
    """``/plan``: plan again now, at the PR's current head (with the rules the comment's event resolved)."""
    plan = refresh_serialised(ctx.forge, ctx.cr.number, **{**ctx.deps, "rules": ctx.rules})
    if plan is None:
        return "ℹ️ this pull request is not open: nothing to plan"
    reply = f"🔁 planned `{plan.head_ref[:7]}`: {plan.conclusion.value}; the plan comment above is up to date"
    blocked = not_deployable(ctx.cr, ctx.rules) if ctx.rules is not None else None
    return reply + (f"\n\n🚫 it cannot deploy: {blocked}" if blocked else "")


router.add(on_check_rerun, "check_run", action="rerequested")
router.add(on_check_rerun, "check_suite", action="rerequested")
