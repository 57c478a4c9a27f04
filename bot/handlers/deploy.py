"""``/deploy [env]``: deploy an open pull request's planned head to a non-protected environment
before merge (e.g. staging), so it can be tried with real traffic.

Refused, with the reason, unless: the pull request's base is the default branch (one into another
branch never deploys); the environment is not protected (protected ones deploy after merge) — by the
rules at the default branch's tip, read again now, so a rule tightened there since the plan applies;
the head has not moved since the last plan (the commit whose plan and approvals were
evaluated is the one deployed — otherwise ``/plan`` first); the plan's checks pass; the environment's
approval rules are satisfied; and this pull request holds the environment's locks.
"""

from __future__ import annotations

from modelherd.approval_facts import evaluate_pull
from modelherd.checks import Conclusion
from modelherd.checks.approvals import RuleStatus, requirements_for
from modelherd.commands import Command
from modelherd.escape import md_code, md_text
from modelherd.handlers.commands import CommandContext, command, decided_once
from modelherd.handlers.plan import not_deployable, plan_context
from modelherd.plan import Action
from modelherd.planner import build_plan
from modelherd.progress import rollout_reply
from modelherd.promotion import start_for_plan


def _environment(cmd: Command, plan) -> str | None:
    """The named environment, or the first one (in promotion order) the PR changes that is not protected."""
    if cmd.environment:
        return cmd.environment
    changed = {r.change.environment for r in plan.reports if r.change.action is not Action.NOOP}
    for env in plan.config.environments:
        if env.name in changed and not env.protected:
            return env.name
    return None


def refusal(ctx: CommandContext, plan, env: str) -> str | None:
    """Why ``/deploy env`` may not run now, or None."""
    config = plan.config.environment(env)
    if config is None:
        return f"{md_code(env)} is not an environment of this repository"
    if config.protected:
        return f"{md_code(env)} is protected: it is deployed after the pull request is merged"
    reports = [r for r in plan.reports if r.change.environment == env and r.change.action is not Action.NOOP]
    if not reports:
        return f"this pull request changes nothing in {md_code(env)}"
    failing = [c.name for c in plan.checks.values() if c.conclusion not in (Conclusion.SUCCESS, Conclusion.NEUTRAL)]
    if failing:
        return f"the plan's checks do not pass ({', '.join(failing)}): see the plan comment"
    outcome = evaluate_pull(ctx.forge, ctx.cr, requirements_for(plan.reports), plan.config)
    pending = [r for r in outcome.results if r.requirement.environment == env and r.status is not RuleStatus.SATISFIED]
    if pending:
        return "approvals are missing: " + "; ".join(md_text(r.requirement.describe()) for r in pending)
    held = {(lock.model, lock.environment): lock.pr_number for lock in ctx.store.locks(ctx.cr.repo)}
    for r in reports:
        holder = held.get(r.change.key)
        if holder != ctx.cr.number:
            who = f"#{holder}" if holder else "nobody (run `/plan` to take it)"
            return f"the lock of {md_code(r.change.name)} in {md_code(env)} is held by {who}"
    return None


@command("deploy")
def deploy(ctx: CommandContext, cmd: Command) -> str:
    cr = ctx.cr
    if cr.state != "open":
        return "ℹ️ `/deploy` is for open pull requests: after a merge the rollouts start by themselves"
    rules = ctx.rules or ctx.forge.default_branch_tip()
    blocked = not_deployable(cr, rules)
    if blocked:
        return f"❌ refused: {blocked}"
    saved = ctx.store.pull(cr.repo, cr.number)
    if saved is None or saved.head_sha != cr.head_sha:
        planned = md_code(saved.head_sha[:7]) if saved else "nothing"
        return (f"❌ refused: the head moved since the last plan (planned {planned}, head is "
                f"{md_code(cr.head_sha[:7])}): comment `/plan` first, then `/deploy` again")
    deps = ctx.deps
    plan_ctx = plan_context(cr, registries=deps["registries"], clusters=deps["clusters"], clock=deps["clock"])
    plan = build_plan(ctx.forge.reader(cr), cr.base_sha, cr.head_sha, plan_ctx, rules_ref=rules.sha)
    env = _environment(cmd, plan)
    if env is None:
        return "ℹ️ this pull request changes no environment that can be deployed before merge"
    reason = refusal(ctx, plan, env)
    if reason:
        return f"❌ refused: {reason}"
    ids: list[int] = []

    def start() -> str:            # the rollouts and this answer commit together (see decided_once)
        started = start_for_plan(plan, store=ctx.store, kind_of=deps["targets"].kind_of, enqueue=ids.append,
                                 repo=cr.repo, actor=ctx.actor, pr=cr.number, sha=cr.head_sha,
                                 trigger="deploy-command", environments=[env], clock=deps["clock"],
                                 key=ctx.key or None)
        return f"deploying {md_code(cr.head_sha[:7])} to {md_code(env)}:\n\n" + rollout_reply(started.rollouts,
                                                                                            started.skipped)
    answer = decided_once(ctx, start)
    for rollout_id in ids:         # after the commit (a rollout lost here is found by the rollout sweep)
        deps["queue"].enqueue_rollout(rollout_id)
    return answer
