"""What a GitHub App's installation token may call: the permissions each endpoint needs, and the
permissions the app holds (read from ``app.yaml``, never copied here).

GitHub answers an installation token that lacks an endpoint's permission with 403 and
``{"message": "Resource not accessible by integration", "documentation_url": <the endpoint's page>,
"status": "403"}``; :class:`~tests.fakes.github.FakeGitHub` does the same with this table.

Where the table comes from. The OpenAPI descriptions in ``tests/contracts/github/`` carry no
permissions (an operation's ``x-github`` holds only ``category``, ``subcategory``,
``enabledForGitHubApps``, ``githubCloudOnly``, ``previews``…). GitHub publishes them as
"Permissions required for GitHub Apps"
(https://docs.github.com/en/rest/authentication/permissions-required-for-github-apps), generated from
``src/github-apps/data/fpt-2022-11-28/server-to-server-permissions.json`` in github/docs, and per
endpoint in the "Fine-grained access tokens" section of each REST reference page, which lists the
permission *sets* that work ("at least one of the following permission sets"). :data:`ENDPOINTS` holds
exactly the endpoints :class:`FakeGitHub` serves, each with its sets; the Contents and Commit
statuses entries were checked against ``ghes-3.19-2022-11-28/server-to-server-permissions.json``
too (same permissions on GHES 3.19). ``tests/test_github_permissions.py`` fails when the fake serves
an endpoint missing here, so a new call of the product cannot slip past the check.

Endpoints GitHub documents under two permissions with "additional permissions" (issue comments under
Issues and Pull requests, "Get a pull request" under Contents and Pull requests) are listed with both
sets: a pull request's conversation is reachable with either.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
APP_MANIFEST = ROOT / "app.yaml"
LEVELS = {"read": 1, "write": 2, "admin": 3}
PAGE = "https://docs.github.com/rest"

#: One permission set: every permission in it at (at least) its level.
PermissionSet = Mapping[str, str]


def _sets(*alternatives: dict[str, str]) -> tuple[PermissionSet, ...]:
    return tuple(alternatives)


#: (method, path template) → the permission sets that let an installation token call it (any one).
ENDPOINTS: dict[tuple[str, str], tuple[PermissionSet, ...]] = {
    # Metadata
    ("GET", "/repos/{owner}/{repo}"): _sets({"metadata": "read"}),
    ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission"): _sets({"metadata": "read"}),
    # Contents
    ("GET", "/repos/{owner}/{repo}/contents/{path}"): _sets({"contents": "read"}),
    ("PUT", "/repos/{owner}/{repo}/contents/{path}"): _sets({"contents": "write"}),
    ("GET", "/repos/{owner}/{repo}/tarball/{ref}"): _sets({"contents": "read"}),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}"): _sets({"contents": "read"}),
    ("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}"): _sets({"contents": "read"}),
    ("POST", "/repos/{owner}/{repo}/git/trees"): _sets({"contents": "write"}),
    ("POST", "/repos/{owner}/{repo}/git/blobs"): _sets({"contents": "write"}),
    ("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}"): _sets({"contents": "read"}),
    ("POST", "/repos/{owner}/{repo}/git/commits"): _sets({"contents": "write"}),
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}"): _sets({"contents": "read"}),
    ("POST", "/repos/{owner}/{repo}/git/refs"): _sets({"contents": "write"}),
    ("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}"): _sets({"contents": "write"}),
    # Pull requests
    ("GET", "/repos/{owner}/{repo}/pulls"): _sets({"pull_requests": "read"}),
    ("POST", "/repos/{owner}/{repo}/pulls"): _sets({"pull_requests": "write"}),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"): _sets({"pull_requests": "read"}, {"contents": "read"}),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files"): _sets({"pull_requests": "read"}),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits"): _sets({"pull_requests": "read"}),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"): _sets({"pull_requests": "read"}),
    # Issues (a pull request's conversation: Issues or Pull requests; reactions: Issues only)
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments"):
        _sets({"issues": "read"}, {"pull_requests": "read"}),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"):
        _sets({"issues": "write"}, {"pull_requests": "write"}),
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"):
        _sets({"issues": "write"}, {"pull_requests": "write"}),
    ("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"): _sets({"issues": "write"}),
    # Checks
    ("POST", "/repos/{owner}/{repo}/check-runs"): _sets({"checks": "write"}),
    ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"): _sets({"checks": "write"}),
    ("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations"): _sets({"checks": "read"}),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs"): _sets({"checks": "read"}),
    # Commit statuses
    ("POST", "/repos/{owner}/{repo}/statuses/{sha}"): _sets({"statuses": "write"}),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/statuses"): _sets({"statuses": "read"}),
    # Deployments
    ("GET", "/repos/{owner}/{repo}/deployments"): _sets({"deployments": "read"}),
    ("POST", "/repos/{owner}/{repo}/deployments"): _sets({"deployments": "write"}),
    ("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}"): _sets({"deployments": "read"}),
    ("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses"): _sets({"deployments": "read"}),
    ("POST", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses"): _sets({"deployments": "write"}),
    # Members (organization)
    ("GET", "/orgs/{org}/teams/{team_slug}/memberships/{username}"): _sets({"members": "read"}),
}

#: Endpoints that take the app's JWT, never an installation token (GitHub answers those 401).
APP_ENDPOINTS = frozenset({
    ("GET", "/app"),
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("GET", "/repos/{owner}/{repo}/installation"),
})


def app_permissions(path: Path = APP_MANIFEST) -> dict[str, str]:
    """The permissions the app asks for: ``default_permissions`` of its manifest (``app.yaml``)."""
    return dict(_manifest(path)["default_permissions"])


def app_events(path: Path = APP_MANIFEST) -> list[str]:
    """The webhook events the app subscribes to: ``default_events`` of ``app.yaml``."""
    return list(_manifest(path)["default_events"])


@cache
def _manifest(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def satisfies(granted: Mapping[str, str], needed: PermissionSet) -> bool:
    """Whether ``granted`` holds every permission of ``needed`` at its level or above."""
    return all(LEVELS.get(granted.get(name, ""), 0) >= LEVELS[level] for name, level in needed.items())


def allowed(granted: Mapping[str, str], method: str, template: str) -> bool:
    """Whether a token holding ``granted`` may call ``method template`` (KeyError: not in the table)."""
    return any(satisfies(granted, needed) for needed in ENDPOINTS[(method, template)])


def describe(sets: tuple[PermissionSet, ...]) -> str:
    """``contents: write`` or ``issues: write | pull_requests: write``."""
    return " | ".join(", ".join(f"{name}: {level}" for name, level in needed.items()) for needed in sets)


def narrowed(granted: Mapping[str, str], requested: Mapping[str, str]) -> dict[str, str] | None:
    """The permissions of a token minted with ``permissions`` (a subset of the installation's), or
    None when it asks for more than the installation holds (GitHub answers 422)."""
    if any(not satisfies(granted, {name: level}) for name, level in requested.items()):
        return None
    return dict(requested)
