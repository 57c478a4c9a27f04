"""Approvals: does a pull request have the reviews its changes need?  A pure function of the PR's facts.

The rules come from the plan (:func:`requirements_for`: the repository config and the policies, read at
the default branch's tip, joined with the owners of each changed manifest).  The facts come from the forge
(:class:`PullFacts`: reviews, author, committers, head SHA, team memberships, permissions).  Evaluation
(:func:`evaluate`) does no I/O and returns, rule by rule, satisfied / pending / error with the people who
counted, the people who did not and why, in the manner of palantir/policy-bot.

Semantics (each one has a test in ``tests/test_approvals.py``; the defaults live in
:class:`ApprovalOptions`):

* **Latest review per reviewer.**  Reviews are ordered by ``submitted_at`` then ``id``; a reviewer's
  latest *deciding* review (approved, changes requested, dismissed) is their vote.
* **Comments do not erase a vote.**  A ``COMMENTED`` review after an approval leaves the approval in
  place, as on GitHub (its branch protection ignores comment-only reviews) and in policy-bot: a reviewer
  who approves and then answers a question has not withdrawn the approval.  Comments never approve.
* **Pending reviews do not exist yet.**  A ``PENDING`` review is a draft only its author sees; it neither
  approves nor replaces an earlier vote.
* **Dismissed means no vote.**  When a reviewer's latest deciding review is ``DISMISSED``, that reviewer
  has no standing vote: an earlier approval of theirs is *not* resurrected (a maintainer dismissed their
  last word, which says nothing about approving); a later review replaces the dismissal.
* **Only approvals of the head count** (``require_head_sha``, default on): an approval whose
  ``commit_id`` is not the PR's current head SHA is stale after a push.
* **Changes requested block.**  A ``CHANGES_REQUESTED`` vote from someone whose approval would count
  for a rule blocks that rule, even on an older commit, until that reviewer approves or the review is
  dismissed.  Votes of people who could not approve the rule (bots, the author, people outside its
  users/teams/owners) do not block it.
* **The author never approves**, whatever the fork the PR comes from (``allow_author``, default off);
  **nor do the PR's committers** (``allow_committers``, default off).
* **Bots and apps never count**: ``type == "Bot"``, a login ending ``[bot]``, or a login the server
  lists as a bot (:attr:`PullFacts.bots`).  Mannequins and organisations (other non-``User`` types) do
  not count either.
* **Team membership must be active**: a pending invitation is not membership.
* **Who counts.**  A rule naming users, teams or the manifest's owners (``owners=True``) counts only
  approvals from those people (the union); owners are users directly and ``@org/team`` entries through
  team membership.  A rule naming nobody counts approvals from anyone with at least ``write`` permission
  on the repository (``anyone_needs``), as the collaborator-permission API reports it; an unknown
  permission is an error, never a guess.  ``count`` distinct approvers are needed.
* Logins and team names compare case-insensitively (GitHub treats them so); ``@`` prefixes are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from modelherd.escape import clip, md_code, md_text, one_line
from modelherd.forges.base import CheckReport, CheckStatus
from modelherd.plan import ApprovalRequirement, ChangeReport

APPROVALS_CHECK = "modelherd/approvals"
PERMISSION_RANK = {"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}
TITLE_LIMIT = 200
_EPOCH = datetime.min.replace(tzinfo=UTC)


class ReviewState(StrEnum):
    APPROVED = "APPROVED"
    CHANGES_REQUESTED = "CHANGES_REQUESTED"
    COMMENTED = "COMMENTED"
    DISMISSED = "DISMISSED"
    PENDING = "PENDING"


DECIDING = frozenset({ReviewState.APPROVED, ReviewState.CHANGES_REQUESTED, ReviewState.DISMISSED})


class RuleStatus(StrEnum):
    SATISFIED = "satisfied"
    PENDING = "pending"     # could still be satisfied by more reviews
    ERROR = "error"         # cannot be decided or cannot ever be satisfied as configured


# ---------------------------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class ApprovalOptions:
    """Per-repository switches; the defaults are the safe choice."""

    require_head_sha: bool = True      # only approvals of the current head commit count
    allow_author: bool = False         # the PR's author may approve their own change
    allow_committers: bool = False     # people who pushed commits to the PR may approve it
    anyone_needs: str = "write"        # permission that rules naming nobody ask of an approver


def normalise_state(state: str | ReviewState) -> ReviewState:
    """``approved`` (webhooks) and ``APPROVED`` (REST) are the same state."""
    try:
        return ReviewState(str(state).strip().upper())
    except ValueError:
        raise ValueError(f"unknown review state {state!r}") from None


def _timestamp(value: str | datetime | None) -> datetime:
    """RFC 3339 text or a datetime as an aware datetime; missing times sort first."""
    if value is None or value == "":
        return _EPOCH
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Review:
    """One submitted (or draft) review, in forge-neutral terms; the state is normalised on creation."""

    user: str
    user_type: str = "User"
    state: ReviewState = ReviewState.COMMENTED
    commit_id: str | None = None
    submitted_at: str | datetime | None = None
    id: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", normalise_state(self.state))
        try:
            _timestamp(self.submitted_at)
        except (TypeError, ValueError):
            raise ValueError(f"submitted_at {self.submitted_at!r} is not an RFC 3339 time") from None

    @property
    def order(self) -> tuple[datetime, int]:
        """Sort key: submission time, then the forge's id (which grows with time) for equal times."""
        return (_timestamp(self.submitted_at), int(self.id or 0))

    @classmethod
    def from_github(cls, data: Mapping[str, Any]) -> Review:
        """A review object as GitHub's REST API or a ``pull_request_review`` webhook carries it."""
        user = data.get("user") or {}
        return cls(user=str(user.get("login") or ""), user_type=str(user.get("type") or "User"),
                   state=data.get("state") or "COMMENTED", commit_id=data.get("commit_id"),
                   submitted_at=data.get("submitted_at"), id=int(data.get("id") or 0))


