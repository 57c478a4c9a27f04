"""Approval semantics, one test per rule: each would fail if the rule it names were dropped.

The rules are evaluated as pure functions of the PR's facts (:mod:`modelherd.checks.approvals`); the
requirements come from real manifests (``examples/repo``) through :func:`requirements_for`.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from modelherd.checks.approvals import (
    APPROVALS_CHECK, ApprovalOptions, PullFacts, RequirementWithOwners, Review, ReviewState, RuleStatus,
    check_report, evaluate, evaluate_rule, latest_votes, requirements_for, summary_markdown, teams_needed, title,
)
from modelherd.escape import ZWSP
from modelherd.forges.base import CheckStatus
from modelherd.loading import load_files
from modelherd.plan import ApprovalRequirement, ChangeReport, changes
from tests.gitrepo import EXAMPLES

HEAD, OLD = "c0ffee" * 6 + "beef", "deadbeef" * 5
RISK = "@acme/risk-ml"


def owners_rule(owners=("alice", RISK), count=1, model="fraud-detector") -> RequirementWithOwners:
    """``count`` approvals from the owners of ``model`` in production."""
    req = ApprovalRequirement("production", count, "version 2 enters protected production", owners=True)
    return RequirementWithOwners(req, tuple(owners), (model,))


def open_rule(count=1) -> RequirementWithOwners:
    """A rule that names nobody: anyone with write access may approve."""
    return RequirementWithOwners(ApprovalRequirement("staging", count, "staging change"), (), ("churn-model",))


_ids = iter(range(1, 10_000))


def review(user, state="APPROVED", *, sha=HEAD, at="2026-11-26T10:00:00Z", kind="User", id=None) -> Review:
    return Review(user=user, user_type=kind, state=state, commit_id=sha, submitted_at=at,
                  id=next(_ids) if id is None else id)


def facts(*reviews, author="mallory", teams=None, **kw) -> PullFacts:
    members = {"acme/risk-ml": {"rita": "active", "pete": "pending"}} if teams is None else teams
    return PullFacts(author=author, head_sha=HEAD, reviews=tuple(reviews), team_members=members, **kw)


def status(rule, f, **options) -> RuleStatus:
    return evaluate_rule(rule, f, ApprovalOptions(**options)).status


# ------------------------------------------------------------------------- who counts


def test_an_owner_approval_on_the_head_satisfies_the_rule():
    result = evaluate_rule(owners_rule(), facts(review("alice")))
    assert result.status is RuleStatus.SATISFIED and result.approvers == ("alice",) and result.missing == 0


def test_only_owners_count_for_an_owners_rule():
    result = evaluate_rule(owners_rule(), facts(review("carol")))
    assert result.status is RuleStatus.PENDING and result.missing == 1
    assert result.ignored == (("carol", "not among alice, @acme/risk-ml"),)


def test_team_owners_count_through_active_membership():
    assert status(owners_rule(), facts(review("RITA"))) is RuleStatus.SATISFIED   # logins compare case-blind


def test_a_pending_team_member_does_not_count():
    result = evaluate_rule(owners_rule(), facts(review("pete")))
    assert result.status is RuleStatus.PENDING
    assert "pending, not active" in result.ignored[0][1]
    active = facts(review("pete"), teams={"acme/risk-ml": {"pete": "active"}})
    assert status(owners_rule(), active) is RuleStatus.SATISFIED


def test_count_means_distinct_approvers():
    rule = owners_rule(count=2)
    assert status(rule, facts(review("alice"), review("alice", at="2026-11-26T11:00:00Z"))) is RuleStatus.PENDING
    assert status(rule, facts(review("alice"), review("rita"))) is RuleStatus.SATISFIED


def test_users_restrict_who_counts():
    req = ApprovalRequirement("production", 1, "platform sign-off", users=("sam",), teams=("@acme/platform",))
    rule = RequirementWithOwners(req)
    teams = {"acme/platform": {"pat": "active"}}
    assert status(rule, facts(review("alice"), teams=teams)) is RuleStatus.PENDING
    assert status(rule, facts(review("sam"), teams=teams)) is RuleStatus.SATISFIED
    assert status(rule, facts(review("pat"), teams=teams)) is RuleStatus.SATISFIED


def test_self_approval_does_not_count():
    rule = owners_rule(owners=("alice",))
    f = facts(review("alice"), author="alice", teams={})
    result = evaluate_rule(rule, replace(f, reviews=(review("alice"), review("rita"))))
    assert ("alice", "the pull request's author") in result.ignored
    assert status(owners_rule(), facts(review("alice"), author="alice")) is RuleStatus.PENDING
    assert status(owners_rule(), facts(review("alice"), author="alice"), allow_author=True) is RuleStatus.SATISFIED


def test_a_fork_pr_author_is_the_author():
    f = facts(review("Alice"), author="alice", from_fork=True)
    result = evaluate_rule(owners_rule(), f)
    assert result.status is RuleStatus.PENDING and result.ignored == (("Alice", "the pull request's author"),)


def test_committers_do_not_count():
    f = facts(review("alice"), committers=frozenset({"Alice"}))
    assert status(owners_rule(), f) is RuleStatus.PENDING
    assert status(owners_rule(), f, allow_committers=True) is RuleStatus.SATISFIED


@pytest.mark.parametrize("approver, kind, bots", [
    ("alice", "Bot", frozenset()),                  # an app acting as alice's login would still be a Bot
    ("rita[bot]", "User", frozenset()),             # a [bot] login whatever the type says
    ("alice", "User", frozenset({"ALICE"})),        # a machine user the server lists as a bot
    ("alice", "Mannequin", frozenset()),            # placeholders of imported accounts are not people
])
def test_a_bot_approval_does_not_count(approver, kind, bots):
    teams = {"acme/risk-ml": {"rita[bot]": "active"}}
    result = evaluate_rule(owners_rule(), facts(review(approver, kind=kind), teams=teams, bots=bots))
    assert result.status is not RuleStatus.SATISFIED
    assert result.ignored == ((approver, "a bot or app"),)


def test_a_rule_naming_nobody_needs_write_permission():
    rule = open_rule()
    assert status(rule, facts(review("walt"), permissions={"walt": "write"})) is RuleStatus.SATISFIED
    assert status(rule, facts(review("walt"), permissions={"walt": "admin"})) is RuleStatus.SATISFIED
    assert status(rule, facts(review("rick"), permissions={"rick": "read"})) is RuleStatus.PENDING
    unknown = evaluate_rule(rule, facts(review("rick")))
    assert unknown.status is RuleStatus.ERROR and "permission unknown for rick" in unknown.explanation


# ------------------------------------------------------------------------- which review counts


def test_only_the_latest_review_counts():
    later = "2026-11-26T12:00:00Z"
    # given out of order: the later changes-requested wins over the earlier approval
    f = facts(review("alice", "CHANGES_REQUESTED", at=later), review("alice", "APPROVED"))
    result = evaluate_rule(owners_rule(), f)
    assert result.status is RuleStatus.PENDING and result.blocked_by == ("alice",)
    f = facts(review("alice", "CHANGES_REQUESTED"), review("alice", "APPROVED", at=later))
    assert status(owners_rule(), f) is RuleStatus.SATISFIED


def test_equal_times_are_ordered_by_id():
    f = facts(review("alice", "APPROVED", id=2), review("alice", "CHANGES_REQUESTED", id=1))
    assert status(owners_rule(), f) is RuleStatus.SATISFIED
    f = facts(review("alice", "APPROVED", id=1), review("alice", "CHANGES_REQUESTED", id=2))
    assert status(owners_rule(), f) is RuleStatus.PENDING


def test_a_stale_approval_after_a_push_does_not_count():
    result = evaluate_rule(owners_rule(), facts(review("alice", sha=OLD)))
    assert result.status is RuleStatus.PENDING
    assert result.ignored == (("alice", f"approved an older commit {OLD[:7]}"),)
    assert status(owners_rule(), facts(review("alice", sha=OLD)), require_head_sha=False) is RuleStatus.SATISFIED


def test_review_states_are_normalised():
    assert review("alice", "approved").state is ReviewState.APPROVED           # webhook spelling
    assert status(owners_rule(), facts(review("alice", "approved"))) is RuleStatus.SATISFIED
    with pytest.raises(ValueError):
        review("alice", "LGTM")


def test_changes_requested_blocks_even_when_the_count_is_met():
    f = facts(review("alice"), review("rita", "changes_requested", sha=OLD))   # an older commit still blocks
    result = evaluate_rule(owners_rule(), f)
    assert result.status is RuleStatus.PENDING and result.missing == 0 and result.blocked_by == ("rita",)
    assert "changes requested by rita" in result.explanation


def test_changes_requested_by_someone_who_could_not_approve_does_not_block():
    f = facts(review("alice"), review("carol", "CHANGES_REQUESTED"), review("ci[bot]", "CHANGES_REQUESTED"))
    assert status(owners_rule(), f) is RuleStatus.SATISFIED


def test_changes_requested_then_dismissed_unblocks_but_does_not_approve():
    requested = review("rita", "CHANGES_REQUESTED", at="2026-11-26T09:00:00Z")
    assert status(owners_rule(), facts(review("alice"), requested)) is RuleStatus.PENDING
    dismissed = replace(requested, state=ReviewState.DISMISSED)
    assert status(owners_rule(), facts(review("alice"), dismissed)) is RuleStatus.SATISFIED
    # rita's own earlier approval is not resurrected by the dismissal of her later review
    earlier = review("rita", at="2026-11-26T08:00:00Z")
    result = evaluate_rule(owners_rule(), facts(earlier, dismissed))
    assert result.status is RuleStatus.PENDING and result.approvers == ()


def test_a_dismissed_approval_does_not_count():
    assert status(owners_rule(), facts(review("alice", "DISMISSED"))) is RuleStatus.PENDING


def test_a_pending_review_neither_approves_nor_erases():
    draft = review("alice", "PENDING", at=None)
    assert status(owners_rule(), facts(draft)) is RuleStatus.PENDING
    assert status(owners_rule(), facts(review("alice"), replace(draft, id=10**6))) is RuleStatus.SATISFIED


def test_a_comment_after_an_approval_keeps_the_approval():
    comment = review("alice", "COMMENTED", at="2026-11-26T12:00:00Z")
    assert status(owners_rule(), facts(review("alice"), comment)) is RuleStatus.SATISFIED
    assert status(owners_rule(), facts(comment)) is RuleStatus.PENDING
    assert latest_votes([review("alice"), comment])["alice"].state is ReviewState.APPROVED


# ------------------------------------------------------------------------- rules that cannot be met


def test_a_rule_nobody_else_can_satisfy_is_an_error():
    result = evaluate_rule(owners_rule(owners=("alice",)), facts(author="alice", teams={}))
    assert result.status is RuleStatus.ERROR and "cannot be satisfied" in result.explanation


def test_unknown_team_membership_is_an_error_not_a_guess():
    result = evaluate_rule(owners_rule(), facts(review("rita"), teams={}))
    assert result.status is RuleStatus.ERROR and "@acme/risk-ml is unknown" in result.explanation
    assert status(owners_rule(), facts(review("alice"), teams={})) is RuleStatus.SATISFIED
    assert teams_needed([owners_rule()]) == {"acme/risk-ml"}


# ------------------------------------------------------------------------- outcome and outputs


def test_overall_status_is_the_worst_rule():
    ok, waiting = owners_rule(), owners_rule(owners=("bob",), model="churn-model")
    assert evaluate([ok], facts(review("alice"))).status is RuleStatus.SATISFIED
    assert evaluate([ok, waiting], facts(review("alice"))).status is RuleStatus.PENDING
    broken = owners_rule(owners=("mallory",), model="x")
    assert evaluate([ok, waiting, broken], facts(review("alice"))).status is RuleStatus.ERROR
    assert evaluate([], facts()).approved


def test_check_report_follows_the_outcome():
    pending = check_report(evaluate([owners_rule()], facts()))
    assert pending.name == APPROVALS_CHECK and pending.status is CheckStatus.IN_PROGRESS
    assert pending.conclusion is None and pending.title == "Waiting for 1 approval from alice, @acme/risk-ml"
    done = check_report(evaluate([owners_rule()], facts(review("alice"))))
    assert (done.status, done.conclusion) == (CheckStatus.COMPLETED, "success")
    failed = check_report(evaluate([owners_rule(owners=("mallory",))], facts()))
    assert (failed.status, failed.conclusion) == (CheckStatus.COMPLETED, "failure")
    blocked = check_report(evaluate([owners_rule()], facts(review("alice", "CHANGES_REQUESTED"))))
    assert blocked.title == "Changes requested by alice"


def test_summary_says_who_is_needed_and_escapes_what_others_wrote():
    req = ApprovalRequirement("production", 1, "<img src=x> @everyone *now*", owners=True)
    rule = RequirementWithOwners(req, ("alice", RISK), ("fraud-detector",))
    text = summary_markdown(evaluate([rule], facts(review("carol"))))
    assert "1 more approval needed from alice, @" + ZWSP + "acme/risk-ml" in text
    assert "&lt;img src=x&gt;" in text and "@" + ZWSP + "everyone" in text and "\\*now\\*" in text
    assert "<img" not in text and "not counted: carol" in text
    assert title(evaluate([], facts())) == "No approval needed"


# ------------------------------------------------------------------------- where rules come from


def _reports(*models: str) -> list[ChangeReport]:
    """Reports creating ``models`` (from examples/repo) in every environment, without approvals yet."""
    files = {f"models/{m}.yaml": (EXAMPLES / "repo" / "models" / f"{m}.yaml").read_bytes() for m in models}
    return [ChangeReport(c) for c in changes([], load_files(files).manifests)]


def _ask(reports, env, *reqs):
    for r in reports:
        if r.change.environment == env:
            r.approvals.extend(replace(q, environment=env) for q in reqs)


def test_owners_rules_stay_one_per_model_with_each_models_owners():
    reports = _reports("fraud-detector", "churn-model")
    _ask(reports, "production", ApprovalRequirement("production", 1, "protected", owners=True))
    rules = requirements_for(reports)
    assert sorted((r.models, r.owners) for r in rules) == [
        (("churn-model",), ("bob",)), (("fraud-detector",), ("alice", RISK))]
    assert {r.describe() for r in rules} == {"1 approval from the owners of churn-model in production",
                                            "1 approval from the owners of fraud-detector in production"}


def test_identical_rules_merge_across_models_with_the_larger_count():
    reports = _reports("fraud-detector", "churn-model")
    platform = ApprovalRequirement("production", 1, "platform review", teams=("@acme/platform",))
    _ask(reports, "production", platform)
    reports[0].approvals.append(replace(platform, count=2, reason="big change"))
    _ask(reports, "staging", ApprovalRequirement("staging", 0, "nothing"))
    [rule] = requirements_for(reports)
    assert rule.count == 2 and rule.owners == () and set(rule.models) == {"fraud-detector", "churn-model"}
    assert rule.requirement.reason == "platform review; big change"
    assert rule.describe() == "2 approvals from @acme/platform in production"


def test_owners_come_from_the_base_so_a_pr_cannot_name_its_own_approvers():
    text = (EXAMPLES / "repo" / "models" / "fraud-detector.yaml").read_text()
    head_files = {"models/fraud-detector.yaml": text.replace('owners: [alice, "@acme/risk-ml"]', "owners: [mallory2]")
                  .replace("version: 1}", "version: 2}").encode()}
    updated = changes(load_files({"models/fraud-detector.yaml": text.encode()}).manifests,
                      load_files(head_files).manifests)
    reports = [ChangeReport(c) for c in updated]
    _ask(reports, "production", ApprovalRequirement("production", 1, "protected", owners=True))
    [rule] = requirements_for(reports)
    assert rule.owners == ("alice", RISK)
    assert status(rule, facts(review("mallory2"))) is RuleStatus.PENDING


def test_reviews_need_a_valid_time_and_a_known_state():
    with pytest.raises(ValueError, match="RFC 3339"):
        review("alice", at="yesterday")
    assert Review.from_github({"user": None, "state": "approved"}).user == ""      # a deleted account
    assert latest_votes([Review.from_github({"user": None, "state": "APPROVED"})]) == {}
