"""A fake GitLab REST API (v4) over real HTTP, holding every request to GitLab's OpenAPI description.

    with FakeGitLab() as fake:
        project = fake.add_project("acme/models", files={"models/a.yaml": "name: a\\n"})
        base = fake.head(project)
        head = fake.add_commit(project, {"models/a.yaml": "name: a\\nversion: 2\\n"}, branch="feature")
        iid = fake.open_merge_request(project, base, head, author="alice", source_branch="feature")
        gl = gitlab.Gitlab(fake.url, private_token=fake.bot_token)
        ...
        fake.assert_clean()                    # no request broke the description

The description is GitLab 19.5's ``doc/api/openapi/openapi_v3.yaml`` (``tests/contracts/gitlab/``),
generated from GitLab's Grape API definitions; only the paths this fake serves are kept. Every
request is validated (path and query parameters, content type, body); a request the description
rejects is recorded in ``fake.violations`` and answered 400 like Grape does, and a call to an
operation the fake does not serve is recorded there too. Responses are checked against the
description (``fake.response_errors``) after the corrections below.

Where the description lacks what the bot needs, this fake follows GitLab's REST documentation
(https://docs.gitlab.com/api/) and says so here and in ``tests/test_forge_gitlab.py``:

* ``POST /projects/:id/repository/commits`` is described as a multipart upload of one ``file``; the
  REST documentation (and GitLab) take JSON: ``branch``, ``commit_message``, ``start_branch`` /
  ``start_sha``, ``force`` and ``actions`` (create/update/delete/move/chmod). :data:`COMMIT_BODY`
  replaces the request schema.
* Lists described as one object (Grape's ``is_array`` is lost): the MR notes and the repository tree
  (:data:`LIST_RESPONSES`), and the ``approved_by`` of MR approvals (:data:`LIST_PROPERTIES`); they
  are checked as arrays of that object.
* ``APIEntitiesMember.access_level`` is described as a string; GitLab sends the integer level.
* No field is ``nullable``, yet GitLab sends ``null`` (``merged_at``, ``merge_commit_sha``…): this
  fake leaves null fields out of its answers, and the adapter treats absent and null alike.
* Its ``security`` is left out (openapi-core cannot apply it); the fake checks ``PRIVATE-TOKEN``.
* ``POST …/statuses/:sha`` is described as answering 200; GitLab answers 201 (documented example).
* The deployments API creates and updates only ``running``/``success``/``failed``/``canceled``
  (description and documentation agree; ``created`` exists only for CI-made deployments).

Access, as GitLab enforces it for the token's user (projects and groups are private, GitLab's
default): a project the user has no role in answers 404 "Project Not Found"; reading code, merge
requests, notes, statuses, environments and deployments needs Reporter; writing commits, branches,
merge requests, commit statuses, environments and deployments needs Developer; pushing to a
protected branch (the default branch) needs Maintainer ("403 Forbidden - You are not allowed to push
into this branch"); a protected environment (:meth:`FakeGitLab.protect_environment`) takes deployments
only from the role or users allowed to deploy; a private group is visible only to its members (its
ancestors' and subgroups' too) and to members of its projects (404 "Group Not Found" otherwise).
Refusals answer GitLab's ``{"message": "403 Forbidden"}``. The bot's role is ``bot_role`` (Developer,
the role the README tells users to give it); ``admin`` is an instance administrator.

GitLab behaviours the fake reproduces because the adapter must live with them: a commit status
cannot move to the state it has (400 "Cannot transition status via :run from :running"); an emoji
awarded twice answers 404 "Award Emoji Name has already been taken"; a second open MR from the same
branch answers 409; a deployment status equal to the current one answers 400; a project can reset
approvals on push (``reset_approvals_on_push``), and otherwise approvals survive pushes.

Pytest: ``fake_gitlab`` (function scope) and ``gitlab_validator`` (session scope) are fixtures
defined here; register them in ``tests/conftest.py`` with ``"tests.fakes.gitlab"`` in
``pytest_plugins``. Teardown fails the test when a request broke the description or an answer was
off-schema; a test that provokes violations on purpose takes them with ``fake.take_violations()``.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import difflib
import functools
import gzip
import itertools
import json
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
import yaml
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from tests.fakes.github import GitStore
from tests.fakes.http import LocalServer, decode_body, link_header, response_problems
from tests.fakes.openapi import OpenApiValidator

API = "/api/v4"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50

#: Responses described as one object that GitLab sends as a list of them.
LIST_RESPONSES = {("get", "/api/v4/projects/{id}/merge_requests/{noteable_id}/notes"),
                  ("get", "/api/v4/projects/{id}/repository/tree")}

#: Properties described as one object that GitLab sends as a list of them.
LIST_PROPERTIES = {("APIEntitiesMergeRequestApprovals", "approved_by")}

#: ``POST /projects/:id/repository/commits`` as the REST documentation describes it.
COMMIT_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["branch", "commit_message", "actions"],
    "properties": {
        "branch": {"type": "string"}, "commit_message": {"type": "string"},
        "start_branch": {"type": "string"}, "start_sha": {"type": "string"},
        "start_project": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
        "author_email": {"type": "string"}, "author_name": {"type": "string"},
        "stats": {"type": "boolean"}, "force": {"type": "boolean"},
        "actions": {"type": "array", "items": {
            "type": "object", "required": ["action", "file_path"],
            "properties": {
                "action": {"type": "string", "enum": ["create", "delete", "move", "update", "chmod"]},
                "file_path": {"type": "string"}, "previous_path": {"type": "string"},
                "content": {"type": "string"}, "encoding": {"type": "string", "enum": ["text", "base64"]},
                "last_commit_id": {"type": "string"}, "execute_filemode": {"type": "boolean"}},
            "additionalProperties": False}},
    },
    "additionalProperties": False,
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """GitLab's timestamps: UTC with milliseconds (``2026-01-01T10:00:00.123Z``)."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class ApiError(Exception):
    """Raised by a handler: answered ``{"message": "<status> <message>"}`` like GitLab."""

    def __init__(self, status: int, message: Any, headers: dict[str, str] | None = None):
        super().__init__(str(message))
        self.status, self.message, self.headers = status, message, headers or {}

    def body(self) -> dict[str, Any]:
        if isinstance(self.message, str):
            return {"message": f"{self.status} {self.message}"}
        return {"message": self.message}


# ==================================================================================================
# State


@dataclass
class User:
    id: int
    username: str
    name: str
    bot: bool = False
    state: str = "active"
    public_email: str | None = None


@dataclass
class Project:
    id: int
    path: str
    default_branch: str
    branches: dict[str, str] = field(default_factory=dict)      # name → commit sha
    members: dict[int, int] = field(default_factory=dict)       # user id → access level
    reset_approvals_on_push: bool = False
    protected_branches: dict[str, int] = field(default_factory=dict)   # name → least level that may push

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class Version:
    """One MR diff version: created on opening and on every push."""

    id: int
    head: str
    base: str           # merge base
    start: str          # target branch tip
    created_at: datetime


@dataclass
class MergeRequest:
    id: int
    iid: int
    project_id: int
    source_project_id: int
    title: str
    description: str
    author: int
    source_branch: str
    target_branch: str
    versions: list[Version]
    state: str = "opened"
    draft: bool = False
    labels: list[str] = field(default_factory=list)
    merge_commit_sha: str | None = None
    squash_commit_sha: str | None = None
    approvals: list[tuple[int, datetime]] = field(default_factory=list)   # (user id, approved_at)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    @property
    def head(self) -> Version:
        return self.versions[-1]


@dataclass
class Note:
    id: int
    project_id: int
    iid: int
    author: int
    body: str
    system: bool = False
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    awards: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CommitStatus:
    id: int
    project_id: int
    sha: str
    ref: str | None
    name: str
    status: str
    description: str | None
    target_url: str | None
    author: int
    created_at: datetime = field(default_factory=utcnow)


@dataclass
class Environment:
    id: int
    project_id: int
    name: str
    tier: str
    external_url: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    state: str = "available"                     # available | stopping | stopped
    deploy_level: int | None = None              # protected: the least level allowed to deploy
    deployers: set[int] = field(default_factory=set)   # protected: users allowed to deploy whatever their level


@dataclass
class Deployment:
    id: int
    iid: int
    project_id: int
    environment_id: int
    sha: str
    ref: str
    tag: bool
    status: str
    user: int
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass
class Call:
    """One request the fake received."""

    method: str
    path: str               # as sent (percent-encoded), from /api/v4 on
    template: str | None
    status: int
    query: dict[str, list[str]]
    body: Any
    username: str | None
    seconds: float = 0.0

    @property
    def is_write(self) -> bool:
        return self.method not in READ_METHODS