@dataclass(frozen=True)
class PullFacts:
    """What the forge says about one pull request now (never a webhook payload's copy)."""

    author: str
    head_sha: str
    reviews: tuple[Review, ...] = ()
    committers: frozenset[str] = frozenset()
    team_members: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # team → user → state
    bots: frozenset[str] = frozenset()                 # extra logins the server treats as bots
    permissions: Mapping[str, str] = field(default_factory=dict)  # user → admin|maintain|write|...
    from_fork: bool = False                            # informational: the author is the author either way
    teams_partial: bool = False                        # team_members lists only the reviewers, not every member


def login_key(login: str) -> str:
    """How logins compare: case-insensitively, without a leading ``@``."""
    return login.strip().lstrip("@").lower()


def is_team(entry: str) -> bool:
    """``@org/team`` (or ``org/team``) names a team; anything else a user."""
    return "/" in entry


# --------------------------------------------------------------------------------------- requirements


@dataclass(frozen=True)
class RequirementWithOwners:
    """An approval rule to evaluate: a plan's requirement, with the owners it refers to resolved.

    ``owners`` holds the manifest's owners (users and ``@org/team`` entries) when the requirement asks
    for them (``requirement.owners``), else nothing; ``models`` are the models the rule covers.
    """

    requirement: ApprovalRequirement
    owners: tuple[str, ...] = ()
    models: tuple[str, ...] = ()

    @property
    def environment(self) -> str:
        return self.requirement.environment

    @property
    def count(self) -> int:
        return self.requirement.count

    @property
    def restricted(self) -> bool:
        """Whether the rule names who may approve (else anyone with the needed permission may)."""
        req = self.requirement
        return bool(req.owners or req.users or req.teams)

    def allowed(self) -> tuple[str, ...]:
        """Everyone the rule names, as written: owners first, then users, then teams."""
        return _unique_keys([*self.owners, *self.requirement.users, *self.requirement.teams])

    def allowed_users(self) -> set[str]:
        return {login_key(e) for e in self.allowed() if not is_team(e)}

    def allowed_teams(self) -> set[str]:
        return {login_key(e) for e in self.allowed() if is_team(e)}

    def who(self) -> str:
        """Who may approve, as written: ``alice, @acme/risk-ml`` or ``anyone with write access``."""
        return ", ".join(self.allowed()) if self.restricted else "anyone with write access"

    def describe(self) -> str:
        """Plain text: ``1 approval from the owners of fraud-detector in production``."""
        noun = "approval" if self.count == 1 else "approvals"
        parts = []
        if self.requirement.owners:
            parts.append(f"the owners of {', '.join(self.models) or 'the model'}")
        names = [*self.requirement.users, *self.requirement.teams]
        if names:
            parts.append(", ".join(names))
        who = " or ".join(parts) if parts else "anyone with write access"
        return f"{self.count} {noun} from {who} in {self.environment}"


def _unique_keys(entries: Iterable[str]) -> tuple[str, ...]:
    """Entries in order, the first spelling of each login or team kept."""
    seen: set[str] = set()
    out = []
    for entry in entries:
        if login_key(entry) not in seen:
            seen.add(login_key(entry))
            out.append(entry)
    return tuple(out)


