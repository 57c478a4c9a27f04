"""``modelherd approvals``: the dry run over a real git repository (examples/repo) and a reviews file."""

from __future__ import annotations

import itertools
import json

import pytest
from click.testing import CliRunner

from modelherd.approvals_cli import command
from tests.gitrepo import branch, example_repo, git, read

FRAUD, CHURN = "models/fraud-detector.yaml", "models/churn-model.yaml"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELHERD_CONFIG", raising=False)
    return example_repo(tmp_path / "repo")


def bump(repo, rel, model, old, new) -> dict[str, str]:
    return {rel: read(repo, rel).replace(f"name: {model}, version: {old}}}", f"name: {model}, version: {new}}}")}


_ids = itertools.count(1)


def approve(login, commit, state="APPROVED", at="2026-11-26T10:00:00Z", kind="User") -> dict:
    return {"id": next(_ids), "user": {"login": login, "type": kind}, "state": state,
            "commit_id": commit, "submitted_at": at}


def run(repo, tmp_path, reviews, *extra, teams=None):
    reviews_file = tmp_path / "reviews.json"
    reviews_file.write_text(json.dumps(reviews))
    args = ["--repo", str(repo), "--base", "main", "--head", "change", "--reviews", str(reviews_file),
            "--no-registry", "--now", "2026-11-26T12:00:00Z", "--author", "mallory", *extra]
    if teams is not None:
        teams_file = tmp_path / "teams.yaml"
        teams_file.write_text(json.dumps(teams))
        args += ["--teams", str(teams_file)]
    return CliRunner().invoke(command, args)


TEAMS = {"@acme/risk-ml": {"rita": "active", "pete": "pending"}}


def test_an_owner_approval_of_the_head_approves(repo, tmp_path):
    head = branch(repo, "change", bump(repo, FRAUD, "fraud-detector", 1, 2))
    result = run(repo, tmp_path, [approve("alice", head)], teams=TEAMS)
    assert result.exit_code == 0, result.output
    assert "SATISFIED 1 approval from the owners of fraud-detector in production" in result.output
    assert "version 2 enters protected production" in result.output


