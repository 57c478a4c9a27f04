"""Approvals, PR commands and locks end to end through the fake GitHub (github.com and GHES 3.19).

Each test sets up reviews, team memberships and permissions on the fake, delivers the real webhook
payloads, runs the worker, and reads what a user would see: the `modelherd/approvals` check, the
plan comment and the bot's replies.
"""

from __future__ import annotations

import pytest

from modelherd.registry.memory import InMemoryRegistry
from tests.github_app import GitHubApp

pytestmark = pytest.mark.parametrize("fake_github", ["github.com", "ghes-3.19"], indirect=True)
PASSED = {"validation_status": "passed"}


@pytest.fixture
def app(fake_github, tmp_path):
    reg = InMemoryRegistry()
    for v, auc in ((1, 0.931), (2, 0.947), (3, 0.95)):
        reg.add("fraud-detector", v, metrics={"auc": auc, "latency_p99_ms": 30}, tags=PASSED)
    harness = GitHubApp(fake_github, tmp_path, reg)
    fake_github.add_team_member("acme", "risk-ml", "bob")
    fake_github.add_team_member("acme", "risk-ml", "dave")
    fake_github.add_team_member("acme", "risk-ml", "carol", state="pending")
    for user in ("alice", "bob", "dave"):
        fake_github.set_permission(harness.repo, user, "write")
    fake_github.set_permission(harness.repo, "mallory", "read")
    yield harness
    harness.close()


def open_pr(app, old=1, new=2, author="alice"):
    number = app.pull_request(app.bump("fraud-detector", old, new), author=author)
    app.deliver("pull_request", app.pull_request_payload("opened", number))
    app.work()
    return number


def review(app, number, user, state="APPROVED", commit_id=None):
    review_id = app.fake.add_review(app.repo, number, user, state, commit_id=commit_id)
    app.deliver("pull_request_review", app.review_payload("submitted", number, user, state))
    app.work()
    return review_id


def approvals(app, number):
    return app.check(app.fake.pull(app.repo, number).head_sha, "modelherd/approvals")


def test_an_owner_team_member_approving_the_head_satisfies_production(app):
    number = open_pr(app)
    check = approvals(app, number)
    assert check.status == "in_progress" and "Waiting for 1 approval" in check.output["title"]
    review(app, number, "bob")
    check = approvals(app, number)
    assert (check.status, check.conclusion) == ("completed", "success")
    [comment] = app.comments(number)
    assert "1 of 1 approval rule(s) satisfied" in comment.body     # the comment and the check agree


def test_an_approval_goes_stale_when_the_head_moves(app):
    number = open_pr(app)
    review(app, number, "bob")
    app.fake.push_to_pull(app.repo, number, app.bump("fraud-detector", 1, 3))
    app.deliver("pull_request", app.pull_request_payload("synchronize", number))
    app.work()
    assert approvals(app, number).status == "in_progress"
    assert "0 of 1" in app.comments(number)[0].body


@pytest.mark.parametrize("reviewer", ["alice", "ci-helper[bot]", "carol"], ids=["author", "bot", "pending-member"])
def test_approvals_that_do_not_count(app, reviewer):
    number = open_pr(app)
    review(app, number, reviewer)
    assert approvals(app, number).status == "in_progress"


def test_changes_requested_block_until_dismissed(app):
    number = open_pr(app)
    blocking = review(app, number, "bob", "CHANGES_REQUESTED")
    review(app, number, "dave")
    check = approvals(app, number)
    assert check.status == "in_progress" and "Changes requested by bob" in check.output["title"]
    app.fake.dismiss_review(blocking)
    app.deliver("pull_request_review", app.review_payload("dismissed", number, "bob", "dismissed"))
    app.work()
    assert approvals(app, number).conclusion == "success"


def test_help_command_gets_eyes_and_a_reply(app):
    number = open_pr(app)
    app.comment(number, "mallory", "What can you do?\n/help")
    app.work()
    reply = app.comments(number)[-1]
    assert reply.user != "mallory" and "/rollback [env] [--to VERSION]" in reply.body
    asked = [c for c in app.comments(number) if c.user == "mallory"][0]
    assert [r["content"] for r in asked.reactions] == ["eyes"]


def test_commands_in_code_blocks_and_edited_comments_are_ignored(app):
    number = open_pr(app)
    before = len(app.comments(number))
    app.comment(number, "bob", "Run this:\n```\n/unlock\n```\n> /plan\n")
    app.comment(number, "bob", "/unlock", action="edited")
    app.work()
    assert len(app.comments(number)) == before + 2          # the two comments, no reply
    assert app.store.locks(app.repo)                          # nothing was unlocked


def test_a_user_without_write_access_is_refused_with_the_reason(app):
    number = open_pr(app)
    app.comment(number, "mallory", "/unlock")
    app.work()
    reply = app.comments(number)[-1]
    assert "refused" in reply.body and "read access" in reply.body
    assert app.store.locks(app.repo)


def test_two_pull_requests_race_for_one_lock_then_unlock(app):
    first = open_pr(app, 1, 2, author="alice")
    second = open_pr(app, 1, 3, author="dave")
    check = app.check(app.fake.pull(app.repo, second).head_sha)
    assert check.conclusion == "failure"
    assert f"locked by #{first}" in app.comments(second)[0].body.replace("\u200b", "")
    app.comment(first, "alice", "/unlock")
    app.comment(second, "dave", "/plan")
    app.work()
    assert "released fraud-detector/production, fraud-detector/staging" in app.comments(first)[-1].body
    assert app.check(app.fake.pull(app.repo, second).head_sha).conclusion == "success"
    assert {lock.pr_number for lock in app.store.locks(app.repo)} == {second}


def test_closing_a_pull_request_releases_its_locks(app):
    number = open_pr(app)
    assert app.store.locks(app.repo)
    app.deliver("pull_request", app.pull_request_payload("closed", number))
    app.work()
    assert app.store.locks(app.repo) == []


def test_a_rule_changed_on_the_base_branch_reaches_open_pull_requests(app):
    number = open_pr(app)
    assert approvals(app, number).status == "in_progress"
    relaxed = (app.file(".modelherd.yaml").replace("    approvals: {count: 1, owners: true}\n", "")
               .replace("protected: true", "protected: false"))
    sha = app.fake.add_commit(app.repo, {".modelherd.yaml": relaxed}, branch="main", message="No approvals needed")
    payload = app.push_payload(sha)
    payload["commits"] = [{**(payload.get("commits") or [{}])[0], "id": sha, "added": [], "removed": [],
                           "modified": [".modelherd.yaml"]}]
    app.deliver("push", payload)
    app.work()
    check = approvals(app, number)
    assert (check.status, check.conclusion) == ("completed", "success")
    assert "No approval is needed" in app.comments(number)[0].body
