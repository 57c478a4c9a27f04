"""What the handlers tell Slack: a plan is ready (and what it still needs), who approved, another PR holds
a lock, or what serves drifted from Git.

Pure: builds :class:`~modelherd.slack.messages.SlackEvent` s from a plan and its approvals outcome;
the handler hands them to the notifier, which persists and sends them from the queue.
"""

from __future__ import annotations

from modelherd.checks import Conclusion
from modelherd.checks.approvals import ApprovalOutcome, RuleStatus
from modelherd.forges.base import ChangeRequest
from modelherd.plan import Action, Plan
from modelherd.slack.messages import SlackEvent


def plan_events(plan: Plan, outcome: ApprovalOutcome, cr: ChangeRequest) -> list[SlackEvent]:
    """``plan_ready`` with what the PR still needs, and ``lock_conflict`` for each lock another PR holds."""
    if not plan.files:
        return []
    owners = tuple(sorted({o for r in plan.reports for o in r.change.deployment.owners}))
    needs = [f"check {name} is {check.conclusion.value}" for name, check in plan.checks.items()
             if check.conclusion in (Conclusion.FAILURE, Conclusion.ERROR)]
    needs += [r.requirement.describe() for r in outcome.results if r.status is not RuleStatus.SATISFIED]
    state = f"{plan.conclusion.value}-{outcome.status.value}"
    common = dict(repo=cr.repo, pr_number=cr.number, pr_url=cr.url or None, pr_title=cr.title, author=cr.author,
                  owners=owners)
    events = [SlackEvent(kind="plan_ready", key=f"plan:{cr.repo}#{cr.number}:{cr.head_sha}:{state}",
                         needs=tuple(needs), state=state, **common)]
    approvers = sorted({a for r in outcome.results for a in r.approvers})
    if approvers:
        events.append(SlackEvent(kind="approval", actor=", ".join(approvers), needs=tuple(needs),
                                 key=f"approval:{cr.repo}#{cr.number}:{cr.head_sha}:{','.join(approvers)}",
                                 **common))
    for report in plan.reports:
        for finding in report.findings:
            if finding.check == "locks" and report.change.action is not Action.NOOP:
                events.append(SlackEvent(kind="lock_conflict", model=report.change.name,
                                         environment=report.change.environment, text=finding.message,
                                         key=f"lock:{cr.repo}#{cr.number}:{report.change.name}:"
                                             f"{report.change.environment}:{cr.head_sha}", **common))
    return events


def drift_events(report, repo: str, sha: str) -> list[SlackEvent]:
    """``drift_found`` for each model/environment that differs from Git (pinned ones excluded)."""
    return [SlackEvent(kind="drift_found", repo=repo, model=item.model, environment=item.environment,
                       text=item.summary, key=f"drift:{repo}:{item.model}:{item.environment}:{sha}:{item.kind}")
            for item in report.drifted]