class GitLabState:
    """Everything the fake GitLab knows. Mutated only under :attr:`FakeGitLab.lock`."""

    def __init__(self) -> None:
        self.git = GitStore()
        self.users: dict[int, User] = {}
        self.tokens: dict[str, int] = {}
        self.projects: dict[int, Project] = {}
        self.groups: dict[str, dict[int, tuple[int, str]]] = {}     # full path → user id → (level, state)
        self.group_visibility: dict[str, str] = {}                  # full path → private | internal | public
        self.admins: set[int] = set()                               # instance administrators
        self.mrs: dict[tuple[int, int], MergeRequest] = {}
        self.notes: dict[int, Note] = {}
        self.statuses: list[CommitStatus] = []
        self.environments: dict[int, Environment] = {}
        self.deployments: dict[int, Deployment] = {}
        self._ids = itertools.count(101)
        self._iids: dict[tuple[str, int], itertools.count] = {}
        self._last = utcnow()

    def next_id(self) -> int:
        return next(self._ids)

    def next_iid(self, kind: str, project_id: int) -> int:
        return next(self._iids.setdefault((kind, project_id), itertools.count(1)))

    def tick(self) -> datetime:
        """A timestamp later than every earlier one (by at least a millisecond, GitLab's precision)."""
        self._last = max(utcnow(), self._last + timedelta(milliseconds=1))
        return self._last

    def user_by_name(self, username: str) -> User | None:
        return next((u for u in self.users.values() if u.username.lower() == username.lower()), None)

    def project(self, ident: str) -> Project:
        """A project by id or (URL-decoded) full path; 404 otherwise."""
        for project in self.projects.values():
            if ident == str(project.id) or ident.lower() == project.path.lower():
                return project
        raise ApiError(404, "Project Not Found")

    def mr(self, project: Project, iid: int) -> MergeRequest:
        mr = self.mrs.get((project.id, iid))
        if mr is None:
            raise ApiError(404, "Not found")
        return mr

    def resolve(self, project: Project, ref: str) -> str:
        """A commit SHA for a branch name or an (abbreviated) SHA."""
        if ref in project.branches:
            return project.branches[ref]
        if len(ref) >= 7:
            found = [sha for sha in self.git.commits if sha.startswith(ref)]
            if len(found) == 1:
                return found[0]
        raise ApiError(404, "Commit Not Found")

    def access_level(self, project: Project, user_id: int) -> int:
        """The effective level: a project membership, or one inherited from the project's groups."""
        levels = [project.members.get(user_id, 0)]
        namespace = project.path.rsplit("/", 1)[0]
        for group, members in self.groups.items():
            if namespace == group or namespace.startswith(group + "/"):
                level, state = members.get(user_id, (0, "active"))
                levels.append(level if state == "active" else 0)
        return max(levels)

    def can_read_group(self, group: str, user_id: int) -> bool:
        """Whether ``user_id`` sees ``group``: an administrator, a public or internal group, a member
        of it, of an ancestor or of a subgroup, or a member of a project below it."""
        if user_id in self.admins or self.group_visibility.get(group, "private") != "private":
            return True
        for path, members in self.groups.items():
            related = path == group or group.startswith(path + "/") or path.startswith(group + "/")
            if related and members.get(user_id, (0, ""))[0] > 0:
                return True
        return any(self.access_level(project, user_id) >= GUEST for project in self.projects.values()
                   if project.path.startswith(group + "/"))

    def group_member(self, group: str, user_id: int) -> tuple[int, str] | None:
        """The membership of ``user_id`` in ``group`` or inherited from an ancestor (the highest)."""
        found = [members[user_id] for path, members in self.groups.items()
                 if (group == path or group.startswith(path + "/")) and user_id in members]
        return max(found) if found else None


# ==================================================================================================
# Faults


@dataclass
class Fault:
    status: int
    retry_after: int | None
    match: Callable[[str, str], bool] | None
    applied: bool = False         # carry the request out, then answer ``status`` (the answer was lost)


class Faults:
    """Failures to inject into the next calls (``FakeGitLab.fail_next``)."""

    def __init__(self) -> None:
        self._queue: list[Fault] = []

    def add(self, count: int, fault: Fault) -> None:
        self._queue.extend(dataclasses.replace(fault) for _ in range(count))

    def take(self, method: str, path: str) -> Fault | None:
        for index, fault in enumerate(self._queue):
            if fault.match is None or fault.match(method, path):
                return self._queue.pop(index)
        return None

    @staticmethod
    def answer(fault: Fault) -> tuple[int, Any, dict[str, str]]:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        if fault.status == 429:
            headers.setdefault("Retry-After", "1")
            headers["RateLimit-Limit"], headers["RateLimit-Remaining"] = "2000", "0"
            headers["RateLimit-Reset"] = str(int(time.time()) + int(headers["Retry-After"]))
            return 429, {"message": "Retry later"}, headers
        messages = {500: "500 Internal Server Error", 502: "502 Bad Gateway", 503: "503 Service Unavailable"}
        return fault.status, {"message": messages.get(fault.status, f"{fault.status} Injected failure")}, headers


# ==================================================================================================
# Endpoints

_ROUTES: dict[tuple[str, str], str] = {}


def endpoint(method: str, template: str) -> Callable[[Callable], Callable]:
    """Register a :class:`GitLabApi` method as the handler of ``method API+template``."""

    def register(handler: Callable) -> Callable:
        _ROUTES[(method.upper(), API + template)] = handler.__name__
        return handler

    return register


@dataclass
class Ctx:
    """What a handler sees of a request: path parameters already URL-decoded."""

    method: str
    params: dict[str, str]
    query: MultiDict
    json: Any
    user: User | None

    def int(self, name: str) -> int:
        return int(self.params[name])

    def q(self, name: str, default: str | None = None) -> str | None:
        return self.query.get(name, default)

    def body(self, name: str, default: Any = None) -> Any:
        return (self.json or {}).get(name, default)

    def actor(self) -> User:
        if self.user is None:
            raise ApiError(401, "Unauthorized")
        return self.user


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    pages: dict[str, int] | None = None
    per_page: int = 20
    raw: bytes | None = None      # a non-JSON body (raw files)