def _merge(prev: RequirementWithOwners, new: RequirementWithOwners) -> RequirementWithOwners:
    """Two identical rules of one environment as one: the larger count, every reason and model kept."""
    a, b = prev.requirement, new.requirement
    reasons = a.reason if b.reason in a.reason.split("; ") else f"{a.reason}; {b.reason}"
    merged = ApprovalRequirement(a.environment, max(a.count, b.count), reasons, a.users, a.teams, a.owners)
    return RequirementWithOwners(merged, prev.owners, tuple(dict.fromkeys([*prev.models, *new.models])))


def requirements_for(reports: Iterable[ChangeReport]) -> list[RequirementWithOwners]:
    """The approval rules of a plan, one per environment and set of approvers.

    Owners are read from the **base** manifest whenever the model exists there, so a pull request cannot
    name its own approvers by editing ``metadata.owners``; only a model the PR creates takes its owners
    from the head (there is nothing else to read).

    Requirements with the same environment, users, teams and no owners are merged across models (the
    larger count wins, reasons are joined).  Requirements asking for owners stay one per model, since
    each model has its own owners: "1 approval from the owners of fraud-detector" and "… of
    churn-model" are separate rules even when their owners overlap.  Requirements with ``count == 0``
    ask nothing and are dropped.
    """
    merged: dict[tuple, RequirementWithOwners] = {}
    for report in reports:
        deployment = report.change.base or report.change.deployment
        for req in report.approvals:
            if req.count <= 0:
                continue
            owners = _unique_keys(deployment.owners) if req.owners else ()
            rule = RequirementWithOwners(req, owners, (report.change.name,))
            key = (req.environment, tuple(map(login_key, req.users)), tuple(map(login_key, req.teams)),
                   req.owners, report.change.name if req.owners else None)
            merged[key] = _merge(merged[key], rule) if key in merged else rule
    return list(merged.values())


def teams_needed(requirements: Iterable[RequirementWithOwners]) -> set[str]:
    """Teams whose memberships the caller must fetch (as normalised ``org/team`` keys)."""
    return {team for req in requirements for team in req.allowed_teams()}


# ----------------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict, with who counted, who did not (and why), and who blocks it."""

    requirement: RequirementWithOwners
    status: RuleStatus
    approvers: tuple[str, ...]
    missing: int
    explanation: str
    blocked_by: tuple[str, ...] = ()
    ignored: tuple[tuple[str, str], ...] = ()       # (login, why the review did not count)


@dataclass(frozen=True)
class ApprovalOutcome:
    results: tuple[RuleResult, ...]
    status: RuleStatus
    head_sha: str = ""

    @property
    def approved(self) -> bool:
        return self.status is RuleStatus.SATISFIED


def latest_votes(reviews: Iterable[Review]) -> dict[str, Review]:
    """Each reviewer's latest deciding review (approved, changes requested, dismissed), by login key.

    Comment-only and pending (draft) reviews are skipped: they neither vote nor replace a vote.
    """
    votes: dict[str, Review] = {}
    for review in sorted(reviews, key=lambda r: r.order):
        if review.state in DECIDING and review.user:
            votes[login_key(review.user)] = review
    return votes


def is_bot(review: Review, facts: PullFacts) -> bool:
    """Bots and apps: ``type`` Bot (or any non-user type), a ``[bot]`` login, or a listed bot."""
    kind = (review.user_type or "User").strip().lower()
    return (kind != "user" or review.user.lower().endswith("[bot]")
            or login_key(review.user) in {login_key(b) for b in facts.bots})


@dataclass(frozen=True)
class _Eligibility:
    ok: bool
    why_not: str = ""
    unknown: bool = False        # could not be decided from the facts (missing permission or team)


def _membership(user: str, teams: Iterable[str], facts: PullFacts) -> tuple[bool, list[str]]:
    """(an active member of one of ``teams``, the teams where the membership is only pending)."""
    members = {login_key(t): {login_key(u): str(s).lower() for u, s in m.items()}
               for t, m in facts.team_members.items()}
    pending = []
    for team in sorted(teams):
        state = members.get(team, {}).get(user)
        if state == "active":
            return True, []
        if state is not None:
            pending.append(team)
    return False, pending


