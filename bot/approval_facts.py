"""What the approval rules need to know about a pull request, read fresh from the forge.

Only what the rules ask for is fetched: reviews always; the PR's committers; team memberships only
for the teams the rules name and only of people who reviewed; permissions only when a rule names
nobody (then any approver needs write access).
"""

from __future__ import annotations

from collections.abc import Iterable

from modelherd.checks.approvals import (
    ApprovalOptions,
    ApprovalOutcome,
    PullFacts,
    RequirementWithOwners,
    Review,
    evaluate,
    teams_needed,
)
from modelherd.forges.base import ChangeRequest, Forge
from modelherd.repoconfig import RepoConfig


def options(config: RepoConfig | None) -> ApprovalOptions:
    if config is None:
        return ApprovalOptions()
    p = config.approval_policy
    return ApprovalOptions(require_head_sha=p.require_head_sha, allow_author=p.allow_author,
                           allow_committers=p.allow_committers)


def _reviews(forge: Forge, number: int) -> tuple[Review, ...]:
    return tuple(Review(user=r["user"] or "", user_type=r.get("user_type") or "User", state=r["state"] or "COMMENTED",
                        commit_id=r.get("commit_id"), submitted_at=r.get("submitted_at"), id=int(r.get("id") or 0))
                 for r in forge.reviews(number) if r.get("user"))


def _committers(forge: Forge, number: int) -> frozenset[str]:
    logins: set[str] = set()
    for c in forge.commits(number):
        for who in (c.get("author"), c.get("committer")):
            if who and who != "web-flow":     # GitHub's account for commits made in the web UI
                logins.add(who)
    return frozenset(logins)


def _memberships(forge: Forge, teams: Iterable[str], users: Iterable[str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for team in teams:
        org, _, slug = team.lstrip("@").partition("/")
        found[team] = {}
        for user in users:
            state = forge.team_membership(org, slug, user)
            if state:
                found[team][user] = state
    return found


def gather(forge: Forge, cr: ChangeRequest, rules: list[RequirementWithOwners], *,
           bots: frozenset[str] = frozenset()) -> PullFacts:
    reviews = _reviews(forge, cr.number)
    reviewers = sorted({r.user for r in reviews})
    open_rules = any(not rule.restricted for rule in rules)
    return PullFacts(author=cr.author, head_sha=cr.head_sha, reviews=reviews,
                     committers=_committers(forge, cr.number),
                     team_members=_memberships(forge, teams_needed(rules), reviewers),
                     bots=bots, permissions={u: forge.permission(u) for u in reviewers} if open_rules else {},
                     from_fork=cr.from_fork, teams_partial=True)


def evaluate_pull(forge: Forge, cr: ChangeRequest, rules: list[RequirementWithOwners], config: RepoConfig | None,
                  *, bots: frozenset[str] = frozenset()) -> ApprovalOutcome:
    """The approval outcome of a PR's rules, from the forge's current state."""
    if not rules:
        return evaluate([], PullFacts(author=cr.author, head_sha=cr.head_sha), options(config))
    return evaluate(rules, gather(forge, cr, rules, bots=bots), options(config))
