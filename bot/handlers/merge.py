"""What happens when a pull request is merged into the default branch: its changes roll out.

Only a merge into the default branch (as the forge says now) rolls out; a merge into another branch
starts nothing. The merged change is planned again (base → merge commit) with the rules at the default
branch's tip — unless the pull request changed the rules itself: then with those of its base, so a pull
request never loosens the rules of its own rollout — and every deployable change starts a rollout, per
model in promotion order — production waits until staging's rollout of the same change succeeded. A
protected environment whose approval rules were not satisfied at merge (an administrator merged past
them) is not deployed. The PR gets one comment saying what started and what did not, and the plan
comment shows each rollout's state as it goes (:mod:`modelherd.progress`).
A merged revert pull request (opened by ``/rollback``) un-pins the environments it puts back in Git.

Once per merge, whatever fails in between: the rollouts are keyed by the merge (``merge:<repo>#<n>``)
with their model and environment, and are started in one transaction with the note that names them
(a retried job finds them and starts nothing); the note carries a hidden marker, so a retry whose
first attempt may have posted it edits it instead of posting another.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from modelherd.approval_facts import evaluate_pull
from modelherd.checks.approvals import RuleStatus, requirements_for
from modelherd.forges.base import BranchTip, ChangeRequest, Forge
from modelherd.handlers.commands import post_once
from modelherd.handlers.plan import plan_context, pr_key
from modelherd.handlers.rules_changed import rules_touched
from modelherd.planner import build_plan
from modelherd.progress import rollout_reply
from modelherd.promotion import start_for_plan
from modelherd.repoconfig import CONFIG_FILE, parse_config
from modelherd.router import Router

log = logging.getLogger(__name__)
router = Router()


def unapproved_environments(forge: Forge, cr: Any, plan: Any) -> set[str]:
    """Environments with an approval rule that was not satisfied at the PR's head."""
    outcome = evaluate_pull(forge, cr, requirements_for(plan.reports), plan.config)
    return {r.requirement.environment for r in outcome.results if r.status is not RuleStatus.SATISFIED}


def merge_rules_ref(forge: Forge, cr: ChangeRequest, rules: BranchTip) -> str:
    """Where the rollout of merged ``cr`` reads its rules: the default branch's tip, or the PR's base
    when the PR changed ``.modelherd.yaml`` or a policy itself (the tip now holds its own change)."""
    reader = forge.reader(cr)
    config, _ = parse_config(reader.read_many(rules.sha, [CONFIG_FILE]).get(CONFIG_FILE))
    changed = reader.changed_files(cr.base_sha, cr.merge_sha or cr.head_sha)
    return cr.base_sha if rules_touched(changed, config.policies.paths) else rules.sha


@router.register("pull_request", action="closed")
def on_merged(event: Any, *, forge: Forge, store: Any, registries: Mapping[str, Any], clusters: Mapping[str, dict],
              clock: Callable[[], datetime], queue: Any, targets: Any, **_: Any) -> None:
    """Roll out what a PR merged into the default branch changed."""
    if not event.payload["pull_request"].get("merged"):
        return
    number = int(event.payload["pull_request"]["number"])
    for pin in store.unpin_revert(forge.repo, number):
        log.info("%s#%d merged: %s/%s follows Git again", forge.repo, number, pin.model, pin.environment)
    cr = forge.change_request(number)
    if not cr.merge_sha:
        return
    rules = forge.default_branch_tip()
    if cr.base_ref != rules.branch:
        log.info("%s#%d merged into %s, not the default branch %s: nothing rolls out", forge.repo, number,
                 cr.base_ref, rules.branch)
        return

    key = f"merge:{forge.repo}#{number}"
    with store.mutex(pr_key(forge.repo, number)):
        if store.has_effect(key):
            return
        started = store.effect_result(f"{key}:started")
        if started is None:
            ctx = plan_context(cr, registries=registries, clusters=clusters, clock=clock)
            plan = build_plan(forge.reader(cr), cr.base_sha, cr.merge_sha, ctx,
                              rules_ref=merge_rules_ref(forge, cr, rules))
            if not plan.has_changes:
                store.record_effect(key, [], event_id=event.id)
                return
            unapproved = unapproved_environments(forge, cr, plan)
            started = store.commit_once(f"{key}:started", lambda: _start(plan, unapproved, cr, key, store=store,
                                                                        targets=targets, clock=clock),
                                        event_id=event.id)
        for rollout_id in started["ids"]:
            queue.enqueue_rollout(rollout_id)
        post_once(store, forge, number, key, merged_marker(number), started["note"], event_id=event.id)
    ids = started["ids"]
    log.info("%s#%d merged at %s: rollouts %s", forge.repo, number, cr.merge_sha[:7], ids)


def merged_marker(number: int) -> str:
    """The hidden marker of the "merged, rolling out" note of PR ``number``."""
    return f"<!-- modelherd:merged:{number} -->"


def _start(plan: Any, unapproved: set[str], cr: Any, key: str, *, store: Any, targets: Any,
           clock: Callable[[], datetime]) -> dict[str, Any]:
    """Start the merge's rollouts (store writes only, keyed by ``key``); their ids and the note."""
    live = {r.change.environment for r in plan.reports}
    started = start_for_plan(plan, store=store, kind_of=targets.kind_of, enqueue=lambda _id: None, repo=cr.repo,
                             actor=cr.author, pr=cr.number, sha=cr.merge_sha, trigger="merge",
                             environments=live - unapproved, decommission=True, clock=clock, key=key)
    skipped = started.skipped + [(r, "its approval rules were not satisfied when it was merged")
                                 for r in plan.reports if r.change.environment in unapproved
                                 and r.change.action.value != "no change"]
    return {"ids": [rollout_id for _, rollout_id in started.rollouts],
            "note": "### modelherd: merged, rolling out\n\n" + rollout_reply(started.rollouts, skipped)}
