"""A fake GitHub REST API over real HTTP, holding every request to the official OpenAPI description.

    with FakeGitHub("github.com") as fake:             # or "ghes-3.19" (base path /api/v3)
        repo = fake.add_repo("acme", "models")
        base = fake.add_commit(repo, {"models/a.yaml": "name: a\n"})
        head = fake.add_commit(repo, {"models/a.yaml": "name: a\nversion: 2\n"}, parent=base)
        pr = fake.open_pull(repo, base, head, author="alice")
        gh = github.Github(base_url=fake.base_url, auth=github.Auth.Token("t"))
        ...
        fake.assert_clean()                             # no request broke the description

Every request is validated (path and query parameters, content type, body) by
:class:`tests.fakes.openapi.OpenApiValidator`. A request the description rejects is recorded in
``fake.violations`` and answered 422 with the errors; a call to an operation the fake does not serve
(or that does not exist) is recorded there too. Responses are built from the schema of their status
code (every required field filled) and checked against it; a response the fake got wrong lands in
``fake.response_errors``. ``fake.calls`` records every call (method, path, template, status, write).

Authentication as GitHub does it: the app's JWT for the ``/app`` endpoints; an installation token
holds the permissions its installation granted — ``app.yaml``'s ``default_permissions`` unless a test
says otherwise (:meth:`FakeGitHub.set_installation_permissions`) — and a call they do not allow is
answered 403 ``{"message": "Resource not accessible by integration", "documentation_url": …,
"status": "403"}`` and recorded in ``fake.denied``; the permissions each endpoint needs are in
:mod:`tests.fakes.github_permissions`. Personal access tokens act with their user's role.

Pytest: ``fake_github`` (function scope; indirect-parametrise it with a flavor) and
``github_validators`` (session scope) are plain fixtures defined here. Register them once in
``tests/conftest.py`` with::

    pytest_plugins = ["tests.fakes.github"]

The fixture's teardown fails the test when ``fake.violations`` or ``fake.response_errors`` is not
empty; a test that provokes violations on purpose takes them with ``fake.take_violations()``.

Classes, one concern each: :class:`GitStore` (blobs, trees, commits, branches), :class:`GitHubState`
(repositories, pulls, reviews, comments, checks, statuses, deployments, people), :class:`RateLimiter`
and :class:`Faults` (what GitHub does to impolite clients), :class:`GitHubApi` (one method per
endpoint), :class:`FakeGitHub` (HTTP server, validation, recording, and the test-side helpers).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import difflib
import hashlib
import io
import itertools
import json
import secrets
import tarfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote, urlencode

import jwt
import pytest
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from tests.fakes import github_permissions as perms
from tests.fakes.http import LocalServer, decode_body, link_header, response_problems
from tests.fakes.openapi import OpenApiValidator, validator_for

FLAVORS = {"github.com": "", "ghes-3.19": "/api/v3"}
# Where the archives GitHub redirects to are served: github.com from another host (codeload.github.com;
# here ``localhost`` instead of ``127.0.0.1``, same server), GHES from its own host below /_codeload.
CODELOAD_HOST = "localhost"
CODELOAD_PREFIX = {"github.com": "", "ghes-3.19": "/_codeload"}
CODELOAD_TEMPLATE = "(codeload) /{owner}/{repo}/legacy.tar.gz/{ref}"
DOCS = "https://docs.github.com/rest"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """Raised by a handler: answered with GitHub's error body for ``status``."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None, documentation_url: str = DOCS):
        super().__init__(message)
        self.status, self.message, self.errors, self.headers = status, message, errors, headers or {}
        self.documentation_url = documentation_url

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "documentation_url": self.documentation_url,
                                "status": str(self.status)}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


# ==================================================================================================
# Git objects


@dataclass
class Commit:
    sha: str
    tree: str
    parents: list[str]
    message: str
    author: str
    committer: str
    date: datetime


class GitStore:
    """Blobs, trees and commits with git's content addressing (blob SHAs equal git's).

    A tree is kept flat (``{relative path: blob sha}``); every directory of a stored tree is stored
    as a tree of its own, so a subtree's SHA can be fetched like GitHub's.
    """

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.trees: dict[str, dict[str, str]] = {}
        self.commits: dict[str, Commit] = {}
        self._clock = itertools.count()

    def put_blob(self, content: bytes) -> str:
        sha = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
        self.blobs[sha] = content
        return sha

    def put_tree(self, files: dict[str, str]) -> str:
        """Store a flat tree (path → blob sha) and its subdirectories; return its SHA."""
        canonical = json.dumps(sorted(files.items())).encode()
        sha = hashlib.sha1(b"tree %d\0" % len(canonical) + canonical).hexdigest()
        if sha not in self.trees:
            self.trees[sha] = dict(files)
            for directory in {p.split("/", 1)[0] for p in files if "/" in p}:
                prefix = directory + "/"
                self.put_tree({p[len(prefix):]: s for p, s in files.items() if p.startswith(prefix)})
        return sha

    def subtree_sha(self, tree_sha: str, directory: str) -> str:
        prefix = directory.rstrip("/") + "/"
        files = self.trees[tree_sha]
        return self.put_tree({p[len(prefix):]: s for p, s in files.items() if p.startswith(prefix)})

    def put_commit(self, tree: str, parents: list[str], message: str, author: str,
                   committer: str | None = None) -> str:
        stamp = f"{tree}{parents}{message}{author}{next(self._clock)}{time.time_ns()}".encode()
        sha = hashlib.sha1(b"commit %d\0" % len(stamp) + stamp).hexdigest()
        self.commits[sha] = Commit(sha, tree, list(parents), message, author, committer or author, utcnow())
        return sha

    def files_at(self, commit_sha: str) -> dict[str, str]:
        return self.trees[self.commits[commit_sha].tree]

    def read(self, commit_sha: str, path: str) -> bytes | None:
        blob = self.files_at(commit_sha).get(path)
        return None if blob is None else self.blobs[blob]

    def derive_tree(self, base: dict[str, str], changes: dict[str, str | bytes | None]) -> str:
        """A new tree: ``base`` with ``changes`` (text/bytes to write, None to delete)."""
        files = dict(base)
        for path, content in changes.items():
            if content is None:
                files.pop(path, None)
            else:
                files[path] = self.put_blob(content.encode() if isinstance(content, str) else content)
        return self.put_tree(files)

    def ancestry(self, head: str, stop: str | None = None) -> list[str]:
        """First-parent history from ``head`` back to (excluding) ``stop``; oldest first."""
        chain, sha = [], head
        while sha and sha != stop and sha in self.commits:
            chain.append(sha)
            parents = self.commits[sha].parents
            sha = parents[0] if parents else None
        return list(reversed(chain))


# ==================================================================================================
# GitHub's resources


@dataclass
class Repo:
    id: int
    owner: str
    name: str
    default_branch: str
    private: bool = False
    branches: dict[str, str] = field(default_factory=dict)  # name → commit sha
    tags: dict[str, str] = field(default_factory=dict)
    permissions: dict[str, str] = field(default_factory=dict)  # login → admin|maintain|write|triage|read
    size_kb: int | None = None  # what ``size`` reports; None: the default branch's files, in KB

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Pull:
    number: int
    repo: str
    title: str
    body: str
    author: str
    base_ref: str
    base_sha: str
    head_ref: str
    head_sha: str
    state: str = "open"
    draft: bool = False
    merged: bool = False
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    labels: list[str] = field(default_factory=list)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass
class Review:
    id: int
    repo: str
    pull: int
    user: str
    state: str  # APPROVED | CHANGES_REQUESTED | COMMENTED | DISMISSED | PENDING
    commit_id: str
    body: str = ""
    submitted_at: datetime | None = field(default_factory=utcnow)


@dataclass
class Comment:
    id: int
    repo: str
    issue: int
    user: str
    body: str
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    reactions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CheckRun:
    id: int
    repo: str
    name: str
    head_sha: str
    status: str = "queued"
    conclusion: str | None = None
    started_at: datetime | None = field(default_factory=utcnow)
    completed_at: datetime | None = None
    details_url: str | None = None
    external_id: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    app_slug: str = "modelherd"


@dataclass
class Status:
    id: int
    repo: str
    sha: str
    state: str
    context: str
    description: str | None
    target_url: str | None
    creator: str
    created_at: datetime = field(default_factory=utcnow)


@dataclass
class Deployment:
    id: int
    repo: str
    sha: str
    ref: str
    task: str
    environment: str
    description: str | None
    payload: Any
    creator: str
    production_environment: bool
    transient_environment: bool
    created_at: datetime = field(default_factory=utcnow)
    statuses: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Token:
    token: str
    installation_id: int
    expires_at: datetime
    permissions: dict[str, str] = field(default_factory=dict)  # fixed when the token is minted


@dataclass
class Call:
    """One request the fake received."""

    method: str
    path: str  # relative to the API base, percent-decoded
    template: str | None
    status: int
    query: dict[str, list[str]]
    body: Any  # parsed JSON, raw text, or None
    login: str | None
    seconds: float
    host: str = ""  # the Host the request was sent to
    authorization: str | None = None  # its Authorization header (archive downloads record it)
    hold: Any = None  # a Hold keeping this call's answer back (hold_next)

    @property
    def is_write(self) -> bool:
        return self.method not in READ_METHODS


