"""What happens when a pull request is opened or updated: plan it, post the plan, report the check.

Routes: ``pull_request`` opened / synchronize / reopened / ready_for_review, and a "Re-run" of the
``modelherd/plan`` check (``check_run`` / ``check_suite`` rerequested).  Work on one PR is serialised
across workers (a store mutex), and the PR is read fresh from the forge inside it (never trusted from
the payload), so the last plan posted is the newest head's.  The plan is built with the rules of the
base branch, then exactly two
writes follow, whatever the number of manifests: the sticky comment (first, so people see it
soonest) and the check.  Both are upserts, so a retried job does not duplicate them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from modelherd.checkrun import PLAN_CHECK, plan_check
from modelherd.comment import MARKER, render_plan
from modelherd.forges.base import Forge
from modelherd.planner import PlanContext, build_plan
from modelherd.router import Router

log = logging.getLogger(__name__)
router = Router()

PLAN_ACTIONS = ("opened", "synchronize", "reopened", "ready_for_review")
NO_MANIFEST_COMMENT = (f"{MARKER}\n\n### modelherd plan\n\nThis pull request no longer changes any model "
                       "manifest: nothing to deploy.")


def rfc3339(now: datetime) -> str:
    return now.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def pr_key(repo: str, number: int) -> str:
    """The mutex that serialises all work on one pull request across workers."""
    return f"pr:{repo}#{number}"


def plan_pull_request(forge: Forge, number: int, *, registries: Mapping[str, Any],
                      clusters: Mapping[str, dict], clock: Callable[[], datetime]) -> None:
    """Plan PR ``number`` at its current head and publish the comment and the check."""
    cr = forge.change_request(number)
    if cr.state != "open":
        log.info("%s#%d is %s: not planned", forge.repo, number, cr.state)
        return
    ctx = PlanContext(registries=registries, clusters=clusters, now=rfc3339(clock()), pr=cr.facts())
    plan = build_plan(forge.reader(cr), cr.base_sha, cr.head_sha, ctx)
    if plan.files:
        forge.upsert_comment(number, MARKER, render_plan(plan))
    else:
        forge.upsert_comment(number, MARKER, NO_MANIFEST_COMMENT, create=False)
    forge.report_check(cr.head_sha, plan_check(plan))
    log.info("%s#%d planned at %s: %s", forge.repo, number, cr.head_sha[:7], plan.conclusion.value)


def on_pull_request(event: Any, *, forge: Forge, store: Any, registries: Mapping[str, Any],
                    clusters: Mapping[str, dict], clock: Callable[[], datetime], **_: Any) -> None:
    """A PR was opened, pushed to, reopened or marked ready: plan it."""
    number = int(event.payload["pull_request"]["number"])
    with store.mutex(pr_key(forge.repo, number)):
        plan_pull_request(forge, number, registries=registries, clusters=clusters, clock=clock)


for _action in PLAN_ACTIONS:
    router.add(on_pull_request, "pull_request", action=_action)


@router.register("check_run", action="rerequested")
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
    for pr in pulls:
        number = int(pr["number"])
        with store.mutex(pr_key(forge.repo, number)):
            plan_pull_request(forge, number, registries=registries, clusters=clusters, clock=clock)


router.add(on_check_rerun, "check_suite", action="rerequested")