def _eligible(review: Review, rule: RequirementWithOwners, facts: PullFacts, options: ApprovalOptions) -> _Eligibility:
    """Whether ``review``'s author may approve ``rule``, and if not, why (in words)."""
    user = login_key(review.user)
    if is_bot(review, facts):
        return _Eligibility(False, "a bot or app")
    if user == login_key(facts.author) and not options.allow_author:
        return _Eligibility(False, "the pull request's author")
    if user in {login_key(c) for c in facts.committers} and not options.allow_committers:
        return _Eligibility(False, "pushed commits to this pull request")
    if not rule.restricted:
        return _has_permission(user, facts, options)
    if user in rule.allowed_users():
        return _Eligibility(True)
    active, pending = _membership(user, rule.allowed_teams(), facts)
    if active:
        return _Eligibility(True)
    if pending:
        return _Eligibility(False, f"membership of {', '.join('@' + t for t in pending)} is pending, not active")
    return _Eligibility(False, f"not among {', '.join(rule.allowed())}")


def _has_permission(user: str, facts: PullFacts, options: ApprovalOptions) -> _Eligibility:
    """Rules naming nobody: the reviewer needs ``options.anyone_needs`` on the repository."""
    perms = {login_key(u): str(p).lower() for u, p in facts.permissions.items()}
    if user not in perms:
        return _Eligibility(False, "repository permission unknown", unknown=True)
    if PERMISSION_RANK.get(perms[user], 0) < PERMISSION_RANK[options.anyone_needs]:
        return _Eligibility(False, f"has {perms[user]} permission, {options.anyone_needs} is needed")
    return _Eligibility(True)


def _pool(rule: RequirementWithOwners, facts: PullFacts, options: ApprovalOptions) -> set[str] | None:
    """Everyone who could ever approve a restricted rule, or None when that is not knowable here."""
    if not rule.restricted or rule.allowed_teams() - {login_key(t) for t in facts.team_members}:
        return None
    if facts.teams_partial and rule.allowed_teams():
        return None          # members who have not reviewed yet are unknown: they may still approve
    people = set(rule.allowed_users())
    for team, members in facts.team_members.items():
        if login_key(team) in rule.allowed_teams():
            people |= {login_key(u) for u, s in members.items() if str(s).lower() == "active"}
    excluded = {login_key(b) for b in facts.bots} | {p for p in people if p.endswith("[bot]")}
    if not options.allow_author:
        excluded.add(login_key(facts.author))
    if not options.allow_committers:
        excluded |= {login_key(c) for c in facts.committers}
    return people - excluded


def _short(sha: str | None) -> str:
    return (sha or "unknown")[:7]


def _judge(rule: RequirementWithOwners, votes: dict[str, Review], facts: PullFacts,
           options: ApprovalOptions) -> tuple[list[str], list[str], list[tuple[str, str]], list[str]]:
    """(approvers, blockers, ignored with reasons, reviewers whose standing is unknown) for one rule."""
    approvers, blockers, ignored, unknown = [], [], [], []
    for review in votes.values():
        if review.state is ReviewState.DISMISSED:
            ignored.append((review.user, "review dismissed"))
            continue
        who = _eligible(review, rule, facts, options)
        if who.unknown:
            unknown.append(review.user)
        if not who.ok:
            ignored.append((review.user, who.why_not))
        elif review.state is ReviewState.CHANGES_REQUESTED:
            blockers.append(review.user)
        elif options.require_head_sha and review.commit_id != facts.head_sha:
            ignored.append((review.user, f"approved an older commit {_short(review.commit_id)}"))
        else:
            approvers.append(review.user)
    return approvers, blockers, ignored, unknown


def evaluate_rule(rule: RequirementWithOwners, facts: PullFacts,
                  options: ApprovalOptions = ApprovalOptions()) -> RuleResult:
    """One rule against the PR's facts: satisfied, pending (more reviews could do it) or error."""
    approvers, blockers, ignored, unknown = _judge(rule, latest_votes(facts.reviews), facts, options)
    missing = max(0, rule.count - len(approvers))
    unknown_teams = sorted(rule.allowed_teams() - {login_key(t) for t in facts.team_members})
    pool = _pool(rule, facts, options)
    if not missing and not blockers:
        status, text = RuleStatus.SATISFIED, f"approved by {', '.join(approvers)}"
    elif pool is not None and len(pool) < rule.count:
        status = RuleStatus.ERROR
        text = (f"cannot be satisfied: {rule.count} approval(s) needed but only {len(pool)} eligible "
                f"reviewer(s) ({', '.join(sorted(pool)) or 'nobody'}), once the author, committers and bots "
                "are left out")
    elif unknown_teams and missing:
        status = RuleStatus.ERROR
        text = f"membership of {', '.join('@' + t for t in unknown_teams)} is unknown; re-run when it can be read"
    elif unknown and missing:
        status = RuleStatus.ERROR
        text = f"repository permission unknown for {', '.join(unknown)}; re-run when it can be read"
    else:
        status = RuleStatus.PENDING
        text = _pending_text(rule, missing, blockers)
    if approvers and status is not RuleStatus.SATISFIED:
        text += f"; counted so far: {', '.join(approvers)}"
    return RuleResult(rule, status, tuple(approvers), missing, text, tuple(blockers), tuple(ignored))