class GitHubState:
    """Everything the fake GitHub knows. Mutated only under :attr:`FakeGitHub.lock`."""

    def __init__(self, app_id: int, app_slug: str) -> None:
        self.git = GitStore()
        self.app_id, self.app_slug = app_id, app_slug
        self.repos: dict[str, Repo] = {}
        self.installations: dict[int, str] = {}  # installation id → account login
        # what each installation's owner granted: app.yaml's default_permissions unless a test says
        # otherwise (an owner who has not yet accepted a permission the app added later)
        self.installation_permissions: dict[int, dict[str, str]] = {}
        self.pulls: dict[tuple[str, int], Pull] = {}
        self.reviews: list[Review] = []
        self.comments: dict[int, Comment] = {}
        self.check_runs: dict[int, CheckRun] = {}
        self.statuses: list[Status] = []
        self.deployments: dict[int, Deployment] = {}
        self.teams: dict[tuple[str, str], dict[str, str]] = {}  # (org, slug) → login → state
        self.tokens: dict[str, Token] = {}
        self.user_tokens: dict[str, str] = {}  # token → login
        self.archive_tokens: dict[str, tuple[str, datetime]] = {}  # codeload token → (repo, expiry)
        self._ids = itertools.count(1001)
        self._numbers: dict[str, itertools.count] = {}

    def next_id(self) -> int:
        return next(self._ids)

    def next_number(self, repo: str) -> int:
        return next(self._numbers.setdefault(repo, itertools.count(1)))

    @property
    def bot_login(self) -> str:
        return f"{self.app_slug}[bot]"

    # -- lookups that answer 404 ------------------------------------------------------------------

    def repo(self, owner: str, name: str) -> Repo:
        repo = self.repos.get(f"{owner}/{name}".lower())
        if repo is None:
            raise ApiError(404, "Not Found")
        return repo

    def pull(self, repo: Repo, number: int) -> Pull:
        pull = self.pulls.get((repo.full_name, number))
        if pull is None:
            raise ApiError(404, "Not Found")
        return pull

    def resolve(self, repo: Repo, ref: str) -> str:
        """A commit SHA for a branch, tag, ``heads/…``/``refs/heads/…`` ref or (abbreviated) SHA."""
        name = ref.removeprefix("refs/")
        for prefix, table in (("heads/", repo.branches), ("tags/", repo.tags)):
            if name.startswith(prefix) and name[len(prefix):] in table:
                return table[name[len(prefix):]]
        if ref in repo.branches:
            return repo.branches[ref]
        if ref in repo.tags:
            return repo.tags[ref]
        if len(ref) >= 7:
            found = [sha for sha in self.git.commits if sha.startswith(ref)]
            if len(found) == 1:
                return found[0]
        raise ApiError(404, f"No commit found for SHA: {ref}")

    def collaborator_permission(self, repo: Repo, login: str) -> str:
        if login == repo.owner:
            return "admin"
        return repo.permissions.get(login, "none")


# ==================================================================================================
# Politeness: rate limits and injected faults


class RateLimiter:
    """The ``X-RateLimit-*`` headers GitHub sends, with a budget that calls spend."""

    def __init__(self, limit: int = 5000, window_seconds: int = 3600) -> None:
        self.limit, self.window = limit, window_seconds
        self.used = 0
        self.reset_at = int(time.time()) + window_seconds

    def spend(self) -> None:
        self._roll()
        self.used += 1

    def exhaust(self, reset_in: int) -> None:
        self.used, self.reset_at = self.limit, int(time.time()) + reset_in

    def headers(self, resource: str = "core") -> dict[str, str]:
        self._roll()
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - self.used)),
            "X-RateLimit-Reset": str(self.reset_at),
            "X-RateLimit-Used": str(self.used),
            "X-RateLimit-Resource": resource,
        }

    def _roll(self) -> None:
        if time.time() >= self.reset_at:
            self.used, self.reset_at = 0, int(time.time()) + self.window


@dataclass
class Fault:
    status: int | None            # None: answer as usual (a hold only)
    retry_after: int | None
    reset_in: int | None
    match: Callable[[str, str], bool] | None
    applied: bool = False         # carry the request out, then answer ``status`` (the answer was lost)
    hold: Hold | None = None      # carry it out, then keep the answer until released


@dataclass
class Hold:
    """A request carried out whose answer is held back (``FakeGitHub.hold_next``): ``reached`` is set
    once it was carried out; the answer leaves when ``release()`` is called (or after ``timeout``)."""

    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    timeout: float = 60.0

    def release(self) -> None:
        self.released.set()

    def wait_released(self) -> None:
        self.reached.set()
        self.released.wait(self.timeout)


class Faults:
    """Failures to inject into the next calls (``FakeGitHub.fail_next``)."""

    def __init__(self) -> None:
        self._queue: list[Fault] = []

    def add(self, count: int, fault: Fault) -> None:
        self._queue.extend(dataclasses.replace(fault) for _ in range(count))

    def take(self, method: str, path: str) -> Fault | None:
        for index, fault in enumerate(self._queue):
            if fault.match is None or fault.match(method, path):
                return self._queue.pop(index)
        return None

    def __len__(self) -> int:
        return len(self._queue)

    def answer(self, fault: Fault, rate: RateLimiter) -> tuple[int, dict[str, Any], dict[str, str]]:
        assert fault.status is not None
        headers: dict[str, str] = {}
        if fault.status == 429 or (fault.status == 403 and fault.reset_in is not None):
            rate.exhaust(fault.reset_in if fault.reset_in is not None else 60)
            return fault.status, {"message": "API rate limit exceeded for installation.",
                                  "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api"}, headers
        if fault.status == 403:  # secondary rate limit
            headers["Retry-After"] = str(fault.retry_after if fault.retry_after is not None else 1)
            return 403, {"message": "You have exceeded a secondary rate limit. Please wait a few minutes "
                                    "before you try again.",
                         "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api"}, headers
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        message = {500: "Server Error", 502: "Server Error", 503: "Service Unavailable",
                   504: "Gateway Timeout"}.get(fault.status, "Injected failure")
        return fault.status, {"message": message, "documentation_url": DOCS}, headers


# ==================================================================================================
# The endpoints

_ROUTES: dict[tuple[str, str], str] = {}


def endpoint(method: str, template: str) -> Callable[[Callable], Callable]:
    """Register a :class:`GitHubApi` method as the handler of ``method template``."""

    def register(handler: Callable) -> Callable:
        _ROUTES[(method.upper(), template)] = handler.__name__
        return handler

    return register


@dataclass
class Ctx:
    """What a handler sees of a request."""

    method: str
    path: str
    params: dict[str, str]
    query: MultiDict
    json: Any
    headers: Any
    login: str | None  # who the token belongs to
    installation_id: int | None
    jwt_app_id: int | None  # set when authenticated as the app (JWT)
    permissions: dict[str, str] | None = None  # an installation token's permissions

    def param_int(self, name: str) -> int:
        return int(self.params[name])

    def q(self, name: str, default: str | None = None) -> str | None:
        return self.query.get(name, default)

    def body(self, name: str, default: Any = None) -> Any:
        return (self.json or {}).get(name, default)

    def actor(self) -> str:
        if self.login is None:
            raise ApiError(401, "Requires authentication")
        return self.login


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    pages: dict[str, int] | None = None  # rel → page number, set by _paginate(); the server writes ``Link``
    per_page: int = 30