class GitLabApi:
    """One method per endpoint; each returns a :class:`Reply` whose body the server completes."""

    def __init__(self, state: GitLabState, web: str) -> None:
        self.s, self.web = state, web

    # -- representations --------------------------------------------------------------------------

    def user(self, user_id: int | None) -> dict[str, Any] | None:
        user = self.s.users.get(user_id) if user_id is not None else None
        if user is None:
            return None
        return {"id": user.id, "username": user.username, "name": user.name, "state": user.state,
                "locked": False, "avatar_url": f"{self.web}/avatar/{user.id}", "web_url": f"{self.web}/{user.username}",
                "public_email": user.public_email or ""}

    def commit(self, project: Project, sha: str) -> dict[str, Any]:
        commit = self.s.git.commits[sha]
        title = commit.message.splitlines()[0] if commit.message else ""
        return {"id": sha, "short_id": sha[:8], "title": title, "message": commit.message,
                "parent_ids": list(commit.parents), "author_name": commit.author,
                "author_email": self._email(commit.author), "authored_date": iso(commit.date),
                "committer_name": commit.committer, "committer_email": self._email(commit.committer),
                "committed_date": iso(commit.date), "created_at": iso(commit.date),
                "web_url": f"{self.web}/{project.path}/-/commit/{sha}", "trailers": {}, "extended_trailers": {}}

    def _email(self, name: str) -> str:
        user = self.s.user_by_name(name)
        return (user.public_email if user and user.public_email else f"{name}@users.noreply.example.invalid")

    def mr(self, project: Project, mr: MergeRequest, basic: bool = False) -> dict[str, Any]:
        merged = mr.state == "merged"
        body = {"id": mr.id, "iid": mr.iid, "project_id": mr.project_id, "title": mr.title,
                "description": mr.description, "state": mr.state, "created_at": iso(mr.created_at),
                "updated_at": iso(mr.updated_at), "merged_at": iso(mr.updated_at) if merged else None,
                "closed_at": iso(mr.updated_at) if mr.state == "closed" else None,
                "target_branch": mr.target_branch, "source_branch": mr.source_branch,
                "author": {**self.user(mr.author), "bot": self.s.users[mr.author].bot},
                "source_project_id": mr.source_project_id, "target_project_id": mr.project_id,
                "labels": list(mr.labels), "draft": mr.draft, "work_in_progress": mr.draft,
                "merge_status": "can_be_merged", "detailed_merge_status": "mergeable", "sha": mr.head.head,
                "merge_commit_sha": mr.merge_commit_sha, "squash_commit_sha": mr.squash_commit_sha,
                "reference": f"!{mr.iid}", "web_url": f"{self.web}/{project.path}/-/merge_requests/{mr.iid}",
                "squash": mr.squash_commit_sha is not None, "has_conflicts": False, "user_notes_count": 0}
        if not basic:
            body["diff_refs"] = {"base_sha": mr.head.base, "head_sha": mr.head.head, "start_sha": mr.head.start}
            body["changes_count"] = str(len(self._diff(mr.head.base, mr.head.head)))
        return body

    def note(self, note: Note) -> dict[str, Any]:
        return {"id": note.id, "type": None, "body": note.body, "author": self.user(note.author),
                "created_at": iso(note.created_at), "updated_at": iso(note.updated_at), "system": note.system,
                "noteable_id": self.s.mrs[(note.project_id, note.iid)].id, "noteable_type": "MergeRequest",
                "noteable_iid": note.iid, "project_id": note.project_id, "resolvable": False,
                "confidential": False, "internal": False, "imported": False, "imported_from": "none"}

    def status(self, project: Project, status: CommitStatus) -> dict[str, Any]:
        return {"id": status.id, "sha": status.sha, "ref": status.ref, "status": status.status, "name": status.name,
                "target_url": status.target_url, "description": status.description,
                "created_at": iso(status.created_at), "allow_failure": False, "author": self.user(status.author)}

    def environment(self, env: Environment, basic: bool = False) -> dict[str, Any]:
        body = {"id": env.id, "name": env.name, "slug": env.name.lower().replace("/", "-"),
                "external_url": env.external_url, "created_at": iso(env.created_at),
                "updated_at": iso(env.created_at)}
        if not basic:
            body.update(tier=env.tier, state=env.state)
        return body

    def deployment(self, deployment: Deployment) -> dict[str, Any]:
        return {"id": deployment.id, "iid": deployment.iid, "ref": deployment.ref, "sha": deployment.sha,
                "created_at": iso(deployment.created_at), "updated_at": iso(deployment.updated_at),
                "status": deployment.status, "user": self.user(deployment.user),
                "environment": self.environment(self.s.environments[deployment.environment_id], basic=True),
                "deployable": None}

    def member(self, user_id: int, level: int, state: str = "active") -> dict[str, Any]:
        return {**self.user(user_id), "access_level": level, "membership_state": state,
                "created_at": iso(utcnow())}

    # -- users ------------------------------------------------------------------------------------

    @endpoint("GET", "/user")
    def get_current_user(self, ctx: Ctx) -> Reply:
        user = ctx.actor()
        return Reply(200, {**self.user(user.id), "bot": user.bot})

    @endpoint("GET", "/users")
    def list_users(self, ctx: Ctx) -> Reply:
        """Users by ``username`` (exact) or ``public_email`` (exact), as GitLab filters them."""
        ctx.actor()
        found = list(self.s.users.values())
        if ctx.q("username"):
            found = [u for u in found if u.username.lower() == ctx.q("username").lower()]
        if ctx.q("public_email"):
            found = [u for u in found if (u.public_email or "").lower() == ctx.q("public_email").lower()]
        return self._paginate(ctx, [self.user(u.id) for u in found])

    # -- projects and repository ------------------------------------------------------------------

    @endpoint("GET", "/projects/{id}")
    def get_project(self, ctx: Ctx) -> Reply:
        project = self._project(ctx, GUEST)
        name = project.path.rpartition("/")[2]
        return Reply(200, {"id": project.id, "name": name, "path": name, "path_with_namespace": project.path,
                           "name_with_namespace": project.path.replace("/", " / "),
                           "default_branch": project.default_branch,
                           "web_url": f"{self.web}/{project.path}",
                           "http_url_to_repo": f"{self.web}/{project.path}.git"})

    @endpoint("GET", "/projects/{id}/repository/files/{file_path}/raw")
    def get_raw_file(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        sha = self._ref(project, ctx.q("ref") or project.default_branch)
        data = self.s.git.read(sha, ctx.params["file_path"])
        if data is None:
            raise ApiError(404, "File Not Found")
        return Reply(200, raw=data, headers={"Content-Type": "text/plain; charset=utf-8",
                                             "X-Gitlab-File-Path": ctx.params["file_path"]})

    @endpoint("GET", "/projects/{id}/repository/files/{file_path}")
    def get_file(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        sha = self._ref(project, ctx.q("ref"))
        path = ctx.params["file_path"]
        blob = self.s.git.files_at(sha).get(path)
        if blob is None:
            raise ApiError(404, "File Not Found")
        data = self.s.git.blobs[blob]
        return Reply(200, {"file_name": path.rsplit("/", 1)[-1], "file_path": path, "size": len(data),
                           "encoding": "base64", "content": base64.b64encode(data).decode(), "ref": ctx.q("ref"),
                           "blob_id": blob, "commit_id": sha, "last_commit_id": sha})

    @endpoint("GET", "/projects/{id}/repository/tree")
    def get_tree(self, ctx: Ctx) -> Reply:
        """Entries below ``path`` at ``ref`` (all levels with ``recursive``); 404 for a missing folder."""
        project = self._project(ctx)
        sha = self._ref(project, ctx.q("ref") or project.default_branch)
        files = self.s.git.files_at(sha)
        folder = (ctx.q("path") or "").strip("/")
        prefix = folder + "/" if folder else ""
        recursive = (ctx.q("recursive") or "").lower() in ("true", "1")
        entries: dict[str, dict[str, Any]] = {}
        for path in sorted(p for p in files if p.startswith(prefix)):
            parts = path[len(prefix):].split("/")
            for depth in range(1, len(parts)):
                directory = prefix + "/".join(parts[:depth])
                if (recursive or depth == 1) and directory not in entries:
                    tree = self.s.git.subtree_sha(self.s.git.commits[sha].tree, directory)
                    entries[directory] = {"id": tree, "name": parts[depth - 1], "type": "tree",
                                          "path": directory, "mode": "040000"}
            if recursive or len(parts) == 1:
                entries[path] = {"id": files[path], "name": parts[-1], "type": "blob", "path": path, "mode": "100644"}
        if folder and not entries:
            raise ApiError(404, "Tree Not Found")
        return self._paginate(ctx, sorted(entries.values(), key=lambda e: e["path"]))

    @endpoint("GET", "/projects/{id}/repository/commits/{sha}")
    def get_commit(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        return Reply(200, self.commit(project, self._ref(project, ctx.params["sha"])))

    @endpoint("POST", "/projects/{id}/repository/commits")
    def create_commit(self, ctx: Ctx) -> Reply:
        """One commit of ``actions`` on ``branch``; the branch is created (or with ``force``
        rebuilt) from ``start_branch``/``start_sha`` when given."""
        project = self._project(ctx)
        user = self._require(project, ctx, DEVELOPER)
        branch = ctx.body("branch")
        self._require_push(project, ctx, branch)
        start = ctx.body("start_sha") or (ctx.body("start_branch") and self._branch(project, ctx.body("start_branch")))
        exists = branch in project.branches
        if start and exists and not ctx.body("force"):
            raise ApiError(400, f"A branch called '{branch}' already exists. Switch to that branch in order to "
                                "make changes")
        if not start and not exists:
            raise ApiError(400, "You can only create or edit files when you are on a branch")
        parent = start or project.branches[branch]
        if parent not in self.s.git.commits:
            raise ApiError(400, f"Invalid start_sha {parent}")
        files = dict(self.s.git.files_at(parent))
        changes: dict[str, str | bytes | None] = {}
        for action in ctx.body("actions"):
            self._apply_action(files, changes, action)
        tree = self.s.git.derive_tree(files, changes)
        sha = self.s.git.put_commit(tree, [parent], ctx.body("commit_message"), user.username)
        self._move_branch(project, branch, sha)
        return Reply(201, self.commit(project, sha))

    def _apply_action(self, files: dict[str, str], changes: dict[str, Any], action: dict[str, Any]) -> None:
        path, kind = action["file_path"], action["action"]
        present = (path in files and changes.get(path, "") is not None) or changes.get(path) is not None
        if kind == "create" and present:
            raise ApiError(400, "A file with this name already exists")
        if kind in ("update", "delete") and not present:
            raise ApiError(400, "A file with this name doesn't exist")
        if kind == "delete":
            changes[path] = None
        elif kind in ("create", "update"):
            content = action.get("content") or ""
            changes[path] = base64.b64decode(content) if action.get("encoding") == "base64" else content
        else:
            raise ApiError(400, f"the fake does not implement action {kind}")

    @endpoint("GET", "/projects/{id}/repository/branches/{branch}")
    def get_branch(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        name = ctx.params["branch"]
        if name not in project.branches:
            raise ApiError(404, "Branch Not Found")
        return Reply(200, self._branch_json(project, name))

    @endpoint("POST", "/projects/{id}/repository/branches")
    def create_branch(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        self._require(project, ctx, DEVELOPER)
        name = ctx.body("branch")
        if name in project.branches:
            raise ApiError(400, "Branch already exists")
        project.branches[name] = self._ref(project, ctx.body("ref"))
        return Reply(201, self._branch_json(project, name))

    def _branch_json(self, project: Project, name: str) -> dict[str, Any]:
        return {"name": name, "commit": self.commit(project, project.branches[name]), "merged": False,
                "protected": name == project.default_branch, "default": name == project.default_branch,
                "developers_can_push": False, "developers_can_merge": False, "can_push": True,
                "web_url": f"{self.web}/{project.path}/-/tree/{name}"}

    # -- merge requests ---------------------------------------------------------------------------

    @endpoint("GET", "/projects/{id}/merge_requests")
    def list_mrs(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        found = [mr for (pid, _), mr in self.s.mrs.items() if pid == project.id]
        state = ctx.q("state") or "all"
        if state != "all":
            found = [mr for mr in found if mr.state == state]
        for name in ("source_branch", "target_branch"):
            if ctx.q(name):
                found = [mr for mr in found if getattr(mr, name) == ctx.q(name)]
        found.sort(key=lambda mr: mr.iid, reverse=True)
        return self._paginate(ctx, [self.mr(project, mr, basic=True) for mr in found])

    @endpoint("POST", "/projects/{id}/merge_requests")
    def create_mr(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        user = self._require(project, ctx, DEVELOPER)
        source, target = ctx.body("source_branch"), ctx.body("target_branch")
        for name in (source, target):
            if name not in project.branches:
                raise ApiError(400, {"base": [f"Branch {name} does not exist"]})
        taken = next((mr for mr in self.s.mrs.values() if mr.project_id == project.id and mr.state == "opened"
                      and mr.source_branch == source and mr.target_branch == target), None)
        if taken is not None:
            raise ApiError(409, [f"Another open merge request already exists for this source branch: !{taken.iid}"])
        mr = self._new_mr(project, user.id, source, target, ctx.body("title"), ctx.body("description") or "")
        return Reply(201, self.mr(project, mr))

    def _new_mr(self, project: Project, author: int, source: str, target: str, title: str, description: str,
                *, source_project_id: int | None = None, draft: bool = False,
                labels: Iterable[str] = ()) -> MergeRequest:
        head, start = project.branches[source], project.branches[target]
        version = Version(self.s.next_id(), head, self._merge_base(start, head), start, self.s.tick())
        mr = MergeRequest(self.s.next_id(), self.s.next_iid("mr", project.id), project.id,
                          source_project_id or project.id, title, description, author, source, target, [version],
                          draft=draft, labels=list(labels))
        self.s.mrs[(project.id, mr.iid)] = mr
        return mr

    def _merge_base(self, a: str, b: str) -> str:
        ancestors = set(self._ancestors(a))
        return next((sha for sha in self._ancestors(b) if sha in ancestors), a)

    def _ancestors(self, sha: str) -> Iterator[str]:
        """``sha`` and its ancestors, breadth first (nearest first)."""
        seen, queue = set(), [sha]
        while queue:
            current = queue.pop(0)
            if current in seen or current not in self.s.git.commits:
                continue
            seen.add(current)
            yield current
            queue.extend(self.s.git.commits[current].parents)

    @endpoint("GET", "/projects/{id}/merge_requests/{merge_request_iid}")
    def get_mr(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        return Reply(200, self.mr(project, self.s.mr(project, ctx.int("merge_request_iid"))))

    @endpoint("GET", "/projects/{id}/merge_requests/{merge_request_iid}/changes")
    def get_mr_changes(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        mr = self.s.mr(project, ctx.int("merge_request_iid"))
        return Reply(200, {**self.mr(project, mr), "changes": self._diffs(mr.head.base, mr.head.head),
                           "overflow": False})

    @endpoint("GET", "/projects/{id}/merge_requests/{merge_request_iid}/diffs")
    def list_mr_diffs(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        mr = self.s.mr(project, ctx.int("merge_request_iid"))
        return self._paginate(ctx, self._diffs(mr.head.base, mr.head.head))

    @endpoint("GET", "/projects/{id}/merge_requests/{merge_request_iid}/commits")
    def list_mr_commits(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        mr = self.s.mr(project, ctx.int("merge_request_iid"))
        shas = self.s.git.ancestry(mr.head.head, mr.head.base)
        return self._paginate(ctx, [self.commit(project, sha) for sha in reversed(shas)])

    @endpoint("GET", "/projects/{id}/merge_requests/{merge_request_iid}/versions")
    def list_mr_versions(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        mr = self.s.mr(project, ctx.int("merge_request_iid"))
        return self._paginate(ctx, [{"id": v.id, "head_commit_sha": v.head, "base_commit_sha": v.base,
                                     "start_commit_sha": v.start, "created_at": iso(v.created_at),
                                     "merge_request_id": mr.id, "state": "collected", "real_size": "1"}
                                    for v in reversed(mr.versions)])

    def _diff(self, base: str, head: str) -> list[tuple[str, str | None, str | None]]:
        old, new = self.s.git.files_at(base), self.s.git.files_at(head)
        return [(p, old.get(p), new.get(p)) for p in sorted(set(old) | set(new)) if old.get(p) != new.get(p)]

    def _diffs(self, base: str, head: str) -> list[dict[str, Any]]:
        """GitLab's diff entries; a path deleted and another added with the same blob is a rename."""
        changes = self._diff(base, head)
        added = {new: path for path, old, new in changes if old is None}
        entries, renamed = [], set()
        for path, old, new in changes:
            if new is None and old in added:
                renamed.add(added[old])
                entries.append(self._diff_entry(path, added[old], old, old, renamed=True))
        for path, old, new in changes:
            if path in renamed or (new is None and old in added):
                continue
            entries.append(self._diff_entry(path, path, old, new))
        return entries

    def _diff_entry(self, old_path: str, new_path: str, old: str | None, new: str | None,
                    renamed: bool = False) -> dict[str, Any]:
        before = self.s.git.blobs[old].decode(errors="replace").splitlines() if old else []
        after = self.s.git.blobs[new].decode(errors="replace").splitlines() if new else []
        diff = "\n".join(list(difflib.unified_diff(before, after, lineterm="", n=3))[2:])
        return {"old_path": old_path, "new_path": new_path, "a_mode": "100644" if old else "0",
                "b_mode": "100644" if new else "0", "new_file": old is None, "renamed_file": renamed,
                "deleted_file": new is None, "generated_file": False, "diff": diff + "\n" if diff else "",
                "collapsed": False, "too_large": False}

    # -- approvals --------------------------------------------------------------------------------

    @endpoint("GET", "/projects/{id}/merge_requests/{merge_request_iid}/approvals")
    def get_approvals(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        mr = self.s.mr(project, ctx.int("merge_request_iid"))
        user = ctx.actor()
        return Reply(200, {"approved": bool(mr.approvals), "user_has_approved": any(u == user.id for u, _ in mr.approvals),
                           "user_can_approve": True,
                           "approved_by": [{"user": self.user(u), "approved_at": iso(at)} for u, at in mr.approvals]})

    @endpoint("POST", "/projects/{id}/merge_requests/{merge_request_iid}/approve")
    def approve(self, ctx: Ctx) -> Reply:
        """Approve as the token's user; ``sha`` must be the MR's head (409 otherwise)."""
        project = self._project(ctx)
        mr = self.s.mr(project, ctx.int("merge_request_iid"))
        user = ctx.actor()
        if ctx.body("sha") and ctx.body("sha") != mr.head.head:
            raise ApiError(409, "SHA does not match HEAD of source branch: " + mr.head.head)
        if any(u == user.id for u, _ in mr.approvals):
            raise ApiError(401, "Unauthorized")
        mr.approvals.append((user.id, self.s.tick()))
        return Reply(201, self.get_approvals(ctx).body)

    # -- notes and award emoji --------------------------------------------------------------------

    @endpoint("GET", "/projects/{id}/merge_requests/{noteable_id}/notes")
    def list_notes(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        mr = self.s.mr(project, ctx.int("noteable_id"))
        notes = [n for n in self.s.notes.values() if n.project_id == project.id and n.iid == mr.iid]
        key = (lambda n: n.updated_at) if ctx.q("order_by") == "updated_at" else (lambda n: n.created_at)
        notes.sort(key=lambda n: (key(n), n.id), reverse=(ctx.q("sort") or "desc") == "desc")
        return self._paginate(ctx, [self.note(n) for n in notes])

    @endpoint("POST", "/projects/{id}/merge_requests/{noteable_id}/notes")
    def create_note(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        mr = self.s.mr(project, ctx.int("noteable_id"))
        body = ctx.body("body")
        if not body:
            raise ApiError(400, {"note": ["can't be blank"]})
        if len(body) > 1_000_000:
            raise ApiError(400, {"note": ["is too long (maximum is 1000000 characters)"]})
        now = self.s.tick()
        note = Note(self.s.next_id(), project.id, mr.iid, ctx.actor().id, body, created_at=now, updated_at=now)
        self.s.notes[note.id] = note
        return Reply(201, self.note(note))

    @endpoint("GET", "/projects/{id}/merge_requests/{noteable_id}/notes/{note_id}")
    def get_note(self, ctx: Ctx) -> Reply:
        return Reply(200, self.note(self._note(ctx, "noteable_id")))

    @endpoint("PUT", "/projects/{id}/merge_requests/{noteable_id}/notes/{note_id}")
    def update_note(self, ctx: Ctx) -> Reply:
        note = self._note(ctx, "noteable_id")
        if note.author != ctx.actor().id:
            raise ApiError(403, "Forbidden")
        note.body, note.updated_at = ctx.body("body"), self.s.tick()
        return Reply(200, self.note(note))

    @endpoint("POST", "/projects/{id}/merge_requests/{merge_request_iid}/notes/{note_id}/award_emoji")
    def award_note_emoji(self, ctx: Ctx) -> Reply:
        note = self._note(ctx, "merge_request_iid")
        user = ctx.actor()
        name = ctx.body("name")
        if any(a["user_id"] == user.id and a["name"] == name for a in note.awards):
            raise ApiError(404, "Award Emoji Name has already been taken")
        award = {"id": self.s.next_id(), "name": name, "user_id": user.id, "created_at": self.s.tick()}
        note.awards.append(award)
        return Reply(201, self._award(note, award))

    @endpoint("GET", "/projects/{id}/merge_requests/{merge_request_iid}/notes/{note_id}/award_emoji")
    def list_note_emoji(self, ctx: Ctx) -> Reply:
        note = self._note(ctx, "merge_request_iid")
        return self._paginate(ctx, [self._award(note, a) for a in note.awards])

    def _award(self, note: Note, award: dict[str, Any]) -> dict[str, Any]:
        return {"id": award["id"], "name": award["name"], "user": self.user(award["user_id"]),
                "created_at": iso(award["created_at"]), "updated_at": iso(award["created_at"]),
                "awardable_id": note.id, "awardable_type": "Note"}

    def _note(self, ctx: Ctx, iid_param: str) -> Note:
        project = self._project(ctx)
        mr = self.s.mr(project, ctx.int(iid_param))
        note = self.s.notes.get(ctx.int("note_id"))
        if note is None or note.project_id != project.id or note.iid != mr.iid:
            raise ApiError(404, "Note Not Found")
        return note

    # -- commit statuses --------------------------------------------------------------------------

    @endpoint("POST", "/projects/{id}/statuses/{sha}")
    def create_status(self, ctx: Ctx) -> Reply:
        """GitLab's state machine: a live (pending/running) status of that name is moved, and cannot
        move to the state it has; otherwise a new status is created."""
        project = self._project(ctx)
        user = self._require(project, ctx, DEVELOPER)
        sha = ctx.params["sha"]
        if sha not in self.s.git.commits:
            raise ApiError(404, "Commit Not Found")
        name = ctx.body("name") or ctx.body("context") or "default"
        ref = ctx.body("ref") or self._branch_containing(project, sha)
        if ref is None:
            raise ApiError(404, "References for commit Not Found")
        state = ctx.body("state")
        live = next((s for s in reversed(self.s.statuses) if s.project_id == project.id and s.sha == sha
                     and s.name == name and s.ref == ref and s.status in ("pending", "running")), None)
        event = {"pending": "enqueue", "running": "run", "success": "succeed", "failed": "drop",
                 "canceled": "cancel", "skipped": "skip"}[state]
        if live is not None and (state == "pending" or live.status == state):
            raise ApiError(400, f"Cannot transition status via :{event} from :{live.status} "
                                f"(Reason(s): Status cannot transition via \"{event}\")")
        status = live or CommitStatus(self.s.next_id(), project.id, sha, ref, name, state, None, None, user.id,
                                      created_at=self.s.tick())
        status.status = state
        status.description = ctx.body("description", status.description)
        status.target_url = ctx.body("target_url", status.target_url)
        if live is None:
            self.s.statuses.append(status)
        return Reply(201, self.status(project, status))

    @endpoint("GET", "/projects/{id}/repository/commits/{sha}/statuses")
    def list_statuses(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        sha = self._ref(project, ctx.params["sha"])
        found = [s for s in self.s.statuses if s.project_id == project.id and s.sha == sha]
        if ctx.q("name"):
            found = [s for s in found if s.name == ctx.q("name")]
        return self._paginate(ctx, [self.status(project, s) for s in found])

    def _branch_containing(self, project: Project, sha: str) -> str | None:
        return next((name for name, head in sorted(project.branches.items())
                     if sha in set(self._ancestors(head))), None)

    # -- members ----------------------------------------------------------------------------------

    @endpoint("GET", "/projects/{id}/members/all/{user_id}")
    def get_project_member(self, ctx: Ctx) -> Reply:
        project = self._project(ctx, GUEST)
        user_id = ctx.int("user_id")
        level = self.s.access_level(project, user_id)
        if not level or user_id not in self.s.users:
            raise ApiError(404, "Not found")
        return Reply(200, self.member(user_id, level))

    @endpoint("GET", "/groups/{id}/members/all/{user_id}")
    def get_group_member_all(self, ctx: Ctx) -> Reply:
        found = self.s.group_member(self._group(ctx), ctx.int("user_id"))
        if found is None:
            raise ApiError(404, "Not found")
        return Reply(200, self.member(ctx.int("user_id"), *found))

    @endpoint("GET", "/groups/{id}/members/{user_id}")
    def get_group_member(self, ctx: Ctx) -> Reply:
        found = self.s.groups[self._group(ctx)].get(ctx.int("user_id"))
        if found is None:
            raise ApiError(404, "Not found")
        return Reply(200, self.member(ctx.int("user_id"), *found))

    def _group(self, ctx: Ctx) -> str:
        user = ctx.actor()
        path = ctx.params["id"]
        if path not in self.s.groups or not self.s.can_read_group(path, user.id):
            raise ApiError(404, "Group Not Found")
        return path

    # -- environments and deployments -------------------------------------------------------------

    @endpoint("GET", "/projects/{id}/environments")
    def list_environments(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        found = [e for e in self.s.environments.values() if e.project_id == project.id]
        if ctx.q("name"):
            found = [e for e in found if e.name == ctx.q("name")]
        return self._paginate(ctx, [self.environment(e) for e in found])

    @endpoint("POST", "/projects/{id}/environments")
    def create_environment(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        self._require(project, ctx, DEVELOPER)
        if any(e.project_id == project.id and e.name == ctx.body("name") for e in self.s.environments.values()):
            raise ApiError(400, {"name": ["has already been taken"]})
        env = Environment(self.s.next_id(), project.id, ctx.body("name"), ctx.body("tier") or _tier(ctx.body("name")),
                          ctx.body("external_url"))
        self.s.environments[env.id] = env
        return Reply(201, self.environment(env))

    @endpoint("GET", "/projects/{id}/environments/{environment_id}")
    def get_environment(self, ctx: Ctx) -> Reply:
        return Reply(200, self.environment(self._environment(ctx)))

    @endpoint("PUT", "/projects/{id}/environments/{environment_id}")
    def update_environment(self, ctx: Ctx) -> Reply:
        env = self._environment(ctx)
        self._require(self._project(ctx), ctx, DEVELOPER)
        for name in ("external_url", "tier"):
            if ctx.body(name) is not None:
                setattr(env, name, ctx.body(name))
        return Reply(200, self.environment(env))

    @endpoint("POST", "/projects/{id}/environments/{environment_id}/stop")
    def stop_environment(self, ctx: Ctx) -> Reply:
        env = self._environment(ctx)
        self._require(self._project(ctx), ctx, DEVELOPER)
        env.state = "stopped"                    # no on_stop job here: GitLab stops it at once
        return Reply(201, self.environment(env))

    def _environment(self, ctx: Ctx) -> Environment:
        project = self._project(ctx)
        env = self.s.environments.get(ctx.int("environment_id"))
        if env is None or env.project_id != project.id:
            raise ApiError(404, "Environment Not Found")
        return env

    @endpoint("GET", "/projects/{id}/deployments")
    def list_deployments(self, ctx: Ctx) -> Reply:
        project = self._project(ctx)
        found = [d for d in self.s.deployments.values() if d.project_id == project.id]
        if ctx.q("environment"):
            found = [d for d in found if self.s.environments[d.environment_id].name == ctx.q("environment")]
        if ctx.q("status"):
            found = [d for d in found if d.status == ctx.q("status")]
        found.sort(key=lambda d: d.id, reverse=(ctx.q("sort") or "asc") == "desc")
        return self._paginate(ctx, [self.deployment(d) for d in found])

    @endpoint("POST", "/projects/{id}/deployments")
    def create_deployment(self, ctx: Ctx) -> Reply:
        """A deployment; the environment is found or created by name (tier guessed from it)."""
        project = self._project(ctx)
        user = self._require(project, ctx, DEVELOPER)
        sha = ctx.body("sha")
        if sha not in self.s.git.commits:
            raise ApiError(400, {"sha": ["is not a commit of the project"]})
        name = ctx.body("environment")
        env = next((e for e in self.s.environments.values() if e.project_id == project.id and e.name == name), None)
        if env is None:
            env = Environment(self.s.next_id(), project.id, name, _tier(name))
            self.s.environments[env.id] = env
        self._require_deploy(env, ctx)
        env.state = "available"                  # a deployment to a stopped environment starts it again
        now = self.s.tick()
        deployment = Deployment(self.s.next_id(), self.s.next_iid("deployment", project.id), project.id, env.id, sha,
                                ctx.body("ref"), bool(ctx.body("tag")), ctx.body("status"), user.id, now, now)
        self.s.deployments[deployment.id] = deployment
        return Reply(201, self.deployment(deployment))

    @endpoint("GET", "/projects/{id}/deployments/{deployment_id}")
    def get_deployment(self, ctx: Ctx) -> Reply:
        return Reply(200, self.deployment(self._deployment(ctx)))

    @endpoint("PUT", "/projects/{id}/deployments/{deployment_id}")
    def update_deployment(self, ctx: Ctx) -> Reply:
        deployment = self._deployment(ctx)
        self._require(self._project(ctx), ctx, DEVELOPER)
        self._require_deploy(self.s.environments[deployment.environment_id], ctx)
        if ctx.body("status") == deployment.status:
            raise ApiError(400, f"Cannot transition status via :{ctx.body('status')} from :{deployment.status}")
        deployment.status, deployment.updated_at = ctx.body("status"), self.s.tick()
        return Reply(200, self.deployment(deployment))

    def _deployment(self, ctx: Ctx) -> Deployment:
        project = self._project(ctx)
        deployment = self.s.deployments.get(ctx.int("deployment_id"))
        if deployment is None or deployment.project_id != project.id:
            raise ApiError(404, "Not found")
        return deployment

    # -- shared helpers ---------------------------------------------------------------------------

    def _project(self, ctx: Ctx, level: int = REPORTER) -> Project:
        """The project of the path, when the token's user may see it (a private project: members only,
        404 for anyone else, as GitLab hides it) and holds ``level`` (403 otherwise)."""
        user = ctx.actor()
        project = self.s.project(ctx.params["id"])
        if user.id not in self.s.admins:
            held = self.s.access_level(project, user.id)
            if held < GUEST:
                raise ApiError(404, "Project Not Found")
            if held < level:
                raise ApiError(403, "Forbidden")
        return project

    def _require(self, project: Project, ctx: Ctx, level: int) -> User:
        user = ctx.actor()
        if user.id not in self.s.admins and self.s.access_level(project, user.id) < level:
            raise ApiError(403, "Forbidden")
        return user

    def _require_push(self, project: Project, ctx: Ctx, branch: str) -> None:
        """A protected branch takes pushes only from its allowed level (the default branch: Maintainer)."""
        user = ctx.actor()
        allowed = project.protected_branches.get(branch)
        if allowed is not None and user.id not in self.s.admins and self.s.access_level(project, user.id) < allowed:
            raise ApiError(403, "Forbidden - You are not allowed to push into this branch")

    def _require_deploy(self, env: Environment, ctx: Ctx) -> None:
        """A protected environment takes deployments only from the level or users allowed to deploy."""
        user = ctx.actor()
        if env.deploy_level is None or user.id in self.s.admins or user.id in env.deployers:
            return
        if self.s.access_level(self.s.projects[env.project_id], user.id) < env.deploy_level:
            raise ApiError(403, "Forbidden")

    def _ref(self, project: Project, ref: str | None) -> str:
        if not ref:
            raise ApiError(400, "ref is missing")
        return self.s.resolve(project, ref)

    def _branch(self, project: Project, name: str) -> str:
        if name not in project.branches:
            raise ApiError(400, f"You can only create or edit files when you are on a branch ({name} not found)")
        return project.branches[name]

    def _move_branch(self, project: Project, branch: str, sha: str) -> None:
        """Point ``branch`` at ``sha``; an open MR from it gets a new version (approvals reset when
        the project says so)."""
        project.branches[branch] = sha
        for mr in self.s.mrs.values():
            if mr.project_id == project.id and mr.state == "opened" and mr.source_branch == branch:
                start = project.branches[mr.target_branch]
                mr.versions.append(Version(self.s.next_id(), sha, self._merge_base(start, sha), start, self.s.tick()))
                mr.updated_at = self.s.tick()
                if project.reset_approvals_on_push:
                    mr.approvals.clear()

    @staticmethod
    def _paginate(ctx: Ctx, items: list[Any]) -> Reply:
        per_page = max(1, min(100, int(ctx.q("per_page") or 20)))
        page = max(1, int(ctx.q("page") or 1))
        start = (page - 1) * per_page
        reply = Reply(200, items[start:start + per_page])
        last = max(1, -(-len(items) // per_page))
        reply.pages = {"next": page + 1} if page < last else {}
        if page > 1:
            reply.pages["prev"] = page - 1
        reply.pages["first"], reply.pages["last"] = 1, last
        reply.per_page = per_page
        reply.headers.update({"X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(len(items)),
                              "X-Total-Pages": str(last), "X-Next-Page": str(page + 1) if page < last else "",
                              "X-Prev-Page": str(page - 1) if page > 1 else ""})
        return reply


def _tier(name: str) -> str:
    """GitLab's guess of an environment's tier from its name."""
    lowered = name.lower()
    for tier, words in (("production", ("prod", "live")), ("staging", ("stag", "model", "pre")),
                        ("testing", ("test", "qc")), ("development", ("dev", "review", "trunk"))):
        if any(word in lowered for word in words):
            return tier
    return "other"


def _strip_nulls(value: Any) -> Any:
    """``value`` without null fields (the description marks no field nullable)."""
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


# ==================================================================================================
# The description


@functools.cache
def load_gitlab_description() -> dict[str, Any]:
    """GitLab's OpenAPI description (parsed once per process with CSafeLoader; don't mutate)."""
    from tests.contracts import contract_path

    with gzip.open(contract_path("gitlab", "openapi_v3.yaml.gz"), "rt", encoding="utf-8") as fh:
        return yaml.load(fh, Loader=yaml.CSafeLoader)


def served_templates() -> frozenset[str]:
    return frozenset(template for _, template in _ROUTES)


def corrected_description(spec: dict[str, Any], templates: Iterable[str]) -> dict[str, Any]:
    """A copy of ``spec`` holding ``templates`` with the corrections listed in the module notes."""
    fixed = {key: value for key, value in spec.items() if key not in ("paths", "components")}
    fixed["paths"] = {t: copy.deepcopy(spec["paths"][t]) for t in templates if t in spec["paths"]}
    fixed["components"] = {**spec["components"], "schemas": dict(spec["components"]["schemas"])}
    member = copy.deepcopy(spec["components"]["schemas"]["APIEntitiesMember"])
    member["properties"]["access_level"] = {"type": "integer"}
    fixed["components"]["schemas"]["APIEntitiesMember"] = member
    for schema, prop in LIST_PROPERTIES:
        fixed["components"]["schemas"][schema] = entity = copy.deepcopy(spec["components"]["schemas"][schema])
        entity["properties"][prop] = {"type": "array", "items": entity["properties"][prop]}
    fixed.pop("security", None)                 # auth is the fake's own business (PRIVATE-TOKEN)
    for item in fixed["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict):
                operation.pop("security", None)
    for method, template in LIST_RESPONSES:
        media = fixed["paths"][template][method]["responses"]["200"]["content"]["application/json"]
        media["schema"] = {"type": "array", "items": media["schema"]}
    commits = fixed["paths"][f"{API}/projects/{{id}}/repository/commits"]["post"]
    commits["requestBody"] = {"required": True, "content": {"application/json": {"schema": COMMIT_BODY}}}
    statuses = fixed["paths"][f"{API}/projects/{{id}}/statuses/{{sha}}"]["post"]["responses"]
    statuses.setdefault("201", statuses.get("200"))
    return fixed


@functools.cache
def gitlab_validator_for(templates: frozenset[str]) -> OpenApiValidator:
    """The validator over ``templates`` of the corrected description, built once per process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)          # "Unsupported scheme type" of its security
        return OpenApiValidator(corrected_description(load_gitlab_description(), templates), templates)


# ==================================================================================================
# The server


class FakeGitLab(LocalServer):
    """GitLab's REST API v4 over HTTP on 127.0.0.1, validated against GitLab's description.

    A bot user (``bot_username``, token :attr:`bot_token`) exists from the start; so does the
    ``admin`` user. Requests authenticate with ``PRIVATE-TOKEN``.
    """

    def __init__(self, *, validator: OpenApiValidator | None = None, bot_username: str = "modelherd-bot",
                 validate_responses: bool = True, bot_role: int = DEVELOPER) -> None:
        self.validator = validator or gitlab_validator_for(served_templates())
        self.validate_responses = validate_responses
        self.state = GitLabState()
        self.faults = Faults()
        self.calls: list[Call] = []
        self.violations: list[str] = []
        self.response_errors: list[str] = []
        self.lock = threading.RLock()
        self.url = ""
        self.api = GitLabApi(self.state, "https://gitlab.example.invalid")
        self.bot_token = "glpat-modelherd-bot"
        self.bot_username = bot_username
        self.bot_role = bot_role
        self.add_user(bot_username, bot=True, token=self.bot_token)
        self.state.admins.add(self.add_user("admin", token="glpat-admin"))

    thread_name = "fake-gitlab"

    # -- assertions and records -------------------------------------------------------------------

    def assert_clean(self) -> None:
        problems = [f"request broke the description: {v}" for v in self.violations]
        problems += [f"fake answered off-schema: {e}" for e in self.response_errors]
        assert not problems, "\n".join(problems)

    def take_violations(self) -> list[str]:
        with self.lock:
            taken, self.violations = self.violations, []
        return taken

    def reads(self) -> list[Call]:
        return [c for c in self.calls if not c.is_write]

    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.is_write]

    def calls_to(self, method: str, template: str) -> list[Call]:
        """Calls of ``method`` to ``template`` (relative to /api/v4, e.g. ``/projects/{id}/statuses/{sha}``)."""
        return [c for c in self.calls if c.method == method.upper() and c.template == API + template]

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    def fail_next(self, n: int = 1, status: int = 502, *, retry_after: int | None = None,
                  match: Callable[[str, str], bool] | None = None, applied: bool = False) -> None:
        """Answer the next ``n`` calls (those ``match(method, path)`` accepts) with ``status``:
        5xx a server error (``Retry-After`` when given), 429 a rate limit (``Retry-After``, default 1 s).
        ``applied``: carry the call out first, then answer ``status`` — the write happened but its answer
        was lost (a proxy's 502 after GitLab acted, a client timeout)."""
        with self.lock:
            self.faults.add(n, Fault(status, retry_after, match, applied=applied))

    # -- test-side state helpers ------------------------------------------------------------------

    def add_user(self, username: str, *, bot: bool = False, public_email: str | None = None,
                 state: str = "active", token: str | None = None, name: str | None = None) -> int:
        """A user (``state``: active or blocked); with ``token``, that token authenticates as them."""
        with self.lock:
            user = User(self.state.next_id(), username, name or username.title(), bot, state, public_email)
            self.state.users[user.id] = user
            if token:
                self.state.tokens[token] = user.id
            return user.id

    def user_id(self, username: str) -> int:
        user = self.state.user_by_name(username)
        return user.id if user else self.add_user(username)

    def add_project(self, path: str, default_branch: str = "main", *, files: dict[str, str] | None = None,
                    reset_approvals_on_push: bool = False) -> str:
        """A private project (``group/name``) whose default branch has an initial commit and is
        protected (Maintainers push); the bot holds :attr:`bot_role` in it. Returns its path."""
        with self.lock:
            project = Project(self.state.next_id(), path, default_branch,
                              reset_approvals_on_push=reset_approvals_on_push,
                              protected_branches={default_branch: MAINTAINER})
            self.state.projects[project.id] = project
            tree = self.state.git.derive_tree({}, files or {"README.md": f"# {project.name}\n"})
            project.branches[default_branch] = self.state.git.put_commit(tree, [], "Initial commit", "admin")
            if self.bot_role:
                project.members[self.user_id(self.bot_username)] = self.bot_role
            return path

    def project(self, path: str) -> Project:
        return self.state.project(path)

    def head(self, project: str, branch: str | None = None) -> str:
        p = self.project(project)
        return p.branches[branch or p.default_branch]

    def add_commit(self, project: str, files: dict[str, str | bytes | None], parent: str | None = None, *,
                   message: str = "Change", author: str = "alice", branch: str | None = None) -> str:
        """A commit of ``files`` (None deletes) on ``parent`` (default: the default branch's head);
        with ``branch`` the branch moves to it (an MR from it gets a new version)."""
        with self.lock:
            p = self.project(project)
            parent = parent or p.branches[p.default_branch]
            tree = self.state.git.derive_tree(self.state.git.files_at(parent), files)
            sha = self.state.git.put_commit(tree, [parent], message, author)
            if branch:
                self.api._move_branch(p, branch, sha)
            return sha

    def read_file(self, project: str, ref: str, path: str) -> str | None:
        with self.lock:
            data = self.state.git.read(self.state.resolve(self.project(project), ref), path)
            return None if data is None else data.decode()

    def open_merge_request(self, project: str, base_sha: str, head_sha: str, author: str, *,
                           title: str = "Update models", description: str = "", source_branch: str | None = None,
                           target_branch: str | None = None, draft: bool = False, labels: Iterable[str] = (),
                           from_fork: bool = False) -> int:
        """An open MR from ``head_sha`` (its source branch is created there) into ``target_branch``
        (default branch; moved to ``base_sha`` when it is not there yet); returns its iid."""
        with self.lock:
            p = self.project(project)
            target = target_branch or p.default_branch
            if self.state.git.ancestry(p.branches[target], None).count(base_sha) == 0:
                p.branches[target] = base_sha
            source = source_branch or f"feature-{len(self.state.mrs) + 1}"
            p.branches[source] = head_sha
            mr = self.api._new_mr(p, self.user_id(author), source, target, title, description, draft=draft,
                                  labels=labels, source_project_id=p.id + 100000 if from_fork else None)
            return mr.iid

    def merge_request(self, project: str, iid: int) -> MergeRequest:
        return self.state.mr(self.project(project), iid)

    def push(self, project: str, iid: int, files: dict[str, str | bytes | None], *, author: str | None = None,
             message: str = "More changes") -> str:
        """A new commit on the MR's source branch (a new MR version); returns its SHA."""
        with self.lock:
            mr = self.merge_request(project, iid)
            return self.add_commit(project, files, mr.head.head, author=author or self.state.users[mr.author].username,
                                   message=message, branch=mr.source_branch)

    def merge(self, project: str, iid: int, *, squash: bool = False, fast_forward: bool = False) -> str:
        """Merge the MR (a merge commit; with ``squash`` a squash commit under it; ``fast_forward``:
        the target moves to the head); returns the commit the target branch now points at."""
        with self.lock:
            p, mr = self.project(project), self.merge_request(project, iid)
            head, tree = mr.head.head, self.state.git.commits[mr.head.head].tree
            if fast_forward:
                p.branches[mr.target_branch] = head
            else:
                parent = head
                if squash:
                    parent = self.state.git.put_commit(tree, [p.branches[mr.target_branch]], mr.title, "admin")
                    mr.squash_commit_sha = parent
                merge = self.state.git.put_commit(tree, [p.branches[mr.target_branch], parent],
                                                  f"Merge branch '{mr.source_branch}'", "admin")
                p.branches[mr.target_branch] = mr.merge_commit_sha = merge
            mr.state, mr.updated_at = "merged", self.state.tick()
            return p.branches[mr.target_branch]

    def approve(self, project: str, iid: int, username: str) -> None:
        """``username`` approves the MR now."""
        with self.lock:
            self.merge_request(project, iid).approvals.append((self.user_id(username), self.state.tick()))

    def unapprove(self, project: str, iid: int, username: str) -> None:
        with self.lock:
            mr = self.merge_request(project, iid)
            mr.approvals = [(u, at) for u, at in mr.approvals if u != self.user_id(username)]

    def add_note(self, project: str, iid: int, username: str, body: str) -> int:
        """A note written by a person (e.g. a ``/deploy`` command); returns its id."""
        with self.lock:
            p = self.project(project)
            now = self.state.tick()
            note = Note(self.state.next_id(), p.id, iid, self.user_id(username), body, created_at=now, updated_at=now)
            self.state.notes[note.id] = note
            return note.id

    def notes(self, project: str, iid: int) -> list[Note]:
        pid = self.project(project).id
        return sorted((n for n in self.state.notes.values() if n.project_id == pid and n.iid == iid),
                      key=lambda n: n.id)

    def statuses(self, project: str, sha: str | None = None) -> list[CommitStatus]:
        pid = self.project(project).id
        return [s for s in self.state.statuses if s.project_id == pid and sha in (None, s.sha)]

    def deployments(self, project: str) -> list[Deployment]:
        pid = self.project(project).id
        return sorted((d for d in self.state.deployments.values() if d.project_id == pid), key=lambda d: d.id)

    def environment(self, project: str, name: str) -> Environment | None:
        pid = self.project(project).id
        return next((e for e in self.state.environments.values() if e.project_id == pid and e.name == name), None)

    def set_access_level(self, project: str, username: str, level: int) -> None:
        """``username``'s membership of the project: 10 guest … 50 owner; 0 removes it."""
        with self.lock:
            members = self.project(project).members
            if level:
                members[self.user_id(username)] = level
            else:
                members.pop(self.user_id(username), None)

    def add_group_member(self, group: str, username: str, level: int = DEVELOPER, *, state: str = "active") -> None:
        """A member of the group (full path; a new group is private); ``state``: active or awaiting
        (a seat not approved yet)."""
        if state not in ("active", "awaiting"):
            raise ValueError("state must be active or awaiting")
        with self.lock:
            self.state.groups.setdefault(group, {})[self.user_id(username)] = (level, state)

    def set_group_visibility(self, group: str, visibility: str) -> None:
        """``private`` (members, and members of its projects, see it), ``internal`` or ``public``."""
        if visibility not in ("private", "internal", "public"):
            raise ValueError("visibility must be private, internal or public")
        with self.lock:
            self.state.groups.setdefault(group, {})
            self.state.group_visibility[group] = visibility

    def protect_environment(self, project: str, name: str, deploy_level: int = MAINTAINER,
                            users: Iterable[str] = ()) -> None:
        """Protect the environment ``name`` (created if missing): only ``deploy_level`` and above, and
        ``users``, may deploy to it."""
        with self.lock:
            p = self.project(project)
            env = self.environment(project, name)
            if env is None:
                env = Environment(self.state.next_id(), p.id, name, _tier(name))
                self.state.environments[env.id] = env
            env.deploy_level, env.deployers = deploy_level, {self.user_id(u) for u in users}

    # -- HTTP -------------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        started = time.perf_counter()
        raw_path = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.path).split("?", 1)[0]
        call, response = self._handle(request, raw_path)
        call.seconds = time.perf_counter() - started
        return response(environ, start_response)

    def _handle(self, request: Request, raw_path: str) -> tuple[Call, Response]:
        method, raw_body = request.method.upper(), request.get_data()
        with self.lock:
            call = Call(method, raw_path, None, 0, {k: request.args.getlist(k) for k in request.args},
                        decode_body(raw_body, request.content_type), None)
            self.calls.append(call)
            status, body, headers = self._dispatch(request, call, raw_path, raw_body)
            call.status = status
        if isinstance(body, bytes):
            return call, Response(body, status=status, headers=headers)
        headers.setdefault("Content-Type", "application/json")
        return call, Response(b"" if body is None else json.dumps(body).encode(), status=status, headers=headers)

    def _dispatch(self, request: Request, call: Call, raw_path: str, raw_body: bytes) -> tuple[int, Any, dict]:
        method = call.method
        route = self.validator.route(raw_path)
        call.template = route.template if route else None
        errors = self.validator.validate(method, raw_path, request.args, request.headers, raw_body)
        if errors:
            self.violations.extend(e if e.startswith(f"{method} ") else f"{method} {raw_path}: {e}" for e in errors)
            return 400, {"error": "; ".join(errors)}, {}
        handler = _ROUTES.get((method, route.template))
        if handler is None:
            self.violations.append(f"{method} {raw_path}: {route.template} is described but FakeGitLab does not serve it")
            return 501, {"message": "501 Not implemented by FakeGitLab"}, {}
        fault = self.faults.take(method, raw_path)
        if fault is not None and not fault.applied:
            return self.faults.answer(fault)
        answered = self._carry_out(request, call, method, raw_path, route, handler)
        if fault is not None:
            return self.faults.answer(fault)                  # done, but the client hears a failure
        return answered

    def _carry_out(self, request: Request, call: Call, method: str, raw_path: str, route: Any,
                   handler: str) -> tuple[int, Any, dict]:
        params = {name: unquote(value) for name, value in route.params.items()}
        try:
            user = self._authenticate(request)
            call.username = user.username if user else None
            json_body = call.body if isinstance(call.body, (dict, list)) else None
            reply = getattr(self.api, handler)(Ctx(method, params, request.args, json_body, user))
        except ApiError as error:
            self._check_response(method, raw_path, error.status, error.body(), request)
            return error.status, error.body(), dict(error.headers)
        headers = dict(reply.headers)
        if reply.pages:
            headers["Link"] = self._link_header(request, raw_path, reply.pages, reply.per_page)
        if reply.raw is not None:
            return reply.status, reply.raw, headers
        body = self.validator.example(method, route.template, reply.status, _strip_nulls(reply.body))
        self._check_response(method, raw_path, reply.status, body, request)
        return reply.status, body, headers

    def _authenticate(self, request: Request) -> User | None:
        token = request.headers.get("PRIVATE-TOKEN")
        if token is None:
            return None
        user = self.state.users.get(self.state.tokens.get(token, -1))
        if user is None or user.state != "active":
            raise ApiError(401, "Unauthorized")
        return user

    def _link_header(self, request: Request, raw_path: str, pages: dict[str, int], per_page: int) -> str:
        return link_header(f"{self.url}{raw_path}", request, pages, per_page)

    def _check_response(self, method: str, path: str, status: int, body: Any, request: Request) -> None:
        if self.validate_responses:
            self.response_errors.extend(response_problems(self.validator, method, path, status, body, request))




# ==================================================================================================
# Pytest fixtures (register "tests.fakes.gitlab" in tests/conftest.py's pytest_plugins)


@pytest.fixture(scope="session")
def gitlab_validator() -> OpenApiValidator:
    """The validator over the served paths of GitLab's (corrected) description, built once."""
    return gitlab_validator_for(served_templates())


@pytest.fixture
def fake_gitlab(gitlab_validator: OpenApiValidator) -> Iterator[FakeGitLab]:
    """A started :class:`FakeGitLab`; teardown fails the test if a request broke the description or
    an answer was off-schema."""
    with FakeGitLab(validator=gitlab_validator) as fake:
        yield fake
        fake.assert_clean()
