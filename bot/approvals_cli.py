"""``modelherd approvals``: a dry run of the approval rules for a change, explained rule by rule.

Plans the change between two revisions of a local repository with the same planner the app uses (rules
at the default branch's tip), takes the rules it asks for (:func:`~modelherd.checks.approvals.requirements_for`)
and evaluates them against a file of reviews with the same pure function as the app
(:func:`~modelherd.checks.approvals.evaluate`).  Nothing here talks to a forge: who wrote the PR, who
pushed to it, which teams hold whom and who has write access are given on the command line.

Exported as :data:`command`; the main ``modelherd`` group attaches it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import yaml

from modelherd.checks.approvals import (
    ApprovalOptions, ApprovalOutcome, PullFacts, Review, RuleResult, RuleStatus, evaluate, requirements_for,
    summary_markdown,
)
from modelherd.escape import one_line
from modelherd.registry.memory import InMemoryRegistry

EXIT = {RuleStatus.SATISFIED: 0, RuleStatus.PENDING: 1, RuleStatus.ERROR: 2}


class _EmptyRegistries(Mapping):
    """Every registry name maps to one empty in-memory registry (``--no-registry``)."""

    def __init__(self) -> None:
        self.registry = InMemoryRegistry()

    def __getitem__(self, name: str) -> InMemoryRegistry:
        return self.registry

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _user_error(message: str) -> click.ClickException:
    from modelherd.cli import UserError   # imported late: the main group imports this module

    return UserError(message)


def _load(path: str, what: str) -> Any:
    """A JSON or YAML file's data, or a one-line error."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _user_error(f"{what} {path}: {first}") from None


def read_reviews(path: str) -> list[Review]:
    """GitHub-shaped reviews (``user.login``, ``user.type``, ``state``, ``commit_id``, ``submitted_at``)."""
    data = _load(path, "reviews")
    if not isinstance(data, list):
        raise _user_error(f"reviews {path}: expected a list of reviews")
    reviews = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("user"), dict) or not item["user"].get("login"):
            raise _user_error(f"reviews {path}: item {i} needs user.login")
        try:
            reviews.append(Review.from_github(item))
        except (ValueError, TypeError) as exc:
            raise _user_error(f"reviews {path}: item {i}: {exc}") from None
    return reviews


def read_teams(path: str | None) -> dict[str, dict[str, str]]:
    """``{team: {user: state}}``; a list of users means all are active members."""
    if not path:
        return {}
    data = _load(path, "teams")
    if not isinstance(data, dict):
        raise _user_error(f"teams {path}: expected a mapping of team to members")
    out: dict[str, dict[str, str]] = {}
    for team, members in data.items():
        if isinstance(members, list):
            out[str(team)] = {str(u): "active" for u in members}
        elif isinstance(members, dict):
            out[str(team)] = {str(u): str(s) for u, s in members.items()}
        else:
            raise _user_error(f"teams {path}: {team}: expected a list of users or a mapping of user to state")
    return out


def read_permissions(path: str | None, writers: tuple[str, ...]) -> dict[str, str]:
    """``{user: permission}`` from a file, plus ``--writer`` logins as ``write``."""
    perms: dict[str, str] = {}
    if path:
        data = _load(path, "permissions")
        if not isinstance(data, dict):
            raise _user_error(f"permissions {path}: expected a mapping of user to permission")
        perms = {str(u): str(p) for u, p in data.items()}
    perms.update({w: perms.get(w, "write") for w in writers})
    return perms


def _resolve_commits(reviews: list[Review], source) -> list[Review]:
    """Reviews whose ``commit_id`` names a revision (``change``, ``HEAD~1``) get its full SHA."""
    from dataclasses import replace

    from modelherd.forges.base import SourceError

    out = []
    for review in reviews:
        sha = review.commit_id
        if sha:
            try:
                sha = source.resolve(sha) or sha
            except SourceError:
                pass
        out.append(replace(review, commit_id=sha))
    return out


def _rule_text(result: RuleResult) -> list[str]:
    """One rule, explained for a terminal (untrusted text made safe with ``one_line``)."""
    rule = result.requirement
    lines = [f"{result.status.value.upper():9} {one_line(rule.describe())}",
             f"          why: {one_line(rule.requirement.reason)}"]
    if result.approvers:
        lines.append(f"          approved by: {one_line(', '.join(result.approvers))}")
    if result.status is not RuleStatus.SATISFIED:
        lines.append(f"          {one_line(result.explanation)}")
    lines += [f"          not counted: {one_line(user)} ({one_line(why)})" for user, why in result.ignored]
    return lines


def render_text(outcome: ApprovalOutcome, base: str, head: str) -> str:
    """The whole outcome for a terminal: a headline, then each rule."""
    lines = [f"approvals for {one_line(base)}..{one_line(head)} at {outcome.head_sha[:7]}: {outcome.status.value}"]
    if not outcome.results:
        lines.append("no approval is needed for this change")
    for result in outcome.results:
        lines.extend(_rule_text(result))
    return "\n".join(lines)