def test_an_approval_given_before_a_push_is_stale(repo, tmp_path):
    first = branch(repo, "change", bump(repo, FRAUD, "fraud-detector", 1, 2))
    git(repo, "checkout", "-q", "change")
    (repo / "README.md").write_text("a later push\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "push after the approval")
    git(repo, "checkout", "-q", "main")
    result = run(repo, tmp_path, [approve("alice", first)], teams=TEAMS)
    assert result.exit_code == 1, result.output
    assert f"not counted: alice (approved an older commit {first[:7]})" in result.output
    assert run(repo, tmp_path, [approve("alice", first)], "--any-sha", teams=TEAMS).exit_code == 0


def test_self_approval_bots_and_pending_members_explained(repo, tmp_path):
    head = branch(repo, "change", bump(repo, FRAUD, "fraud-detector", 1, 2))
    reviews = [approve("mallory", head), approve("pete", head), approve("risk[bot]", head, kind="Bot")]
    result = run(repo, tmp_path, reviews, teams=TEAMS)
    assert result.exit_code == 1, result.output
    assert "not counted: mallory (the pull request's author)" in result.output
    assert "not counted: pete (membership of @acme/risk-ml is pending, not active)" in result.output
    assert "not counted: risk[bot] (a bot or app)" in result.output
    assert "1 more approval needed from alice, @acme/risk-ml" in result.output


def test_changes_requested_blocks_until_dismissed(repo, tmp_path):
    head = branch(repo, "change", bump(repo, FRAUD, "fraud-detector", 1, 2))
    requested = approve("rita", head, "changes_requested", at="2026-11-26T09:00:00Z")
    assert run(repo, tmp_path, [approve("alice", head), requested], teams=TEAMS).exit_code == 1
    dismissed = {**requested, "state": "DISMISSED"}
    assert run(repo, tmp_path, [approve("alice", head), dismissed], teams=TEAMS).exit_code == 0


def test_each_model_has_its_own_owners_rule(repo, tmp_path):
    files = {**bump(repo, FRAUD, "fraud-detector", 1, 2), **bump(repo, CHURN, "churn-model", 3, 4)}
    head = branch(repo, "change", files)
    result = run(repo, tmp_path, [approve("alice", head)], "--format", "json", teams=TEAMS)
    assert result.exit_code == 1
    rules = {tuple(r["models"]): r for r in json.loads(result.output)["rules"]}
    assert rules[("fraud-detector",)]["status"] == "satisfied"
    assert rules[("churn-model",)]["status"] == "pending"
    assert rules[("churn-model",)]["owners"] == ["bob"] and rules[("churn-model",)]["missing"] == 1
    both = run(repo, tmp_path, [approve("alice", head), approve("bob", head)], teams=TEAMS)
    assert both.exit_code == 0, both.output


def test_a_change_that_needs_no_approval(repo, tmp_path):
    staging_only = {FRAUD: read(repo, FRAUD).replace("replicas: {min: 2, max: 8,", "replicas: {min: 3, max: 8,")}
    branch(repo, "change", staging_only)
    result = run(repo, tmp_path, [])
    assert result.exit_code == 0, result.output
    assert "no approval is needed" in result.output


def test_markdown_output_is_the_check_summary(repo, tmp_path):
    head = branch(repo, "change", bump(repo, FRAUD, "fraud-detector", 1, 2))
    result = run(repo, tmp_path, [approve("carol", head)], "--format", "markdown", teams=TEAMS)
    assert result.exit_code == 1
    assert result.output.startswith("0 of 1 approval rule(s) satisfied at `")
    assert "not counted: carol (not among alice, @\u200bacme/risk-ml)" in result.output


def test_missing_team_membership_is_an_error(repo, tmp_path):
    head = branch(repo, "change", bump(repo, FRAUD, "fraud-detector", 1, 2))
    result = run(repo, tmp_path, [approve("rita", head)])
    assert result.exit_code == 2 and "membership of @acme/risk-ml is unknown" in result.output


@pytest.mark.parametrize("reviews, message", [
    ({"not": "a list"}, "expected a list of reviews"),
    ([{"state": "APPROVED"}], "item 0 needs user.login"),
    ([{"user": {"login": "a"}, "state": "LGTM"}], "unknown review state 'LGTM'"),
])
def test_bad_reviews_files_are_one_line_errors(repo, tmp_path, reviews, message):
    branch(repo, "change", bump(repo, FRAUD, "fraud-detector", 1, 2))
    result = run(repo, tmp_path, reviews)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_an_unknown_revision_is_a_one_line_error(repo, tmp_path):
    result = run(repo, tmp_path, [])        # no branch "change"
    assert result.exit_code == 2 and "Traceback" not in result.output


def _lax(repo) -> None:
    """A branch ``lax`` whose ``.modelherd.yaml`` leaves production open, and ``change`` into it."""
    config = read(repo, ".modelherd.yaml")
    lax = config.replace("    approvals: {count: 1, owners: true}\n", "").replace("protected: true", "protected: false")
    branch(repo, "lax", {".modelherd.yaml": lax})
    branch(repo, "change", bump(repo, FRAUD, "fraud-detector", 1, 2), start="lax")


def _lax_args(repo, tmp_path) -> list[str]:
    """``approvals`` of ``change`` into ``lax``, with no review yet."""
    reviews_file, teams_file = tmp_path / "reviews.json", tmp_path / "teams.json"
    reviews_file.write_text("[]")
    teams_file.write_text(json.dumps(TEAMS))
    return ["--repo", str(repo), "--base", "lax", "--head", "change", "--reviews", str(reviews_file),
            "--teams", str(teams_file), "--no-registry", "--now", "2026-11-26T12:00:00Z", "--author", "mallory"]


def test_the_rules_come_from_the_default_branch_not_the_base(repo, tmp_path):
    _lax(repo)
    args = _lax_args(repo, tmp_path)
    strict = CliRunner().invoke(command, args)
    assert strict.exit_code == 1, strict.output                    # main's rules: production needs an owner
    assert "1 approval from the owners of fraud-detector in production" in strict.output
    loose = CliRunner().invoke(command, [*args, "--rules", "lax"])   # named on purpose: lax's rules
    assert loose.exit_code == 0 and "no approval is needed" in loose.output, loose.output


def test_without_a_default_branch_the_rules_must_be_named(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")           # no init.defaultBranch from the machine
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    _lax(repo)
    git(repo, "branch", "-m", "main", "trunk")
    args = _lax_args(repo, tmp_path)
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 2 and "no default branch found" in result.output and "--rules" in result.output
    assert "Traceback" not in result.output
    assert CliRunner().invoke(command, [*args, "--rules", "trunk"]).exit_code == 1