class GitHubApi:
    """One method per endpoint; each returns a :class:`Reply` whose body is an overlay that the
    server completes into a schema-shaped body."""

    def __init__(self, state: GitHubState, url: Callable[[str], str], web: str,
                 codeload: Callable[[str], str] = lambda path: path) -> None:
        self.s, self.url, self.web, self.codeload = state, url, web, codeload

    # -- representations --------------------------------------------------------------------------

    def user(self, login: str | None) -> dict[str, Any] | None:
        if login is None:
            return None
        uid = int(hashlib.sha1(login.encode()).hexdigest()[:7], 16)
        return {"login": login, "id": uid, "node_id": f"U_{uid}", "type": "Bot" if login.endswith("[bot]") else "User",
                "site_admin": False, "url": self.url(f"/users/{login}"), "html_url": f"{self.web}/{login}",
                "avatar_url": f"{self.web}/avatars/{uid}"}

    def repository(self, repo: Repo) -> dict[str, Any]:
        base = f"/repos/{repo.full_name}"
        return {"id": repo.id, "node_id": f"R_{repo.id}", "name": repo.name, "full_name": repo.full_name,
                "owner": self.user(repo.owner), "private": repo.private, "fork": False,
                "visibility": "private" if repo.private else "public", "default_branch": repo.default_branch,
                "url": self.url(base), "html_url": f"{self.web}/{repo.full_name}",
                "issues_url": self.url(base + "/issues{/number}"), "pulls_url": self.url(base + "/pulls{/number}"),
                "contents_url": self.url(base + "/contents/{+path}"),
                "statuses_url": self.url(base + "/statuses/{sha}"),
                "git_refs_url": self.url(base + "/git/refs{/sha}"),
                "archived": False, "disabled": False, "size": self.size_kb(repo)}

    def size_kb(self, repo: Repo) -> int:
        if repo.size_kb is not None:
            return repo.size_kb
        files = self.s.git.files_at(repo.branches[repo.default_branch]) if repo.branches else {}
        return sum(len(self.s.git.blobs[sha]) for sha in files.values()) // 1024

    def commit_ref(self, repo: Repo, ref: str, sha: str) -> dict[str, Any]:
        return {"label": f"{repo.owner}:{ref}", "ref": ref, "sha": sha, "user": self.user(repo.owner),
                "repo": self.repository(repo)}

    def pull(self, repo: Repo, pr: Pull) -> dict[str, Any]:
        base = f"/repos/{repo.full_name}"
        closed = pr.state == "closed"
        return {"id": pr.number + 500000, "node_id": f"PR_{pr.number}", "number": pr.number,
                "state": pr.state, "locked": False, "title": pr.title, "body": pr.body,
                "user": self.user(pr.author), "draft": pr.draft, "merged": pr.merged,
                "mergeable": None if pr.merged else True, "merged_by": self.user(pr.merged_by),
                "merge_commit_sha": pr.merge_commit_sha,
                "url": self.url(f"{base}/pulls/{pr.number}"),
                "html_url": f"{self.web}/{repo.full_name}/pull/{pr.number}",
                "issue_url": self.url(f"{base}/issues/{pr.number}"),
                "comments_url": self.url(f"{base}/issues/{pr.number}/comments"),
                "review_comments_url": self.url(f"{base}/pulls/{pr.number}/comments"),
                "commits_url": self.url(f"{base}/pulls/{pr.number}/commits"),
                "statuses_url": self.url(f"{base}/statuses/{pr.head_sha}"),
                "diff_url": f"{self.web}/{repo.full_name}/pull/{pr.number}.diff",
                "patch_url": f"{self.web}/{repo.full_name}/pull/{pr.number}.patch",
                "head": self.commit_ref(repo, pr.head_ref, pr.head_sha),
                "base": self.commit_ref(repo, pr.base_ref, pr.base_sha),
                "labels": [{"id": i + 1, "name": name, "color": "ededed", "default": False}
                           for i, name in enumerate(pr.labels)],
                "created_at": iso(pr.created_at), "updated_at": iso(pr.updated_at),
                "closed_at": iso(pr.updated_at) if closed else None,
                "merged_at": iso(pr.updated_at) if pr.merged else None,
                "commits": len(self.s.git.ancestry(pr.head_sha, pr.base_sha)),
                "changed_files": len(self._diff(pr.base_sha, pr.head_sha)),
                "author_association": "CONTRIBUTOR", "rebaseable": True, "mergeable_state": "clean"}

    def comment(self, comment: Comment) -> dict[str, Any]:
        base = f"/repos/{comment.repo}"
        return {"id": comment.id, "node_id": f"IC_{comment.id}", "body": comment.body,
                "user": self.user(comment.user), "url": self.url(f"{base}/issues/comments/{comment.id}"),
                "html_url": f"{self.web}/{comment.repo}/pull/{comment.issue}#issuecomment-{comment.id}",
                "issue_url": self.url(f"{base}/issues/{comment.issue}"),
                "created_at": iso(comment.created_at), "updated_at": iso(comment.updated_at),
                "author_association": "NONE" if comment.user.endswith("[bot]") else "CONTRIBUTOR"}

    def review(self, review: Review) -> dict[str, Any]:
        return {"id": review.id, "node_id": f"PRR_{review.id}", "user": self.user(review.user),
                "body": review.body, "state": review.state, "commit_id": review.commit_id,
                "html_url": f"{self.web}/{review.repo}/pull/{review.pull}#pullrequestreview-{review.id}",
                "pull_request_url": self.url(f"/repos/{review.repo}/pulls/{review.pull}"),
                "submitted_at": iso(review.submitted_at) if review.submitted_at else None,
                "author_association": "MEMBER",
                "_links": {"html": {"href": f"{self.web}/{review.repo}/pull/{review.pull}"},
                           "pull_request": {"href": self.url(f"/repos/{review.repo}/pulls/{review.pull}")}}}

    def app(self) -> dict[str, Any]:
        return {"id": self.s.app_id, "slug": self.s.app_slug, "node_id": f"A_{self.s.app_id}",
                "client_id": f"Iv1.{self.s.app_id:016x}", "name": self.s.app_slug,
                "owner": self.user("modelherd-org"), "description": "Model deployments from pull requests",
                "external_url": "https://modelherd.example.invalid", "html_url": f"{self.web}/apps/{self.s.app_slug}",
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                "permissions": perms.app_permissions(), "events": perms.app_events()}

    def installation(self, installation_id: int) -> dict[str, Any]:
        account = self.s.installations[installation_id]
        return {"id": installation_id, "account": self.user(account), "app_id": self.s.app_id,
                "app_slug": self.s.app_slug, "target_id": self.user(account)["id"], "target_type": "Organization",
                "repository_selection": "all", "single_file_name": None,
                "access_tokens_url": self.url(f"/app/installations/{installation_id}/access_tokens"),
                "repositories_url": self.url("/installation/repositories"),
                "html_url": f"{self.web}/organizations/{account}/settings/installations/{installation_id}",
                "permissions": dict(self.s.installation_permissions[installation_id]),
                "events": self.app()["events"],
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}

    def check_run(self, run: CheckRun) -> dict[str, Any]:
        base = f"/repos/{run.repo}"
        output = run.output
        return {"id": run.id, "node_id": f"CR_{run.id}", "head_sha": run.head_sha, "name": run.name,
                "status": run.status, "conclusion": run.conclusion, "external_id": run.external_id,
                "url": self.url(f"{base}/check-runs/{run.id}"), "html_url": f"{self.web}/{run.repo}/runs/{run.id}",
                "details_url": run.details_url or f"{self.web}/{run.repo}/runs/{run.id}",
                "started_at": iso(run.started_at) if run.started_at else None,
                "completed_at": iso(run.completed_at) if run.completed_at else None,
                "output": {"title": output.get("title"), "summary": output.get("summary"),
                           "text": output.get("text"), "annotations_count": len(run.annotations),
                           "annotations_url": self.url(f"{base}/check-runs/{run.id}/annotations")},
                "check_suite": {"id": run.id + 900000}, "app": self.app(), "pull_requests": [],
                "deployment": None}

    def status(self, status: Status) -> dict[str, Any]:
        return {"id": status.id, "node_id": f"SC_{status.id}", "state": status.state, "context": status.context,
                "description": status.description, "target_url": status.target_url,
                "url": self.url(f"/repos/{status.repo}/statuses/{status.sha}"),
                "avatar_url": None, "creator": self.user(status.creator),
                "created_at": iso(status.created_at), "updated_at": iso(status.created_at)}

    def deployment(self, deployment: Deployment) -> dict[str, Any]:
        base = f"/repos/{deployment.repo}/deployments/{deployment.id}"
        return {"id": deployment.id, "node_id": f"DE_{deployment.id}", "sha": deployment.sha, "ref": deployment.ref,
                "task": deployment.task, "payload": deployment.payload, "environment": deployment.environment,
                "original_environment": deployment.environment, "description": deployment.description,
                "creator": self.user(deployment.creator), "url": self.url(base),
                "statuses_url": self.url(base + "/statuses"),
                "repository_url": self.url(f"/repos/{deployment.repo}"),
                "transient_environment": deployment.transient_environment,
                "production_environment": deployment.production_environment,
                "created_at": iso(deployment.created_at), "updated_at": iso(deployment.created_at)}

    def git_commit(self, repo: Repo, sha: str) -> dict[str, Any]:
        commit = self.s.git.commits[sha]
        base = f"/repos/{repo.full_name}"
        return {"sha": sha, "node_id": f"C_{sha[:10]}", "url": self.url(f"{base}/git/commits/{sha}"),
                "html_url": f"{self.web}/{repo.full_name}/commit/{sha}", "message": commit.message,
                "author": {"name": commit.author, "email": f"{commit.author}@example.invalid",
                           "date": iso(commit.date)},
                "committer": {"name": commit.committer, "email": f"{commit.committer}@example.invalid",
                              "date": iso(commit.date)},
                "tree": {"sha": commit.tree, "url": self.url(f"{base}/git/trees/{commit.tree}")},
                "parents": [{"sha": p, "url": self.url(f"{base}/git/commits/{p}"),
                             "html_url": f"{self.web}/{repo.full_name}/commit/{p}"} for p in commit.parents],
                "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                                 "verified_at": None}}

    def commit(self, repo: Repo, sha: str, with_files: bool = False) -> dict[str, Any]:
        """The ``commit`` schema (``GET /repos/{o}/{r}/commits/{ref}``, pull commits)."""
        commit = self.s.git.commits[sha]
        base = f"/repos/{repo.full_name}"
        body = {"sha": sha, "node_id": f"C_{sha[:10]}", "url": self.url(f"{base}/commits/{sha}"),
                "html_url": f"{self.web}/{repo.full_name}/commit/{sha}",
                "comments_url": self.url(f"{base}/commits/{sha}/comments"),
                "commit": {"url": self.url(f"{base}/git/commits/{sha}"), "message": commit.message,
                           "comment_count": 0,
                           "author": {"name": commit.author, "email": f"{commit.author}@example.invalid",
                                      "date": iso(commit.date)},
                           "committer": {"name": commit.committer, "email": f"{commit.committer}@example.invalid",
                                         "date": iso(commit.date)},
                           "tree": {"sha": commit.tree, "url": self.url(f"{base}/git/trees/{commit.tree}")}},
                "author": self.user(commit.author), "committer": self.user(commit.committer),
                "parents": [{"sha": p, "url": self.url(f"{base}/commits/{p}")} for p in commit.parents]}
        if with_files:
            parent = commit.parents[0] if commit.parents else None
            body["files"] = self._files(repo, parent, sha)
        return body

    def content(self, repo: Repo, path: str, ref_sha: str, blob_sha: str) -> dict[str, Any]:
        data = self.s.git.blobs[blob_sha]
        base = f"/repos/{repo.full_name}"
        url = self.url(f"{base}/contents/{path}") + "?" + urlencode({"ref": ref_sha})
        git_url = self.url(f"{base}/git/blobs/{blob_sha}")
        html_url = f"{self.web}/{repo.full_name}/blob/{ref_sha}/{path}"
        return {"type": "file", "encoding": "base64", "size": len(data), "name": path.rsplit("/", 1)[-1],
                "path": path, "content": base64.encodebytes(data).decode(), "sha": blob_sha, "url": url,
                "git_url": git_url, "html_url": html_url,
                "download_url": f"{self.web}/raw/{repo.full_name}/{ref_sha}/{path}",
                "_links": {"self": url, "git": git_url, "html": html_url}}

    # -- app auth ---------------------------------------------------------------------------------

    @endpoint("GET", "/app")
    def get_app(self, ctx: Ctx) -> Reply:
        self._require_jwt(ctx)
        return Reply(200, self.app())

    @endpoint("POST", "/app/installations/{installation_id}/access_tokens")
    def create_installation_token(self, ctx: Ctx) -> Reply:
        self._require_jwt(ctx)
        installation_id = ctx.param_int("installation_id")
        if installation_id not in self.s.installations:
            raise ApiError(404, "Not Found")
        granted = self.s.installation_permissions[installation_id]
        permissions = dict(granted)
        if ctx.body("permissions"):
            permissions = perms.narrowed(granted, ctx.body("permissions"))
            if permissions is None:
                raise ApiError(422, "The permissions requested are not granted to this installation.", errors=[])
        token = "ghs_" + hashlib.sha1(f"{installation_id}{time.time_ns()}".encode()).hexdigest()[:36]
        expires = utcnow() + timedelta(hours=1)
        self.s.tokens[token] = Token(token, installation_id, expires, permissions)
        return Reply(201, {"token": token, "expires_at": iso(expires), "permissions": permissions,
                           "repository_selection": "all"})

    @endpoint("GET", "/repos/{owner}/{repo}/installation")
    def get_repo_installation(self, ctx: Ctx) -> Reply:
        self._require_jwt(ctx)
        repo = self._repo(ctx)
        for installation_id, account in self.s.installations.items():
            if account.lower() == repo.owner.lower():
                return Reply(200, self.installation(installation_id))
        raise ApiError(404, "Not Found")

    def _require_jwt(self, ctx: Ctx) -> None:
        if ctx.jwt_app_id is None:
            raise ApiError(401, "A JSON web token could not be decoded")

    # -- repositories and contents ----------------------------------------------------------------

    @endpoint("GET", "/repos/{owner}/{repo}")
    def get_repo(self, ctx: Ctx) -> Reply:
        return Reply(200, self.repository(self._repo(ctx)))

    @endpoint("GET", "/repos/{owner}/{repo}/contents/{path}")
    def get_content(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        sha = self.s.resolve(repo, ctx.q("ref") or repo.default_branch)
        path = ctx.params["path"].strip("/")
        files = self.s.git.files_at(sha)
        if path in files:
            return Reply(200, self.content(repo, path, sha, files[path]))
        prefix = path + "/"
        entries: dict[str, dict[str, Any]] = {}
        for name in sorted(p for p in files if p.startswith(prefix)):
            child, _, rest = name[len(prefix):].partition("/")
            child_path = prefix + child
            if rest:
                tree = self.s.git.subtree_sha(self.s.git.commits[sha].tree, child_path)
                entries.setdefault(child, self._dir_entry(repo, child_path, "dir", tree, 0, sha))
            else:
                entries[child] = self._dir_entry(repo, child_path, "file", files[name],
                                                 len(self.s.git.blobs[files[name]]), sha)
        if not entries:
            raise ApiError(404, "Not Found")
        return Reply(200, list(entries.values()))

    def _dir_entry(self, repo, path, kind, sha, size, ref_sha) -> dict[str, Any]:
        url = self.url(f"/repos/{repo.full_name}/contents/{path}") + "?" + urlencode({"ref": ref_sha})
        git_url = self.url(f"/repos/{repo.full_name}/git/{'trees' if kind == 'dir' else 'blobs'}/{sha}")
        html_url = f"{self.web}/{repo.full_name}/tree/{ref_sha}/{path}"
        return {"type": kind, "size": size, "name": path.rsplit("/", 1)[-1], "path": path, "sha": sha,
                "url": url, "git_url": git_url, "html_url": html_url,
                "download_url": f"{self.web}/raw/{repo.full_name}/{ref_sha}/{path}" if kind == "file" else None,
                "_links": {"self": url, "git": git_url, "html": html_url}}

    @endpoint("GET", "/repos/{owner}/{repo}/tarball/{ref}")
    def download_tarball(self, ctx: Ctx) -> Reply:
        """302 to the archive on codeload (github.com: another host; GHES: its own ``/_codeload``), with
        a short-lived token in the URL for a private repository, as GitHub does."""
        repo = self._repo(ctx)
        ref = ctx.params["ref"]
        self.s.resolve(repo, ref)                        # 404 for an unknown ref
        path = f"/{quote(repo.owner)}/{quote(repo.name)}/legacy.tar.gz/{quote(ref, safe='/')}"
        if repo.private:
            token = secrets.token_hex(16)
            self.s.archive_tokens[token] = (repo.full_name, utcnow() + timedelta(minutes=5))
            path += "?" + urlencode({"token": token})
        return Reply(302, None, headers={"Location": self.codeload(path)})

    @endpoint("PUT", "/repos/{owner}/{repo}/contents/{path}")
    def put_content(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        self._require_write(repo, ctx)
        path = ctx.params["path"].strip("/")
        branch = ctx.body("branch") or repo.default_branch
        if branch not in repo.branches:
            raise ApiError(404, f"Branch {branch} not found")
        parent = repo.branches[branch]
        files = self.s.git.files_at(parent)
        existing = files.get(path)
        if existing is not None and ctx.body("sha") != existing:
            raise ApiError(409, f"{path} does not match {ctx.body('sha')}")
        if existing is None and ctx.body("sha"):
            raise ApiError(422, "Invalid request.\n\n\"sha\" wasn't supplied.", errors=[])
        try:
            content = base64.b64decode(ctx.body("content"), validate=True)
        except ValueError:
            raise ApiError(422, "content is not valid Base64", errors=[])
        tree = self.s.git.derive_tree(files, {path: content})
        sha = self.s.git.put_commit(tree, [parent], ctx.body("message"), ctx.actor())
        repo.branches[branch] = sha
        blob = self.s.git.files_at(sha)[path]
        body = {"content": self.content(repo, path, sha, blob), "commit": self.git_commit(repo, sha)}
        body["content"].pop("encoding"), body["content"].pop("content")
        return Reply(200 if existing else 201, body)

    @endpoint("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}")
    def get_tree(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        ref = ctx.params["tree_sha"]
        tree_sha = ref if ref in self.s.git.trees else self.s.git.commits[self.s.resolve(repo, ref)].tree
        files = self.s.git.trees[tree_sha]
        recursive = ctx.q("recursive") not in (None, "", "0", "false")
        entries: dict[str, dict[str, Any]] = {}
        for path in sorted(files):
            parts = path.split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if (recursive or depth == 1) and directory not in entries:
                    sub = self.s.git.subtree_sha(tree_sha, directory)
                    entries[directory] = {"path": directory, "mode": "040000", "type": "tree", "sha": sub,
                                          "url": self.url(f"/repos/{repo.full_name}/git/trees/{sub}")}
            if recursive or len(parts) == 1:
                blob = files[path]
                entries[path] = {"path": path, "mode": "100644", "type": "blob", "sha": blob,
                                 "size": len(self.s.git.blobs[blob]),
                                 "url": self.url(f"/repos/{repo.full_name}/git/blobs/{blob}")}
        return Reply(200, {"sha": tree_sha, "url": self.url(f"/repos/{repo.full_name}/git/trees/{tree_sha}"),
                           "tree": sorted(entries.values(), key=lambda e: e["path"]), "truncated": False})

    @endpoint("GET", "/repos/{owner}/{repo}/commits/{ref}")
    def get_commit(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        sha = self.s.resolve(repo, ctx.params["ref"])
        return Reply(200, self.commit(repo, sha, with_files=True))

    # -- git database (enough to open a revert pull request) --------------------------------------

    @endpoint("GET", "/repos/{owner}/{repo}/git/ref/{ref}")
    def get_ref(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        ref = ctx.params["ref"]
        kind, _, name = ref.partition("/")
        table = {"heads": repo.branches, "tags": repo.tags}.get(kind, {})
        if name not in table:
            raise ApiError(404, "Not Found")
        return Reply(200, self._ref(repo, f"refs/{ref}", table[name]))

    def _ref(self, repo: Repo, full_ref: str, sha: str) -> dict[str, Any]:
        return {"ref": full_ref, "node_id": f"REF_{sha[:8]}",
                "url": self.url(f"/repos/{repo.full_name}/git/{full_ref}"),
                "object": {"type": "commit", "sha": sha, "url": self.url(f"/repos/{repo.full_name}/git/commits/{sha}")}}

    @endpoint("POST", "/repos/{owner}/{repo}/git/refs")
    def create_ref(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        self._require_write(repo, ctx)
        ref, sha = ctx.body("ref"), ctx.body("sha")
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise ApiError(422, "Reference name must start with 'refs/' and have at least two slashes.", errors=[])
        if sha not in self.s.git.commits:
            raise ApiError(422, "Object does not exist", errors=[])
        kind, name = ref.split("/", 2)[1:]
        table = {"heads": repo.branches, "tags": repo.tags}.get(kind)
        if table is None:
            raise ApiError(422, "Reference name must be a branch or tag", errors=[])
        if name in table:
            raise ApiError(422, "Reference already exists", errors=[])
        table[name] = sha
        location = self.url(f"/repos/{repo.full_name}/git/{ref}")
        return Reply(201, self._ref(repo, ref, sha), headers={"Location": location})

    @endpoint("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}")
    def update_ref(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        self._require_write(repo, ctx)
        kind, _, name = ctx.params["ref"].removeprefix("refs/").partition("/")
        table = {"heads": repo.branches, "tags": repo.tags}.get(kind, {})
        if name not in table:
            raise ApiError(422, "Reference does not exist", errors=[])
        sha = ctx.body("sha")
        if sha not in self.s.git.commits:
            raise ApiError(422, "Object does not exist", errors=[])
        if not ctx.body("force") and table[name] not in self.s.git.ancestry(sha):
            raise ApiError(422, "Update is not a fast forward", errors=[])
        table[name] = sha
        if kind == "heads":                      # a push to a pull request's branch moves its head
            for pr in self.s.pulls.values():
                if pr.repo == repo.full_name and pr.state == "open" and pr.head_ref == name:
                    pr.head_sha, pr.updated_at = sha, utcnow()
        return Reply(200, self._ref(repo, f"refs/{kind}/{name}", sha))

    @endpoint("POST", "/repos/{owner}/{repo}/git/blobs")
    def create_blob(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        self._require_write(repo, ctx)
        content = ctx.body("content")
        data = base64.b64decode(content) if ctx.body("encoding") == "base64" else content.encode()
        sha = self.s.git.put_blob(data)
        return Reply(201, {"sha": sha, "url": self.url(f"/repos/{repo.full_name}/git/blobs/{sha}")})

    @endpoint("POST", "/repos/{owner}/{repo}/git/trees")
    def create_tree(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        self._require_write(repo, ctx)
        base_tree = ctx.body("base_tree")
        if base_tree and base_tree not in self.s.git.trees:
            raise ApiError(422, "base_tree is not a valid tree", errors=[])
        files = dict(self.s.git.trees[base_tree]) if base_tree else {}
        for entry in ctx.body("tree", []):
            path = entry["path"]
            if entry.get("type", "blob") != "blob":
                raise ApiError(422, "the fake only stores blobs in trees", errors=[])
            if "content" in entry:
                files[path] = self.s.git.put_blob(entry["content"].encode())
            elif entry.get("sha") is None:
                files.pop(path, None)
            elif entry["sha"] in self.s.git.blobs:
                files[path] = entry["sha"]
            else:
                raise ApiError(422, f"tree.sha {entry['sha']} is not a valid blob", errors=[])
        sha = self.s.git.put_tree(files)
        listing = self.get_tree(dataclasses.replace(ctx, params={**ctx.params, "tree_sha": sha},
                                                    query=MultiDict({"recursive": "1"})))
        return Reply(201, listing.body)

    @endpoint("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}")
    def get_git_commit(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        sha = ctx.params["commit_sha"]
        if sha not in self.s.git.commits:
            raise ApiError(404, "Not Found")
        return Reply(200, self.git_commit(repo, sha))

    @endpoint("POST", "/repos/{owner}/{repo}/git/commits")
    def create_git_commit(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        self._require_write(repo, ctx)
        tree, parents = ctx.body("tree"), ctx.body("parents", [])
        if tree not in self.s.git.trees or any(p not in self.s.git.commits for p in parents):
            raise ApiError(422, "Tree SHA or parent SHAs do not exist", errors=[])
        author = (ctx.body("author") or {}).get("name") or ctx.actor()
        sha = self.s.git.put_commit(tree, parents, ctx.body("message"), author, ctx.actor())
        return Reply(201, self.git_commit(repo, sha))

    # -- pull requests ----------------------------------------------------------------------------

    @endpoint("GET", "/repos/{owner}/{repo}/pulls/{pull_number}")
    def get_pull(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        return Reply(200, self.pull(repo, self.s.pull(repo, ctx.param_int("pull_number"))))

    @endpoint("POST", "/repos/{owner}/{repo}/pulls")
    def create_pull(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        self._require_write(repo, ctx)
        head, base = ctx.body("head"), ctx.body("base")
        head = head.split(":", 1)[-1]
        if head not in repo.branches or base not in repo.branches:
            raise ApiError(422, "Validation Failed",
                           errors=[{"resource": "PullRequest", "field": "head" if head not in repo.branches else "base",
                                    "code": "invalid"}])
        if any(pr.repo == repo.full_name and pr.state == "open" and pr.head_ref == head and pr.base_ref == base
               for pr in self.s.pulls.values()):
            raise ApiError(422, "Validation Failed",
                           errors=[{"resource": "PullRequest", "code": "custom",
                                    "message": f"A pull request already exists for {repo.owner}:{head}."}])
        if not self._diff(repo.branches[base], repo.branches[head]):
            raise ApiError(422, "Validation Failed",
                           errors=[{"resource": "PullRequest", "code": "custom",
                                    "message": f"No commits between {base} and {head}"}])
        pr = Pull(self.s.next_number(repo.full_name), repo.full_name, ctx.body("title") or head,
                  ctx.body("body") or "", ctx.actor(), base, repo.branches[base], head, repo.branches[head],
                  draft=bool(ctx.body("draft")))
        self.s.pulls[(repo.full_name, pr.number)] = pr
        location = self.url(f"/repos/{repo.full_name}/pulls/{pr.number}")
        return Reply(201, self.pull(repo, pr), headers={"Location": location})

    @endpoint("GET", "/repos/{owner}/{repo}/pulls")
    def list_pulls(self, ctx: Ctx) -> Reply:
        """Pull requests filtered by ``state`` (default open), ``head`` (``owner:branch``) and
        ``base``; newest first (GitHub's ``sort=created``, ``direction=desc``)."""
        repo = self._repo(ctx)
        state, head, base = ctx.q("state") or "open", ctx.q("head"), ctx.q("base")
        found = [pr for (name, _), pr in self.s.pulls.items() if name == repo.full_name]
        if state != "all":
            found = [pr for pr in found if pr.state == state]
        if head:
            owner, _, branch = head.rpartition(":")
            found = [pr for pr in found if pr.head_ref == branch and owner.lower() in ("", repo.owner.lower())]
        if base:
            found = [pr for pr in found if pr.base_ref == base]
        found.sort(key=lambda pr: pr.number, reverse=(ctx.q("direction") or "desc") == "desc")
        return self._paginate(ctx, [self.pull(repo, pr) for pr in found])

    @endpoint("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files")
    def list_pull_files(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        pr = self.s.pull(repo, ctx.param_int("pull_number"))
        return self._paginate(ctx, self._files(repo, pr.base_sha, pr.head_sha))

    @endpoint("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits")
    def list_pull_commits(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        pr = self.s.pull(repo, ctx.param_int("pull_number"))
        shas = self.s.git.ancestry(pr.head_sha, pr.base_sha)
        return self._paginate(ctx, [self.commit(repo, sha) for sha in shas])

    @endpoint("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews")
    def list_reviews(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        pr = self.s.pull(repo, ctx.param_int("pull_number"))
        reviews = [r for r in self.s.reviews if r.repo == repo.full_name and r.pull == pr.number]
        return self._paginate(ctx, [self.review(r) for r in reviews])

    def _diff(self, base_sha: str, head_sha: str) -> list[tuple[str, str | None, str | None]]:
        old = self.s.git.files_at(base_sha) if base_sha else {}
        new = self.s.git.files_at(head_sha)
        return [(p, old.get(p), new.get(p)) for p in sorted(set(old) | set(new)) if old.get(p) != new.get(p)]

    def _files(self, repo: Repo, base_sha: str | None, head_sha: str) -> list[dict[str, Any]]:
        entries = []
        for path, old, new in self._diff(base_sha, head_sha):
            before = self.s.git.blobs[old].decode(errors="replace").splitlines() if old else []
            after = self.s.git.blobs[new].decode(errors="replace").splitlines() if new else []
            patch = "\n".join(list(difflib.unified_diff(before, after, lineterm="", n=3))[2:])
            added = sum(1 for line in patch.splitlines() if line.startswith("+"))
            removed = sum(1 for line in patch.splitlines() if line.startswith("-"))
            sha = new or old
            entries.append({"sha": sha, "filename": path,
                            "status": "added" if old is None else "removed" if new is None else "modified",
                            "additions": added, "deletions": removed, "changes": added + removed,
                            "blob_url": f"{self.web}/{repo.full_name}/blob/{head_sha}/{path}",
                            "raw_url": f"{self.web}/{repo.full_name}/raw/{head_sha}/{path}",
                            "contents_url": self.url(f"/repos/{repo.full_name}/contents/{path}") + f"?ref={head_sha}",
                            "patch": patch})
        return entries

    # -- issue comments and reactions -------------------------------------------------------------

    @endpoint("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
    def list_comments(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        number = self._issue(repo, ctx)
        comments = sorted((c for c in self.s.comments.values() if c.repo == repo.full_name and c.issue == number),
                          key=lambda c: c.id)
        return self._paginate(ctx, [self.comment(c) for c in comments])

    @endpoint("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
    def create_comment(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        number = self._issue(repo, ctx)
        comment = Comment(self.s.next_id(), repo.full_name, number, ctx.actor(), ctx.body("body"))
        self.s.comments[comment.id] = comment
        return Reply(201, self.comment(comment), headers={"Location": self.comment(comment)["url"]})

    @endpoint("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}")
    def update_comment(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        comment = self.s.comments.get(ctx.param_int("comment_id"))
        if comment is None or comment.repo != repo.full_name:
            raise ApiError(404, "Not Found")
        moderator = self.s.collaborator_permission(repo, ctx.actor()) in ("admin", "maintain")
        if comment.user != ctx.actor() and not moderator:
            raise ApiError(403, "Resource not accessible by integration")
        comment.body, comment.updated_at = ctx.body("body"), utcnow()
        return Reply(200, self.comment(comment))

    @endpoint("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
    def create_reaction(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        comment = self.s.comments.get(ctx.param_int("comment_id"))
        if comment is None or comment.repo != repo.full_name:
            raise ApiError(404, "Not Found")
        for reaction in comment.reactions:
            if reaction["user"]["login"] == ctx.actor() and reaction["content"] == ctx.body("content"):
                return Reply(200, reaction)
        reaction = {"id": self.s.next_id(), "node_id": "REA_x", "user": self.user(ctx.actor()),
                    "content": ctx.body("content"), "created_at": iso(utcnow())}
        reaction["node_id"] = f"REA_{reaction['id']}"
        comment.reactions.append(reaction)
        return Reply(201, reaction)

    def _issue(self, repo: Repo, ctx: Ctx) -> int:
        number = ctx.param_int("issue_number")
        self.s.pull(repo, number)  # the fake's issues are its pull requests
        return number

    # -- checks and statuses ----------------------------------------------------------------------

    @endpoint("POST", "/repos/{owner}/{repo}/check-runs")
    def create_check_run(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        if ctx.jwt_app_id is None and ctx.installation_id is None:
            raise ApiError(403, "You must authenticate via a GitHub App.")
        sha = ctx.body("head_sha")
        if sha not in self.s.git.commits:
            raise ApiError(422, "No commit found for SHA: " + str(sha), errors=[])
        run = CheckRun(self.s.next_id(), repo.full_name, ctx.body("name"), sha, app_slug=self.s.app_slug)
        self._apply_check_run(run, ctx)
        self.s.check_runs[run.id] = run
        return Reply(201, self.check_run(run))

    @endpoint("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}")
    def update_check_run(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        run = self.s.check_runs.get(ctx.param_int("check_run_id"))
        if run is None or run.repo != repo.full_name:
            raise ApiError(404, "Not Found")
        self._apply_check_run(run, ctx)
        return Reply(200, self.check_run(run))

    @endpoint("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations")
    def list_annotations(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        run = self.s.check_runs.get(ctx.param_int("check_run_id"))
        if run is None or run.repo != repo.full_name:
            raise ApiError(404, "Not Found")
        blob_href = f"{self.web}/{repo.full_name}/blob/{run.head_sha}"
        return self._paginate(ctx, [{**a, "blob_href": f"{blob_href}/{a['path']}"} for a in run.annotations])

    def _apply_check_run(self, run: CheckRun, ctx: Ctx) -> None:
        for name in ("name", "details_url", "external_id"):
            if ctx.body(name) is not None:
                setattr(run, name, ctx.body(name))
        if ctx.body("status"):
            run.status = ctx.body("status")
        if ctx.body("started_at"):
            run.started_at = _parse_time(ctx.body("started_at"))
        if ctx.body("conclusion"):
            run.conclusion, run.status = ctx.body("conclusion"), "completed"
        if run.status == "completed":
            if not run.conclusion:
                raise ApiError(422, "Invalid request.\n\nNo subschema in \"anyOf\" matched: conclusion is required "
                                    "when status is completed.", errors=[])
            run.completed_at = _parse_time(ctx.body("completed_at")) if ctx.body("completed_at") else utcnow()
        output = ctx.body("output")
        if output:
            for name in ("title", "summary", "text"):
                if name in output:
                    run.output[name] = output[name]
            run.annotations.extend(output.get("annotations") or [])
        if ctx.body("actions") is not None:
            run.actions = ctx.body("actions")

    @endpoint("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs")
    def list_check_runs_for_ref(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        sha = self.s.resolve(repo, ctx.params["ref"])
        runs = [r for r in self.s.check_runs.values() if r.repo == repo.full_name and r.head_sha == sha]
        if ctx.q("check_name"):
            runs = [r for r in runs if r.name == ctx.q("check_name")]
        if ctx.q("status"):
            runs = [r for r in runs if r.status == ctx.q("status")]
        if ctx.q("app_id"):
            runs = [r for r in runs if str(self.s.app_id) == ctx.q("app_id")]
        if ctx.q("filter", "latest") == "latest":
            latest: dict[str, CheckRun] = {}
            for run in sorted(runs, key=lambda r: r.id):
                latest[run.name] = run
            runs = list(latest.values())
        runs.sort(key=lambda r: r.id, reverse=True)
        page = self._paginate(ctx, [self.check_run(r) for r in runs])
        page.body = {"total_count": len(runs), "check_runs": page.body}
        return page

    @endpoint("POST", "/repos/{owner}/{repo}/statuses/{sha}")
    def create_status(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        self._require_write(repo, ctx)
        sha = ctx.params["sha"]
        if sha not in self.s.git.commits:
            raise ApiError(422, f"No commit found for SHA: {sha}", errors=[])
        status = Status(self.s.next_id(), repo.full_name, sha, ctx.body("state"), ctx.body("context") or "default",
                        ctx.body("description"), ctx.body("target_url"), ctx.actor())
        self.s.statuses.append(status)
        return Reply(201, self.status(status), headers={"Location": self.status(status)["url"]})

    @endpoint("GET", "/repos/{owner}/{repo}/commits/{ref}/statuses")
    def list_statuses(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        sha = self.s.resolve(repo, ctx.params["ref"])
        statuses = [s for s in reversed(self.s.statuses) if s.repo == repo.full_name and s.sha == sha]
        return self._paginate(ctx, [self.status(s) for s in statuses])

    # -- people -----------------------------------------------------------------------------------

    @endpoint("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission")
    def get_permission(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        login = ctx.params["username"]
        role = self.s.collaborator_permission(repo, login)
        permission = {"maintain": "write", "triage": "read"}.get(role, role)
        user = self.user(login)
        user["permissions"] = {name: _grants(role, name) for name in ("admin", "maintain", "push", "triage", "pull")}
        user["role_name"] = role
        return Reply(200, {"permission": permission, "role_name": role, "user": user})

    @endpoint("GET", "/orgs/{org}/teams/{team_slug}/memberships/{username}")
    def get_team_membership(self, ctx: Ctx) -> Reply:
        org, slug, login = ctx.params["org"], ctx.params["team_slug"], ctx.params["username"]
        members = self.s.teams.get((org.lower(), slug.lower()))
        if members is None or login not in members:
            raise ApiError(404, "Not Found")
        role = "maintainer" if members[login].endswith(":maintainer") else "member"
        return Reply(200, {"url": self.url(f"/orgs/{org}/teams/{slug}/memberships/{login}"), "role": role,
                           "state": members[login].split(":")[0]})

    # -- deployments ------------------------------------------------------------------------------

    @endpoint("POST", "/repos/{owner}/{repo}/deployments")
    def create_deployment(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        self._require_write(repo, ctx)
        ref = ctx.body("ref")
        try:
            sha = self.s.resolve(repo, ref)
        except ApiError:
            raise ApiError(422, f"No ref found for: {ref}", errors=[])
        environment = ctx.body("environment", "production")
        deployment = Deployment(self.s.next_id(), repo.full_name, sha, ref, ctx.body("task", "deploy"), environment,
                                ctx.body("description"), ctx.body("payload", {}), ctx.actor(),
                                ctx.body("production_environment", environment == "production"),
                                bool(ctx.body("transient_environment", False)))
        self.s.deployments[deployment.id] = deployment
        return Reply(201, self.deployment(deployment))

    @endpoint("GET", "/repos/{owner}/{repo}/deployments")
    def list_deployments(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        found = [d for d in self.s.deployments.values() if d.repo == repo.full_name]
        for name in ("sha", "ref", "task", "environment"):
            if ctx.q(name):
                found = [d for d in found if getattr(d, name) == ctx.q(name)]
        found.sort(key=lambda d: d.id, reverse=True)
        return self._paginate(ctx, [self.deployment(d) for d in found])

    @endpoint("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}")
    def get_deployment(self, ctx: Ctx) -> Reply:
        return Reply(200, self.deployment(self._deployment(self._repo(ctx), ctx)))

    @endpoint("POST", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses")
    def create_deployment_status(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        self._require_write(repo, ctx)
        deployment = self._deployment(repo, ctx)
        state = ctx.body("state")
        status_id = self.s.next_id()
        base = f"/repos/{repo.full_name}/deployments/{deployment.id}"
        status = {"id": status_id, "node_id": f"DES_{status_id}", "state": state,
                  "creator": self.user(ctx.actor()), "description": ctx.body("description", ""),
                  "environment": ctx.body("environment") or deployment.environment,
                  "target_url": ctx.body("target_url") or ctx.body("log_url") or "",
                  "log_url": ctx.body("log_url") or ctx.body("target_url") or "",
                  "environment_url": ctx.body("environment_url") or "",
                  "url": self.url(f"{base}/statuses/{status_id}"), "deployment_url": self.url(base),
                  "repository_url": self.url(f"/repos/{repo.full_name}"),
                  "created_at": iso(utcnow()), "updated_at": iso(utcnow())}
        if state == "success" and ctx.body("auto_inactive", True):
            self._auto_inactivate(repo, deployment)
        deployment.statuses.append(status)
        return Reply(201, status)

    def _auto_inactivate(self, repo: Repo, deployment: Deployment) -> None:
        """``auto_inactive`` as GitHub describes it: an ``inactive`` status on every *prior*,
        non-transient, non-production deployment of the same repository and environment whose
        latest state is ``success`` (production and transient deployments are left alone)."""
        for other in self.s.deployments.values():
            if (other.id < deployment.id and other.repo == repo.full_name
                    and other.environment == deployment.environment
                    and not other.transient_environment and not other.production_environment
                    and other.statuses and other.statuses[-1]["state"] == "success"):
                status_id = self.s.next_id()
                url = self.url(f"/repos/{repo.full_name}/deployments/{other.id}/statuses/{status_id}")
                other.statuses.append({**other.statuses[-1], "id": status_id, "node_id": f"DES_{status_id}",
                                       "state": "inactive", "url": url, "description": "",
                                       "created_at": iso(utcnow()), "updated_at": iso(utcnow())})

    @endpoint("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses")
    def list_deployment_statuses(self, ctx: Ctx) -> Reply:
        repo = self._repo(ctx)
        deployment = self._deployment(repo, ctx)
        return self._paginate(ctx, list(reversed(deployment.statuses)))

    def _deployment(self, repo: Repo, ctx: Ctx) -> Deployment:
        deployment = self.s.deployments.get(ctx.param_int("deployment_id"))
        if deployment is None or deployment.repo != repo.full_name:
            raise ApiError(404, "Not Found")
        return deployment

    # -- shared helpers ---------------------------------------------------------------------------

    def _repo(self, ctx: Ctx) -> Repo:
        return self.s.repo(ctx.params["owner"], ctx.params["repo"])

    def _require_write(self, repo: Repo, ctx: Ctx) -> None:
        login = ctx.actor()
        if ctx.installation_id is not None:
            return  # an installation token's permissions were checked before the handler ran
        if self.s.collaborator_permission(repo, login) not in ("admin", "maintain", "write"):
            raise ApiError(403, "Resource not accessible by personal access token")

    @staticmethod
    def _paginate(ctx: Ctx, items: list[Any]) -> Reply:
        per_page = max(1, min(100, int(ctx.q("per_page") or 30)))
        page = max(1, int(ctx.q("page") or 1))
        start = (page - 1) * per_page
        reply = Reply(200, items[start:start + per_page])
        last = max(1, -(-len(items) // per_page))
        links = {}
        if page < last:
            links["next"], links["last"] = page + 1, last
        if page > 1:
            links["first"], links["prev"] = 1, page - 1
        reply.pages, reply.per_page = links, per_page
        return reply


def _grants(role: str, permission: str) -> bool:
    order = ["pull", "triage", "push", "maintain", "admin"]
    held = {"read": "pull", "triage": "triage", "write": "push", "maintain": "maintain", "admin": "admin"}.get(role)
    return held is not None and order.index(held) >= order.index(permission)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ==================================================================================================
# The server


class FakeGitHub(LocalServer):
    """GitHub's REST API over HTTP on 127.0.0.1, validated against the official description.

    ``flavor``: ``"github.com"`` (API at ``/``) or ``"ghes-3.19"`` (API at ``/api/v3``).
    ``validator``: pass a cached :class:`OpenApiValidator` (the ``github_validators`` fixture);
    by default one is taken from the per-process cache.
    ``validate_responses``: check each response against the description (on by default).
    """

    def __init__(self, flavor: str = "github.com", *, validator: OpenApiValidator | None = None,
                 app_id: int = 4242, app_slug: str = "modelherd", validate_responses: bool = True,
                 rate_limit: int = 5000) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {sorted(FLAVORS)}")
        self.flavor, self.base_path = flavor, FLAVORS[flavor]
        self.validator = validator or validator_for(flavor, served_templates())
        self.validate_responses = validate_responses
        self.state = GitHubState(app_id, app_slug)
        self.rate = RateLimiter(rate_limit)
        self.faults = Faults()
        self.latency_ms = 0
        self.app_public_key: Any = None  # set by generate_app_key(); then JWT signatures are verified
        self.calls: list[Call] = []
        self.violations: list[str] = []
        self.response_errors: list[str] = []
        # (method, template, permissions it needs) of every installation-token call refused 403
        self.denied: list[tuple[str, str, str]] = []
        self.lock = threading.RLock()
        self.host_url = ""
        self.api = GitHubApi(self.state, self.url, "https://github.example.invalid", self.codeload_url)
        # members appended to every archive served (tests of hostile archives); ``{top}`` in a name
        # becomes the archive's top folder
        self.archive_extras: list[tuple[tarfile.TarInfo, bytes | None]] = []

    # -- lifecycle (start/stop: LocalServer) ------------------------------------------------------

    thread_name = "fake-github"

    def _serving(self, url: str) -> None:
        self.host_url = url

    @property
    def base_url(self) -> str:
        """What a client takes as its API base URL (``MODELHERD_GITHUB__API_URL``)."""
        return self.host_url + self.base_path

    def url(self, path: str) -> str:
        return self.base_url + path

    def codeload_url(self, path: str) -> str:
        """The URL of an archive download (``/{owner}/{repo}/legacy.tar.gz/{ref}``)."""
        if self.flavor == "github.com":
            return f"http://{CODELOAD_HOST}:{self._server.server_port}{path}"
        return self.host_url + CODELOAD_PREFIX[self.flavor] + path

    # -- assertions and records -------------------------------------------------------------------

    def assert_clean(self) -> None:
        problems = [f"request broke the description: {v}" for v in self.violations]
        problems += [f"fake answered off-schema: {e}" for e in self.response_errors]
        assert not problems, "\n".join(problems)

    def take_violations(self) -> list[str]:
        """Return and forget the violations (for tests that provoke them on purpose)."""
        with self.lock:
            taken, self.violations = self.violations, []
        return taken

    def reads(self) -> list[Call]:
        return [c for c in self.calls if not c.is_write]

    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.is_write]

    def calls_to(self, method: str, template: str) -> list[Call]:
        return [c for c in self.calls if c.method == method.upper() and c.template == template]

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    # -- fault injection --------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 502, *, retry_after: int | None = None,
                  reset_in: int | None = None, match: Callable[[str, str], bool] | None = None,
                  applied: bool = False) -> None:
        """Answer the next ``n`` calls (those ``match(method, path)`` accepts) with ``status``.

        ``applied``: carry the call out first, then answer ``status`` — the write happened but its
        answer was lost (a gateway's 502 or 504 after GitHub acted, a client timeout), so the client
        cannot tell it from a failure.

        ``502``/``500``/``503``: a server error (``Retry-After`` when given). ``403``: a secondary
        rate limit with ``Retry-After`` (default 1 s); with ``reset_in`` a primary limit instead.
        ``429``: the primary limit exhausted (``X-RateLimit-Remaining: 0``, ``X-RateLimit-Reset`` in
        ``reset_in`` s, default 60).
        """
        with self.lock:
            self.faults.add(n, Fault(status, retry_after, reset_in, match, applied=applied))

    def hold_next(self, match: Callable[[str, str], bool]) -> Hold:
        """Carry out the next call ``match(method, path)`` accepts, then hold its answer until the
        returned :class:`Hold` is released: the client waits, as a worker killed before it heard
        the answer (``hold.reached`` is set once the call was carried out)."""
        hold = Hold()
        with self.lock:
            self.faults.add(1, Fault(None, None, None, match, hold=hold))
        return hold

    # -- test-side state helpers ------------------------------------------------------------------

    def add_installation(self, account: str, installation_id: int | None = None, *,
                         permissions: dict[str, str] | None = None) -> int:
        """An installation of the app on ``account``, granted ``permissions`` (default: what
        ``app.yaml`` asks for, as when its owner accepts the app)."""
        with self.lock:
            installation_id = installation_id or self.state.next_id()
            self.state.installations[installation_id] = account
            self.state.installation_permissions[installation_id] = dict(
                perms.app_permissions() if permissions is None else permissions)
            return installation_id

    def set_installation_permissions(self, owner: str, permissions: dict[str, str]) -> None:
        """What the owner of ``owner``'s installation granted from now on; tokens minted before keep
        theirs until they expire, as on GitHub."""
        with self.lock:
            self.state.installation_permissions[self.installation_id(owner)] = dict(permissions)

    def add_repo(self, owner: str, name: str, default_branch: str = "main", *, private: bool = False,
                 files: dict[str, str] | None = None) -> str:
        """Create a repository (with an installation of the app on ``owner``); return ``owner/name``.

        The default branch gets an initial commit (``files`` or a README).
        """
        with self.lock:
            repo = Repo(self.state.next_id(), owner, name, default_branch, private)
            self.state.repos[repo.full_name.lower()] = repo
            if owner.lower() not in {a.lower() for a in self.state.installations.values()}:
                self.add_installation(owner)
            tree = self.state.git.derive_tree({}, files or {"README.md": f"# {name}\n"})
            repo.branches[default_branch] = self.state.git.put_commit(tree, [], "Initial commit", owner)
            return repo.full_name

    def installation_id(self, owner: str) -> int:
        return next(i for i, a in self.state.installations.items() if a.lower() == owner.lower())

    def head(self, repo: str, branch: str | None = None) -> str:
        r = self._repo(repo)
        return r.branches[branch or r.default_branch]

    def add_commit(self, repo: str, files: dict[str, str | bytes | None], parent: str | None = None, *,
                   message: str = "Change", author: str = "alice", branch: str | None = None) -> str:
        """A commit whose tree is ``parent``'s with ``files`` written (None deletes); return its SHA.

        ``parent`` defaults to the default branch's head. With ``branch`` the branch moves to it
        (created if missing); otherwise no ref changes.
        """
        with self.lock:
            r = self._repo(repo)
            parent = parent or r.branches[r.default_branch]
            tree = self.state.git.derive_tree(self.state.git.files_at(parent), files)
            sha = self.state.git.put_commit(tree, [parent], message, author)
            if branch:
                r.branches[branch] = sha
            return sha

    def archive_top(self, repo: str, ref: str) -> str:
        """The top folder of ``ref``'s archive: ``owner-repo-<sha7>``."""
        r = self._repo(repo)
        return f"{r.owner}-{r.name}-{self.state.resolve(r, ref)[:7]}"

    def archive(self, repo: str, ref: str) -> bytes:
        """The ``.tar.gz`` GitHub serves for ``ref``, laid out as ``git archive`` does (a pax global
        header holding the commit SHA, directories, files below the top folder), then
        :attr:`archive_extras`."""
        with self.lock:
            r = self._repo(repo)
            sha = self.state.resolve(r, ref)
            files = {path: self.state.git.blobs[blob] for path, blob in self.state.git.files_at(sha).items()}
            moment = int(self.state.git.commits[sha].date.timestamp())
        top = self.archive_top(repo, sha)
        folders = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": sha}) as tar:
            for folder in [""] + folders:
                info = tarfile.TarInfo(f"{top}/{folder}".rstrip("/") + "/")
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o775, moment
                tar.addfile(info)
            for path, data in sorted(files.items()):
                info = tarfile.TarInfo(f"{top}/{path}")
                info.size, info.mode, info.mtime = len(data), 0o664, moment
                tar.addfile(info, io.BytesIO(data))
            for extra, data in self.archive_extras:
                info = copy.copy(extra)
                info.name = extra.name.replace("{top}", top)
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return buffer.getvalue()

    def read_file(self, repo: str, ref: str, path: str) -> str | None:
        with self.lock:
            data = self.state.git.read(self.state.resolve(self._repo(repo), ref), path)
            return None if data is None else data.decode()

    def open_pull(self, repo: str, base_sha: str, head_sha: str, author: str, number: int | None = None, *,
                  title: str = "Update models", body: str = "", base_ref: str | None = None,
                  head_ref: str | None = None, draft: bool = False, labels: Iterable[str] = ()) -> int:
        """Open a pull request from ``head_sha`` onto ``base_sha``; return its number.

        The head branch (``head_ref``, default ``pr-<number>``) is created at ``head_sha``.
        """
        with self.lock:
            r = self._repo(repo)
            number = number or self.state.next_number(r.full_name)
            head_ref = head_ref or f"pr-{number}"
            r.branches[head_ref] = head_sha
            pr = Pull(number, r.full_name, title, body, author, base_ref or r.default_branch, base_sha,
                      head_ref, head_sha, draft=draft, labels=list(labels))
            self.state.pulls[(r.full_name, number)] = pr
            return number

    def push_to_pull(self, repo: str, number: int, files: dict[str, str | bytes | None], *,
                     author: str | None = None, message: str = "More changes") -> str:
        """Add a commit on the pull request's head (a ``synchronize``); return the new head SHA."""
        with self.lock:
            pr = self.pull(repo, number)
            sha = self.add_commit(repo, files, parent=pr.head_sha, author=author or pr.author, message=message,
                                  branch=pr.head_ref)
            pr.head_sha, pr.updated_at = sha, utcnow()
            return sha

    def merge_pull(self, repo: str, number: int, merged_by: str = "maintainer") -> str:
        """Merge (as a merge commit) into the base branch; return the merge commit SHA."""
        with self.lock:
            r, pr = self._repo(repo), self.pull(repo, number)
            base_head = r.branches[pr.base_ref]
            tree = self.state.git.commits[pr.head_sha].tree
            sha = self.state.git.put_commit(tree, [base_head, pr.head_sha], f"Merge pull request #{number}", merged_by)
            r.branches[pr.base_ref] = sha
            pr.state, pr.merged, pr.merged_by, pr.merge_commit_sha = "closed", True, merged_by, sha
            pr.updated_at = utcnow()
            return sha

    def pull(self, repo: str, number: int) -> Pull:
        return self.state.pull(self._repo(repo), number)

    def add_review(self, repo: str, number: int, user: str, state: str = "APPROVED", *,
                   commit_id: str | None = None, body: str = "") -> int:
        """A submitted review (``state`` as the REST API spells it: APPROVED, CHANGES_REQUESTED,
        COMMENTED, DISMISSED, PENDING) on ``commit_id`` (default: the current head)."""
        with self.lock:
            pr = self.pull(repo, number)
            review = Review(self.state.next_id(), pr.repo, number, user, state.upper(), commit_id or pr.head_sha,
                            body, None if state.upper() == "PENDING" else utcnow())
            self.state.reviews.append(review)
            return review.id

    def dismiss_review(self, review_id: int) -> None:
        with self.lock:
            next(r for r in self.state.reviews if r.id == review_id).state = "DISMISSED"

    def add_comment(self, repo: str, number: int, user: str, body: str) -> int:
        """A comment written by a person (e.g. a ``/deploy`` command); return its id."""
        with self.lock:
            comment = Comment(self.state.next_id(), self._repo(repo).full_name, number, user, body)
            self.state.comments[comment.id] = comment
            return comment.id

    def comments(self, repo: str, number: int) -> list[Comment]:
        return sorted((c for c in self.state.comments.values() if c.repo == self._repo(repo).full_name
                       and c.issue == number), key=lambda c: c.id)

    def check_runs(self, repo: str, head_sha: str | None = None) -> list[CheckRun]:
        full = self._repo(repo).full_name
        return [r for r in self.state.check_runs.values() if r.repo == full and head_sha in (None, r.head_sha)]

    def statuses(self, repo: str, sha: str | None = None) -> list[Status]:
        full = self._repo(repo).full_name
        return [s for s in self.state.statuses if s.repo == full and sha in (None, s.sha)]

    def deployments(self, repo: str) -> list[Deployment]:
        full = self._repo(repo).full_name
        return [d for d in self.state.deployments.values() if d.repo == full]

    def set_permission(self, repo: str, user: str, perm: str) -> None:
        """``perm``: admin, maintain, write, triage, read or none."""
        if perm not in ("admin", "maintain", "write", "triage", "read", "none"):
            raise ValueError(f"unknown permission {perm!r}")
        with self.lock:
            self._repo(repo).permissions[user] = perm

    def add_team_member(self, org: str, team: str, user: str, state: str = "active", role: str = "member") -> None:
        """``state``: active, or pending (an invitation not yet accepted)."""
        if state not in ("active", "pending"):
            raise ValueError("state must be active or pending")
        with self.lock:
            members = self.state.teams.setdefault((org.lower(), team.lower()), {})
            members[user] = state + (":maintainer" if role == "maintainer" else "")

    def add_user_token(self, token: str, login: str) -> None:
        """Make ``token`` authenticate as ``login`` (a personal access token)."""
        self.state.user_tokens[token] = login

    def generate_app_key(self) -> str:
        """An RSA key for the app: returns the private PEM; JWTs are then verified with its public half."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.app_public_key = key.public_key()
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption()).decode()

    def expire_tokens(self) -> None:
        """Expire every installation token issued so far (they then answer 401)."""
        with self.lock:
            for token in self.state.tokens.values():
                token.expires_at = utcnow() - timedelta(seconds=1)

    def _repo(self, full_name: str) -> Repo:
        owner, _, name = full_name.partition("/")
        return self.state.repo(owner, name)

    # -- HTTP -------------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        started = time.perf_counter()
        call, response = self._handle(request)
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        call.seconds = time.perf_counter() - started
        if call.hold is not None:
            call.hold.wait_released()
        return response(environ, start_response)

    def _handle(self, request: Request) -> tuple[Call, Response]:
        if self._is_codeload(request):
            return self._codeload(request)
        method, raw_body = request.method.upper(), request.get_data()
        path = request.path
        with self.lock:
            call = Call(method, path, None, 0, {k: request.args.getlist(k) for k in request.args},
                        decode_body(raw_body, request.content_type), None, 0.0, host=request.host)
            self.calls.append(call)
            status, body, headers = self._dispatch(request, call, raw_body)
            call.status = status
            headers.update(self.rate.headers())
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        headers.setdefault("X-GitHub-Request-Id", f"FAKE:{len(self.calls):08X}")
        headers.setdefault("X-GitHub-Api-Version-Selected", "2022-11-28")
        if self.flavor != "github.com":
            headers.setdefault("X-GitHub-Enterprise-Version", self.flavor.removeprefix("ghes-") + ".0")
        data = b"" if body is None else json.dumps(body).encode()
        return call, Response(data, status=status, headers=headers)

    # -- codeload: the archives the tarball endpoint redirects to (not part of the API description) ----

    def _is_codeload(self, request: Request) -> bool:
        if self.flavor == "github.com":
            return request.host.rsplit(":", 1)[0] == CODELOAD_HOST
        return request.path.startswith(CODELOAD_PREFIX[self.flavor] + "/")

    def _codeload(self, request: Request) -> tuple[Call, Response]:
        """An archive download: recorded like any call (template :data:`CODELOAD_TEMPLATE`), answered
        with the archive streamed without ``Content-Length``, as codeload does."""
        path = request.path[len(CODELOAD_PREFIX[self.flavor]):]
        with self.lock:
            call = Call(request.method.upper(), path, CODELOAD_TEMPLATE, 0,
                        {k: request.args.getlist(k) for k in request.args}, None, None, 0.0,
                        host=request.host, authorization=request.headers.get("Authorization"))
            self.calls.append(call)
            try:
                repo, ref = self._archive_target(request, path)
            except ApiError as error:
                call.status = error.status
                return call, Response(error.message, status=error.status, content_type="text/plain")
            call.status = 200
        data = self.archive(repo, ref)
        chunks = (data[i:i + 16384] for i in range(0, len(data), 16384))
        name = f"{self.archive_top(repo, ref)}.tar.gz"
        return call, Response(chunks, status=200, direct_passthrough=True,
                              headers={"Content-Type": "application/x-gzip",
                                       "Content-Disposition": f"attachment; filename={name}"})

    def _archive_target(self, request: Request, path: str) -> tuple[str, str]:
        """``(owner/repo, ref)`` of an archive URL; 404 for a malformed URL, an unknown ref, or a private
        repository without a live token from the redirect."""
        owner, _, rest = path.lstrip("/").partition("/")
        name, _, rest = rest.partition("/")
        kind, _, ref = rest.partition("/")
        if request.method.upper() != "GET" or kind != "legacy.tar.gz" or not ref:
            raise ApiError(404, "Not Found")
        repo = self.state.repo(owner, name)
        if repo.private:
            granted = self.state.archive_tokens.get(request.args.get("token", ""))
            if granted is None or granted[0] != repo.full_name or granted[1] <= utcnow():
                raise ApiError(404, "Not Found")
        self.state.resolve(repo, ref)                    # the path arrives percent-decoded
        return repo.full_name, ref

    def _dispatch(self, request: Request, call: Call, raw_body: bytes) -> tuple[int, Any, dict[str, str]]:
        method = call.method
        if not request.path.startswith(self.base_path + "/"):
            self.violations.append(f"{method} {request.path}: outside the API base path {self.base_path!r}")
            return 404, {"message": "Not Found", "documentation_url": DOCS}, {}
        path = request.path[len(self.base_path):]
        call.path = path
        route = self.validator.route(path)
        call.template = route.template if route else None
        errors = self.validator.validate(method, path, request.args, request.headers, raw_body)
        if errors:
            self.violations.extend(e if e.startswith(f"{method} ") else f"{method} {path}: {e}" for e in errors)
            return 422, {"message": "Invalid request.\n\n" + "\n".join(errors), "documentation_url": DOCS,
                         "errors": [{"resource": "Request", "code": "invalid", "message": e} for e in errors]}, {}
        handler = _ROUTES.get((method, route.template))
        if handler is None:
            self.violations.append(f"{method} {path}: {route.template} is described but FakeGitHub does not serve it")
            return 501, {"message": "Not implemented by FakeGitHub", "documentation_url": DOCS}, {}
        fault = self.faults.take(method, path)
        if fault is not None and not (fault.applied or fault.hold):
            return self.faults.answer(fault, self.rate)
        if fault is not None:
            call.hold = fault.hold
        answered = self._carry_out(request, method, path, route, handler, call)
        if fault is not None and fault.applied:
            return self.faults.answer(fault, self.rate)      # done, but the client hears a failure
        return answered

    def _carry_out(self, request: Request, method: str, path: str, route: Any, handler: str,
                   call: Call) -> tuple[int, Any, dict[str, str]]:
        try:
            ctx = self._context(request, method, path, route.params, call)
            self._check_permissions(ctx, route.template)
            reply = getattr(self.api, handler)(ctx)
        except ApiError as error:
            self.rate.spend()
            self._check_response(method, path, error.status, error.body(), request)
            return error.status, error.body(), dict(error.headers)
        body = self.validator.example(method, route.template, reply.status, reply.body)
        headers = dict(reply.headers)
        if reply.pages:
            headers["Link"] = self._link_header(request, reply.pages, reply.per_page)
        if method == "GET":
            etag = '"' + hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest() + '"'
            headers["ETag"] = etag
            if etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
                return 304, None, headers  # conditional requests that hit do not spend rate limit
        self.rate.spend()
        self._check_response(method, path, reply.status, body, request)
        return reply.status, body, headers

    def _context(self, request: Request, method: str, path: str, params: dict[str, str], call: Call) -> Ctx:
        login = installation_id = app_id = permissions = None
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        credential = credential.strip()
        if scheme.lower() == "bearer" and credential.count(".") == 2:
            app_id = self._verify_jwt(credential)
            login = self.state.bot_login
        elif credential:
            token = self.state.tokens.get(credential)
            if token is not None:
                if token.expires_at <= utcnow():
                    raise ApiError(401, "Bad credentials")
                login, installation_id = self.state.bot_login, token.installation_id
                permissions = token.permissions
            elif credential.startswith("ghs_"):   # an installation token this server never issued
                raise ApiError(401, "Bad credentials")
            else:
                login = self.state.user_tokens.get(credential, "octocat")
        call.login = login
        return Ctx(method, path, params, request.args, call.body if isinstance(call.body, (dict, list)) else None,
                   request.headers, login, installation_id, app_id, permissions)

    def _check_permissions(self, ctx: Ctx, template: str) -> None:
        """An installation token may call only what its permissions allow (GitHub's 403 otherwise),
        after :mod:`tests.fakes.github_permissions`; an endpoint missing from that table is a hole in
        the suite and recorded as a violation."""
        if ctx.installation_id is None:
            return
        key = (ctx.method, template)
        if key in perms.APP_ENDPOINTS:
            return                                 # they demand the JWT themselves (401)
        if key not in perms.ENDPOINTS:
            self.violations.append(f"{ctx.method} {ctx.path}: {template} has no entry in "
                                   "tests/fakes/github_permissions.py (which permission does GitHub require?)")
            raise ApiError(403, "Resource not accessible by integration")
        if not perms.allowed(ctx.permissions or {}, *key):
            self.denied.append((ctx.method, template, perms.describe(perms.ENDPOINTS[key])))
            operation = self.validator.operation(ctx.method, template) or {}
            raise ApiError(403, "Resource not accessible by integration",
                           documentation_url=(operation.get("externalDocs") or {}).get("url", DOCS))

    def _verify_jwt(self, token: str) -> int:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "RS256":
                raise ApiError(401, "'Expiration time' claim ('exp') must be RS256-signed")
            if self.app_public_key is not None:
                claims = jwt.decode(token, self.app_public_key, algorithms=["RS256"], leeway=60,
                                    options={"require": ["iat", "exp", "iss"]})
            else:
                claims = jwt.decode(token, options={"verify_signature": False, "require": ["iat", "exp", "iss"]})
        except jwt.PyJWTError as error:
            raise ApiError(401, f"A JSON web token could not be decoded: {error}")
        if int(claims["exp"]) - int(claims["iat"]) > 660:
            raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")
        if str(claims["iss"]) not in (str(self.state.app_id), f"Iv1.{self.state.app_id:016x}"):
            raise ApiError(401, f"'Issuer' claim ('iss') must be the app id, not {claims['iss']!r}")
        return self.state.app_id

    def _link_header(self, request: Request, pages: dict[str, int], per_page: int) -> str:
        return link_header(f"{self.host_url}{request.path}", request, pages, per_page)

    def _check_response(self, method: str, path: str, status: int, body: Any, request: Request) -> None:
        if self.validate_responses:
            self.response_errors.extend(response_problems(self.validator, method, path, status, body, request))




def served_templates() -> frozenset[str]:
    """The path templates FakeGitHub serves: the subset each validator is built over."""
    return frozenset(template for _, template in _ROUTES)


# ==================================================================================================
# Pytest fixtures (register with ``pytest_plugins = ["tests.fakes.github"]`` in tests/conftest.py)


class GitHubValidators:
    """Session cache of validators, one per flavor, with their build times."""

    def __init__(self) -> None:
        self._built: dict[str, OpenApiValidator] = {}

    def get(self, flavor: str) -> OpenApiValidator:
        if flavor not in self._built:
            self._built[flavor] = validator_for(flavor, served_templates())
        return self._built[flavor]

    def __iter__(self) -> Iterator[tuple[str, OpenApiValidator]]:
        return iter(self._built.items())


@pytest.fixture(scope="session")
def github_validators() -> GitHubValidators:
    return GitHubValidators()


@pytest.fixture
def fake_github(request: pytest.FixtureRequest, github_validators: GitHubValidators) -> Iterator[FakeGitHub]:
    """A started :class:`FakeGitHub`; ``github.com`` unless indirect-parametrised with a flavor:

        @pytest.mark.parametrize("fake_github", ["github.com", "ghes-3.19"], indirect=True)

    Teardown fails the test if any request broke the description or any response was off-schema.
    """
    from modelherd.github_auth import TOKENS

    flavor = getattr(request, "param", "github.com")
    with FakeGitHub(flavor, validator=github_validators.get(flavor)) as fake:
        yield fake
        fake.assert_clean()
    # The app keeps installation tokens per (API URL, app id, installation): a later test's fake on the
    # same port would otherwise be sent this one's tokens (it answers 401 and the app mints a new one).
    TOKENS.clear()