def _pending_text(rule: RequirementWithOwners, missing: int, blockers: list[str]) -> str:
    parts = []
    if blockers:
        parts.append(f"changes requested by {', '.join(blockers)} (blocks until they approve or the review "
                     "is dismissed)")
    if missing:
        parts.append(f"{missing} more approval{'s' * (missing != 1)} needed from {rule.who()}")
    return "; ".join(parts)


def evaluate(requirements: Iterable[RequirementWithOwners], facts: PullFacts,
             options: ApprovalOptions = ApprovalOptions()) -> ApprovalOutcome:
    """Every rule against the PR's facts; overall: error if any rule errs, else pending if any waits."""
    results = tuple(evaluate_rule(rule, facts, options) for rule in requirements)
    statuses = {r.status for r in results}
    overall = next((s for s in (RuleStatus.ERROR, RuleStatus.PENDING) if s in statuses), RuleStatus.SATISFIED)
    return ApprovalOutcome(results, overall, facts.head_sha)


# ------------------------------------------------------------------------------------------- output

_ICON = {RuleStatus.SATISFIED: "✅", RuleStatus.PENDING: "⏳", RuleStatus.ERROR: "❌"}


def _names_md(names: Iterable[str]) -> str:
    return ", ".join(md_text(n) for n in names)


def _rule_md(result: RuleResult) -> list[str]:
    """One rule as a Markdown list item, with who counted, who is needed and who did not count."""
    rule = result.requirement
    lines = [f"- {_ICON[result.status]} **{md_text(rule.describe())}** — {md_text(result.status.value)}",
             f"  - why: {md_text(rule.requirement.reason)}"]
    if result.approvers:
        lines.append(f"  - approved by: {_names_md(result.approvers)}")
    if result.blocked_by:
        lines.append(f"  - changes requested by: {_names_md(result.blocked_by)}")
    if result.status is not RuleStatus.SATISFIED:
        lines.append(f"  - {md_text(result.explanation)}")
    for user, why in result.ignored:
        lines.append(f"  - not counted: {md_text(user)} ({md_text(why)})")
    return lines


def title(outcome: ApprovalOutcome) -> str:
    """One line for the check's title: who is still needed, or that all is approved."""
    if not outcome.results:
        return "No approval needed"
    if outcome.status is RuleStatus.SATISFIED:
        return f"Approved ({len(outcome.results)} rule{'s' * (len(outcome.results) != 1)} satisfied)"
    if outcome.status is RuleStatus.ERROR:
        bad = next(r for r in outcome.results if r.status is RuleStatus.ERROR)
        return f"Cannot be approved as configured: {bad.requirement.describe()}"
    waiting = [r for r in outcome.results if r.status is RuleStatus.PENDING]
    first = waiting[0]
    head = (f"Changes requested by {', '.join(first.blocked_by)}" if first.blocked_by
            else f"Waiting for {first.missing} approval{'s' * (first.missing != 1)} from {first.requirement.who()}")
    return head + (f" (+{len(waiting) - 1} more rule{'s' * (len(waiting) > 2)})" if len(waiting) > 1 else "")


def summary_markdown(outcome: ApprovalOutcome) -> str:
    """The approvals state as Markdown for the check summary and the plan comment (all text escaped)."""
    if not outcome.results:
        return "No approval is needed for this change."
    done = sum(r.status is RuleStatus.SATISFIED for r in outcome.results)
    head = f"{done} of {len(outcome.results)} approval rule(s) satisfied"
    if outcome.head_sha:
        head += f" at {md_code(_short(outcome.head_sha))}"
    lines = [head + ".", ""]
    for result in outcome.results:
        lines.extend(_rule_md(result))
    return "\n".join(lines)


def check_report(outcome: ApprovalOutcome) -> CheckReport:
    """The ``modelherd/approvals`` check: in progress while pending, success once approved, failure on error."""
    text = clip(one_line(title(outcome)), TITLE_LIMIT)   # a check title is plain text, not Markdown
    summary = summary_markdown(outcome)
    if outcome.status is RuleStatus.PENDING:
        return CheckReport(APPROVALS_CHECK, CheckStatus.IN_PROGRESS, None, text, summary)
    conclusion = "success" if outcome.status is RuleStatus.SATISFIED else "failure"
    return CheckReport(APPROVALS_CHECK, CheckStatus.COMPLETED, conclusion, text, summary)