def outcome_to_dict(outcome: ApprovalOutcome) -> dict[str, Any]:
    """The outcome as JSON-ready data."""
    def rule(r: RuleResult) -> dict[str, Any]:
        req = r.requirement.requirement
        return {"description": r.requirement.describe(), "environment": req.environment, "count": req.count,
                "reason": req.reason, "models": list(r.requirement.models), "owners": list(r.requirement.owners),
                "users": list(req.users), "teams": list(req.teams), "status": r.status.value,
                "approvers": list(r.approvers), "missing": r.missing, "blocked_by": list(r.blocked_by),
                "ignored": [{"user": u, "reason": why} for u, why in r.ignored], "explanation": r.explanation}
    return {"status": outcome.status.value, "head_sha": outcome.head_sha,
            "rules": [rule(r) for r in outcome.results]}


def _plan(repo: str, base: str, head: str, settings_path: str | None, no_registry: bool, now: str | None,
          rules: str | None = None):
    """(plan, source, head SHA): the change planned exactly as ``modelherd plan`` plans it."""
    from modelherd.cli import _now, _registries, _settings, rules_revision
    from modelherd.forges.base import SourceError
    from modelherd.forges.localgit import LocalGit
    from modelherd.planner import PlanContext, build_plan

    settings = _settings(settings_path)
    registries = _EmptyRegistries() if no_registry else _registries(settings)
    ctx = PlanContext(registries=registries, clusters=settings.cluster_facts(), now=_now(now))
    source = LocalGit(repo)
    try:
        base_sha, head_sha = source.resolve(base), source.resolve(head)
        return build_plan(source, base_sha, head_sha, ctx, rules_ref=rules_revision(source, rules)), source, head_sha
    except SourceError as exc:
        raise _user_error(str(exc)) from None


@click.command("approvals")
@click.option("--repo", default=".", show_default=True, type=click.Path(file_okay=False, exists=True),
              help="A local git repository.")
@click.option("--base", required=True, help="The pull request's base revision.")
@click.option("--head", default="HEAD", show_default=True, help="The pull request's head revision.")
@click.option("--rules", help="The revision whose rules apply. Default: the tip of the default branch "
                              "(origin/HEAD's, else main or master), as the app reads them.")
@click.option("--reviews", "reviews_path", required=True, type=click.Path(dir_okay=False, exists=True),
              help="JSON/YAML list of GitHub-shaped reviews (user.login, user.type, state, commit_id, "
                   "submitted_at); commit_id may also name a revision of the repository.")
@click.option("--author", default="", help="The pull request's author (never counts as an approver).")
@click.option("--committer", "committers", multiple=True, help="A login that pushed to the PR (repeatable).")
@click.option("--bot", "bots", multiple=True, help="A login to treat as a bot (repeatable).")
@click.option("--teams", "teams_path", type=click.Path(dir_okay=False, exists=True),
              help="JSON/YAML {team: [users]} or {team: {user: active|pending}}.")
@click.option("--permissions", "permissions_path", type=click.Path(dir_okay=False, exists=True),
              help="JSON/YAML {user: admin|maintain|write|triage|read}, for rules that name nobody.")
@click.option("--writer", "writers", multiple=True, help="A login with write access (repeatable).")
@click.option("--any-sha", is_flag=True, help="Count approvals of earlier commits too (require_head_sha off).")
@click.option("--settings", "settings_path", type=click.Path(dir_okay=False, exists=True),
              help="Server settings file (registries, clusters). Default: $MODELHERD_CONFIG.")
@click.option("--no-registry", is_flag=True, help="Plan without a model registry (an empty in-memory one).")
@click.option("--now", help="Evaluate time-based policies at this RFC 3339 time instead of now.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True)
def approvals(repo: str, base: str, head: str, reviews_path: str, author: str, committers: tuple[str, ...],
              bots: tuple[str, ...], teams_path: str | None, permissions_path: str | None,
              writers: tuple[str, ...], any_sha: bool, settings_path: str | None, no_registry: bool,
              now: str | None, fmt: str, rules: str | None) -> None:
    """Explain, rule by rule, whether a change between two revisions is approved by the given reviews.

    Exit status: 0 approved, 1 waiting for approvals, 2 a rule cannot be decided or satisfied (or the
    policies could not be evaluated, so rules may be missing).
    """
    plan, source, head_sha = _plan(repo, base, head, settings_path, no_registry, now, rules)
    facts = PullFacts(author=author, head_sha=head_sha,
                      reviews=tuple(_resolve_commits(read_reviews(reviews_path), source)),
                      committers=frozenset(committers), team_members=read_teams(teams_path),
                      bots=frozenset(bots), permissions=read_permissions(permissions_path, writers))
    outcome = evaluate(requirements_for(plan.reports), facts, ApprovalOptions(require_head_sha=not any_sha))
    if fmt == "json":
        click.echo(json.dumps(outcome_to_dict(outcome), indent=2))
    elif fmt == "markdown":
        click.echo(summary_markdown(outcome))
    else:
        click.echo(render_text(outcome, base, head))
    policy = plan.checks.get("policy")
    if policy is not None and policy.conclusion.value == "error":
        click.echo(f"warning: {one_line(policy.summary)}; rules the policies ask for are missing", err=True)
        sys.exit(2)
    if not author:
        click.echo("note: no --author given, so a self-approval would count", err=True)
    sys.exit(EXIT[outcome.status])


command = approvals
