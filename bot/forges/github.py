"""GitHub as a :class:`~modelherd.forges.base.Forge`, on PyGithub, for one repository of an installation.

Handlers see only the dataclasses of :mod:`modelherd.forges.base` and plain dicts; PyGithub objects
and exceptions stay in this module (failures become :class:`GitHubError`, a ``SourceError``, or
:class:`~modelherd.pacing.RateLimited`).

Calls are kept to what the work needs (``tests/test_forge_github.py`` counts them):

* contents at a commit SHA never change, so ``read_many`` and ``list_files`` at a SHA are cached by
  (SHA, path) and cost nothing the second time; so is the file list of a pull request at a given
  (base, head);
* from :attr:`ArchiveLimits.threshold` (10) uncached files at one SHA, ``read_many`` reads the
  commit's tarball instead (the redirect, then the download: two requests whatever the number of
  files), unless the repository or the archive is too big (:mod:`modelherd.forges.archive`);
  ``tests/test_forge_github_archive.py`` counts those;
* the sticky comment's and the check runs' ids are remembered, so an upsert is one ``PATCH``; a check
  run not remembered is looked up on GitHub (one listing of the commit's runs per job) before one is
  created, never taken as absent because this process's memory says so — another worker may have
  created it, or an earlier attempt whose answer was lost;
* the pull request is fetched with ``If-None-Match``: an unchanged one answers 304, which GitHub does
  not count against the rate limit;
* writes per plan are constant in the number of manifests: one comment upsert, one write per check,
  and one more per 50 annotations beyond the first 50;
* deployments created here are remembered (id, environment, production), so a repeated create with
  the same rollout id, and a status on one, cost no lookup;
* a revert pull request is one tree, one commit, one ref and one pull request write whatever the
  number of files (their text goes inline in the tree request), after two reads that tell what
  already holds those contents.

``tests/test_forge_github_deploy.py`` counts the deployment and revert calls.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote

import requests
from github import Github, GithubException
from github.GithubException import BadCredentialsException
from github.IssueComment import IssueComment
from modelherd.clock import monotonic
from modelherd.forges.archive import (
    ArchiveLimits,
    ArchiveRefused,
    ArchiveTooBig,
    Extracted,
    extract,
)
from modelherd.forges.base import (
    DEPLOYMENT_STATES,
    Annotation,
    BranchTip,
    ChangeRequest,
    CheckReport,
    CheckStatus,
    NothingToRevert,
    SourceError,
)
from modelherd.forges.common import (
    LruCache,
    changed_files_cached,
    clip,
    defuse_mentions,
    git_blob_sha,
    is_sha,
    read_cached,
)

FILES_API_CAP = 3000             # GitHub lists at most 3000 files of a pull request
ANNOTATIONS_PER_REQUEST = 50     # and takes at most 50 annotations per check-run request
OUTPUT_LIMIT = 65_535            # characters of a check run's summary, and of its text
MESSAGE_LIMIT = 64 * 1024        # bytes of an annotation's message
REACTIONS = frozenset({"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"})
ROLES = ("admin", "maintain", "write", "triage", "read", "none")
DESCRIPTION_LIMIT = 140         # characters of a deployment's and a deployment status's description
PULL_TITLE_LIMIT = 256           # characters of a pull request's title
ROLLOUT_KEY = "modelherd_rollout"  # the payload field that makes a deployment idempotent
RETIRE_WINDOW = 20               # latest deployments of an environment looked at when retiring old ones
ARCHIVE_LIMITS = ArchiveLimits()  # when many files come from the commit's tarball (see ArchiveLimits)
SIZE_TTL = 3600.0                # seconds a repository's size is trusted (GitHub recomputes it hourly)
T = TypeVar("T")
log = logging.getLogger(__name__)


class _Run(NamedTuple):
    id: int
    annotations: int              # annotations the run holds (GitHub appends, never replaces)
    external_id: str | None = None  # this adapter's digest of the annotations the run was created for


class _Deployment(NamedTuple):
    """What the adapter remembers of a deployment."""

    id: int
    environment: str
    production: bool
    transient: bool

    @classmethod
    def of(cls, data: dict[str, Any]) -> _Deployment:
        return cls(int(data["id"]), data.get("environment") or "", bool(data.get("production_environment")),
                   bool(data.get("transient_environment")))


class _Entry(NamedTuple):
    """A file of a git tree: its blob SHA and mode."""

    sha: str
    mode: str


class GitHubError(SourceError):
    """GitHub refused or failed a request; ``status`` is its HTTP status (None: no answer)."""

    def __init__(self, status: int | None, message: str):
        super().__init__(message)
        self.status = status


class TooManyFiles(GitHubError):
    """The pull request changes more files than GitHub's files API lists (3000)."""




# -- caches shared by every job of a process ------------------------------------------------------------


def _bytes_weight(value: bytes | None) -> int:
    return 64 + (len(value) if value else 0)


@dataclass
class RepoCaches:
    """What one repository's forges remember across jobs (immutable data, and ids of our own objects).

    ``comment_ids`` and ``check_runs`` are only hints: a stale id is detected (404) and searched again;
    an id that is not here is looked up on GitHub, never taken as absent.
    """

    contents: LruCache = field(default_factory=lambda: LruCache(32 * 1024 * 1024, _bytes_weight))
    trees: LruCache = field(default_factory=lambda: LruCache(64))
    pull_files: LruCache = field(default_factory=lambda: LruCache(256))
    pulls: LruCache = field(default_factory=lambda: LruCache(256))             # number → (etag, dict)
    tips: LruCache = field(default_factory=lambda: LruCache(16))               # branch → (etag, sha)
    comment_ids: LruCache = field(default_factory=lambda: LruCache(4096))      # (number, marker) → id
    check_runs: LruCache = field(default_factory=lambda: LruCache(4096))       # (sha, name) → _Run
    deployments: LruCache = field(default_factory=lambda: LruCache(4096))      # id → _Deployment
    rollouts: LruCache = field(default_factory=lambda: LruCache(4096))         # (ref, env, rollout id) → id
    size_kb: tuple[float, int] | None = None     # (monotonic time seen, repository.size in KB)
    archive_hold_off: float = 0.0                # monotonic time before which no archive is tried


# -- the forge ------------------------------------------------------------------------------------------


class GitHubForge:
    """One repository of an installation, as handlers need it. Built by ``GitHubClients.forge``."""

    def __init__(self, gh: Github, repo: str, *, app_id: int | None, bot_login: Callable[[], str],
                 caches: RepoCaches | None = None, on_bad_credentials: Callable[[], None] = lambda: None,
                 archive_limits: ArchiveLimits | None = None):
        self.repo = repo
        self.app_id = app_id
        self._gh = gh
        self._requester = gh.requester
        self._repo = gh.get_repo(repo)          # lazy: no request
        self._bot_login = bot_login
        self.caches = caches or RepoCaches()
        self._on_bad_credentials = on_bad_credentials
        self.archive_limits = archive_limits or ARCHIVE_LIMITS
        self._default_branch: str | None = None     # as the last pull request read said (this event)
        self._listed: set[str] = set()          # SHAs whose check runs this forge (one job) listed

    # -- plumbing ---------------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` (PyGithub calls); a rejected token is dropped and the call tried once more."""
        try:
            try:
                return fn()
            except BadCredentialsException:
                self._on_bad_credentials()
                return fn()
        except GithubException as exc:
            raise GitHubError(exc.status, f"GitHub: {what}: {exc.status} {_message(exc)}") from exc
        except requests.RequestException as exc:
            raise GitHubError(None, f"GitHub: {what}: {type(exc).__name__}: {exc}") from exc

    def _get(self, path: str, params: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> tuple[dict[str, Any], Any]:
        """``GET`` a path of the API (relative to the API root): response headers and JSON."""
        return self._requester.requestJsonAndCheck("GET", path, parameters=params, headers=headers)

    def _pages(self, path: str, params: dict[str, Any] | None = None, key: str | None = None) -> Iterator[Any]:
        """Every item of a paginated list (``Link: rel="next"``), 100 a page; ``key``: the list's
        field when the page is an object (``check_runs``)."""
        url, params = path, {"per_page": 100, **(params or {})}
        while url:
            headers, data = self._get(url, params)
            yield from ((data or {}).get(key) or []) if key else (data or [])
            url, params = _next_link(headers.get("link", "")), None

    def _send(self, method: str, path: str, body: dict[str, Any]) -> Any:
        """``POST``/``PATCH`` a JSON body to a path of the API (relative to the API root); the JSON answer."""
        return self._requester.requestJsonAndCheck(method, path, input=body)[1]

    def _repo_path(self, suffix: str) -> str:
        return f"/repos/{self.repo}{suffix}"

    # -- pull requests ----------------------------------------------------------------------------------

    def change_request(self, number: int) -> ChangeRequest:
        """The pull request as GitHub says now (conditional: 304 when unchanged since the last read)."""
        cached = self.caches.pulls.get(number)
        headers = {"If-None-Match": cached[0]} if cached else None
        response_headers, data = self._call(f"read pull request #{number}",
                                            lambda: self._get(self._repo_path(f"/pulls/{number}"), headers=headers))
        if data is None and cached:      # 304 Not Modified
            data = cached[1]
        else:
            self._note_size(data)
            if response_headers.get("etag"):
                self.caches.pulls.put(number, (response_headers["etag"], data))
        cr = to_change_request(data, self.repo)
        self._default_branch = cr.default_branch
        return cr

    def default_branch_tip(self) -> BranchTip:
        """The default branch (as the pull request just read says, else ``GET /repos/{owner}/{repo}``)
        and its tip: ``GET …/git/ref/heads/{branch}`` every time, conditional (an unmoved branch
        answers 304, which costs no rate limit)."""
        branch = self._default_branch
        if branch is None:
            _, data = self._call("read the repository", lambda: self._get(self._repo_path("")))
            branch = self._default_branch = data.get("default_branch") or "main"
        cached = self.caches.tips.get(branch)
        headers = {"If-None-Match": cached[0]} if cached else None
        path = self._repo_path(f"/git/ref/heads/{quote(branch, safe='/')}")
        try:
            response_headers, data = self._call(f"read the default branch {branch}",
                                                lambda: self._get(path, headers=headers))
        except GitHubError as exc:
            if exc.status == 404:
                raise GitHubError(404, f"GitHub: the default branch {branch} of {self.repo} was not found") from exc
            raise
        if data is None and cached:      # 304 Not Modified
            return BranchTip(branch, cached[1])
        sha = data["object"]["sha"]
        if response_headers.get("etag"):
            self.caches.tips.put(branch, (response_headers["etag"], sha))
        return BranchTip(branch, sha)

    def _note_size(self, pull: dict[str, Any]) -> None:
        """Remember the repository's size from a fresh pull request (its ``base.repo``), for free."""
        size = (((pull or {}).get("base") or {}).get("repo") or {}).get("size")
        if isinstance(size, int):
            self.caches.size_kb = (monotonic(), size)

    def size_kb(self) -> int:
        """The repository's size in KB as GitHub reports it (all history, packed; recomputed hourly):
        the last one seen within :data:`SIZE_TTL`, else one ``GET /repos/{owner}/{repo}``."""
        seen = self.caches.size_kb
        if seen is None or monotonic() - seen[0] > SIZE_TTL:
            _, data = self._call("read the repository", lambda: self._get(self._repo_path("")))
            seen = self.caches.size_kb = (monotonic(), int(data.get("size") or 0))
        return seen[1]

    def reader(self, cr: ChangeRequest | None = None) -> "GitHubReader":
        """Reads the PR's changed files and contents at any revision; without a PR, contents only
        (drift detection reads the default branch)."""
        return GitHubReader(self, cr)

    def open_pulls(self) -> list[int]:
        """Numbers of the repository's open pull requests."""
        return [int(pr["number"]) for pr in self._call("list open pull requests",
                                                      lambda: list(self._pages(self._repo_path("/pulls"),
                                                                               {"state": "open"})))]

    def reviews(self, number: int) -> list[dict[str, Any]]:
        """Submitted reviews, oldest first: user, user_type, state (upper case), commit_id, submitted_at."""
        items = self._call(f"list reviews of #{number}",
                           lambda: list(self._pages(self._repo_path(f"/pulls/{number}/reviews"))))
        return [{"user": (r.get("user") or {}).get("login"), "user_type": (r.get("user") or {}).get("type"),
                 "state": (r.get("state") or "").upper(), "commit_id": r.get("commit_id"),
                 "submitted_at": r.get("submitted_at")} for r in items]

    def commits(self, number: int) -> list[dict[str, Any]]:
        """The pull request's commits (GitHub lists at most 250): sha, author and committer logins
        (None when the git identity matches no GitHub account), and the git names."""
        items = self._call(f"list commits of #{number}",
                           lambda: list(self._pages(self._repo_path(f"/pulls/{number}/commits"))))
        return [{"sha": c["sha"], "author": (c.get("author") or {}).get("login"),
                 "committer": (c.get("committer") or {}).get("login"),
                 "author_name": ((c.get("commit") or {}).get("author") or {}).get("name"),
                 "committer_name": ((c.get("commit") or {}).get("committer") or {}).get("name")} for c in items]

    # -- people -----------------------------------------------------------------------------------------

    def permission(self, user: str) -> str:
        """The user's role on the repository: admin, maintain, write, triage, read or none."""
        try:
            _, data = self._call(f"read the permission of {user}", lambda: self._get(
                self._repo_path(f"/collaborators/{quote(user, safe='')}/permission")))
        except GitHubError as exc:
            if exc.status == 404:
                return "none"
            raise
        role = data.get("role_name")
        return role if role in ROLES else (data.get("permission") or "none")

    def team_membership(self, org: str, team_slug: str, user: str) -> str | None:
        """``active`` or ``pending`` (an invitation not accepted yet), or None when not a member."""
        path = f"/orgs/{quote(org, safe='')}/teams/{quote(team_slug, safe='')}/memberships/{quote(user, safe='')}"
        try:
            _, data = self._call(f"read {user}'s membership of {org}/{team_slug}", lambda: self._get(path))
        except GitHubError as exc:
            if exc.status == 404:
                return None
            raise
        return data.get("state")

    # -- comments ---------------------------------------------------------------------------------------

    def create_comment(self, number: int, body: str) -> str:
        """A new comment on the pull request; returns its id."""
        comment = self._call(f"comment on #{number}", lambda: self._repo.get_issue(number).create_comment(body))
        return str(comment.id)

    def react(self, number: int, comment_id: int | str, content: str) -> None:
        """Add a reaction (``eyes``, ``+1``, …) to an issue comment (GitHub addresses it by id alone)."""
        if content not in REACTIONS:
            raise ValueError(f"unknown reaction {content!r}; one of {sorted(REACTIONS)}")
        self._call(f"react to comment {comment_id}", lambda: self._comment(int(comment_id)).create_reaction(content))

    def upsert_comment(self, number: int, marker: str, body: str, *, create: bool = True) -> str | None:
        """Edit this bot's comment holding ``marker`` on the pull request, or create it; returns its id.

        Comments of anyone else are never touched, even when they quote the marker. ``create=False``
        only edits an existing comment (None when there is none), e.g. "no manifest changes any more".
        """
        if marker not in body:
            body = f"{marker}\n{body}"
        key = (number, marker)
        known = self.caches.comment_ids.get(key)
        if known is not None and self._edit_comment(known, body):
            return str(known)
        found = self._find_comment(number, marker)
        if found is not None and self._edit_comment(found, body):
            self.caches.comment_ids.put(key, found)
            return str(found)
        if not create:
            return None
        created = self.create_comment(number, body)
        self.caches.comment_ids.put(key, int(created))
        return created

    def _comment(self, comment_id: int) -> IssueComment:
        return IssueComment(self._requester, url=self._repo_path(f"/issues/comments/{comment_id}"))

    def _edit_comment(self, comment_id: int, body: str) -> bool:
        """PATCH the comment; False if it no longer exists (deleted by someone)."""
        try:
            self._call(f"edit comment {comment_id}", lambda: self._comment(comment_id).edit(body))
        except GitHubError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _find_comment(self, number: int, marker: str) -> int | None:
        """The oldest comment of this bot on the pull request that holds ``marker``."""
        login = self._bot_login()
        for comment in self._call(f"list comments of #{number}",
                                  lambda: list(self._pages(self._repo_path(f"/issues/{number}/comments")))):
            user = comment.get("user") or {}
            if user.get("login") == login and marker in (comment.get("body") or ""):
                return int(comment["id"])
        return None

    # -- checks -----------------------------------------------------------------------------------------

    def report_check(self, sha: str, report: CheckReport) -> None:
        """Create or update the check run ``report.name`` on ``sha``; annotations 50 per request.

        The run is found by its remembered id, else on GitHub; one is created only when GitHub has none.
        GitHub appends annotations, never replaces them: a run created for the same annotations (its
        ``external_id`` holds their digest) gets those it is missing and no others — so a report sent
        again after a lost answer neither doubles them nor makes a second run — while different
        annotations make a new run of the same name, and GitHub shows the latest.
        """
        annotations = [annotation_json(a) for a in report.annotations]
        digest = _annotations_digest(annotations)
        fields = check_fields(report)
        if digest is not None:
            fields["external_id"] = digest
        known = self._check_run(sha, report.name)
        fits = known is not None and (digest is None or not known.annotations or known.external_id == digest)
        try:
            if fits and self._edit_check(known.id, fields):
                run = _Run(known.id, known.annotations, digest or known.external_id)
            else:
                fields["output"]["annotations"] = annotations[:ANNOTATIONS_PER_REQUEST]
                run = _Run(self._create_check(sha, report.name, fields), len(fields["output"]["annotations"]),
                           digest)
            self.caches.check_runs.put((sha, report.name), run)
            if annotations:
                self._annotate(sha, report.name, run, fields["output"], annotations[run.annotations:])
        except GitHubError:
            # the write may have been carried out all the same: what the run holds is read on GitHub next time
            self.caches.check_runs.pop((sha, report.name))
            self._listed.discard(sha)
            raise

    def _annotate(self, sha: str, name: str, run: _Run, output: dict[str, Any],
                  annotations: list[dict[str, Any]]) -> None:
        """Send the annotations the run is missing, 50 per update (GitHub appends them); what the run
        holds is remembered after each, so a retry sends only the rest."""
        head = {"title": output["title"], "summary": output["summary"]}
        held = run.annotations
        for start in range(0, len(annotations), ANNOTATIONS_PER_REQUEST):
            part = annotations[start:start + ANNOTATIONS_PER_REQUEST]
            batch = {**head, "annotations": part}
            self._call(f"annotate check run {run.id}", lambda: self._repo.get_check_run(run.id).edit(output=batch))
            held += len(part)
            self.caches.check_runs.put((sha, name), run._replace(annotations=held))

    def _check_run(self, sha: str, name: str) -> "_Run | None":
        """This app's latest run named ``name`` on ``sha`` (id, annotations it holds), if any: remembered,
        else looked up on GitHub (the first look of a job at a SHA lists all of this app's runs on it)."""
        known = self.caches.check_runs.get((sha, name))
        if known is None and sha not in self._listed:
            self._list_check_runs(sha)
            known = self.caches.check_runs.get((sha, name))
        return known

    def _list_check_runs(self, sha: str) -> None:
        params = {"filter": "latest"} if self.app_id is None else {"filter": "latest", "app_id": self.app_id}
        path = self._repo_path(f"/commits/{sha}/check-runs")
        runs = self._call(f"list check runs on {sha[:12]}", lambda: list(self._pages(path, params, key="check_runs")))
        for run in runs:
            held = int((run.get("output") or {}).get("annotations_count") or 0)
            if (sha, run["name"]) not in self.caches.check_runs:
                self.caches.check_runs.put((sha, run["name"]), _Run(int(run["id"]), held, run.get("external_id")))
        self._listed.add(sha)

    def _create_check(self, sha: str, name: str, fields: dict[str, Any]) -> int:
        run = self._call(f"create check run {name} on {sha[:12]}",
                         lambda: self._repo.create_check_run(name=name, head_sha=sha, **fields))
        return int(run.id)

    def _edit_check(self, run_id: int, fields: dict[str, Any]) -> bool:
        try:
            self._call(f"update check run {run_id}", lambda: self._repo.get_check_run(run_id).edit(**fields))
        except GitHubError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # -- deployments ------------------------------------------------------------------------------------

    def create_deployment(self, ref: str, environment: str, *, description: str, payload: dict[str, Any],
                          production: bool, transient: bool = False) -> str:
        """A GitHub deployment of ``ref`` to ``environment``; its id. With ``payload["modelherd_rollout"]``
        set, an existing deployment of that rollout (same ref and environment) is returned instead."""
        rollout = payload.get(ROLLOUT_KEY)
        key = (ref, environment, rollout)
        if rollout is not None:
            known = self.caches.rollouts.get(key)
            found = known if known is not None else self._find_deployment(ref, environment, rollout)
            if found is not None:
                self.caches.rollouts.put(key, found)
                return str(found)
        body = {"ref": ref, "environment": environment, "task": "deploy", "auto_merge": False,
                "required_contexts": [], "payload": payload, "description": short(description, DESCRIPTION_LIMIT),
                "production_environment": production, "transient_environment": transient}
        what = f"create a deployment of {ref[:12]} to {environment}"
        data = self._call(what, lambda: self._send("POST", self._repo_path("/deployments"), body))
        if not isinstance(data, dict) or "id" not in data:      # 202: GitHub merged instead (auto_merge)
            raise GitHubError(202, f"GitHub: {what}: {(data or {}).get('message', 'no deployment created')}")
        deployment = self._remember(data)
        if rollout is not None:
            self.caches.rollouts.put(key, deployment.id)
        return str(deployment.id)

    def set_deployment_status(self, deployment_id: str, state: str, *, description: str = "",
                              environment_url: str | None = None, log_url: str | None = None) -> None:
        """Add a status to the deployment. ``success`` sets ``auto_inactive`` (GitHub retires the
        environment's earlier non-production deployments) and retires earlier production ones itself."""
        if state not in DEPLOYMENT_STATES:
            raise ValueError(f"unknown deployment state {state!r}; one of {DEPLOYMENT_STATES}")
        body: dict[str, Any] = {"state": state, "description": short(description, DESCRIPTION_LIMIT)}
        if environment_url:
            body["environment_url"] = environment_url
        if log_url:
            body["log_url"] = log_url
        if state == "success":
            body["auto_inactive"] = True
        self._post_status(int(deployment_id), body)
        if state == "success":
            self._retire_earlier(int(deployment_id))

    def _post_status(self, deployment_id: int, body: dict[str, Any]) -> None:
        path = self._repo_path(f"/deployments/{deployment_id}/statuses")
        self._call(f"set deployment {deployment_id} {body['state']}", lambda: self._send("POST", path, body))

    def _find_deployment(self, ref: str, environment: str, rollout: Any) -> int | None:
        """The newest deployment of ``ref`` to ``environment`` whose payload names ``rollout``."""
        params = {"sha" if is_sha(ref) else "ref": ref, "environment": environment}
        for data in self._call(f"list deployments of {ref[:12]} to {environment}",
                               lambda: list(self._pages(self._repo_path("/deployments"), params))):
            if _payload(data).get(ROLLOUT_KEY) == rollout:
                return self._remember(data).id
        return None

    def _remember(self, data: dict[str, Any]) -> _Deployment:
        deployment = _Deployment.of(data)
        self.caches.deployments.put(deployment.id, deployment)
        return deployment

    def _deployment(self, deployment_id: int) -> _Deployment:
        """The deployment's environment and kind (remembered, or read once)."""
        known = self.caches.deployments.get(deployment_id)
        if known is not None:
            return known
        _, data = self._call(f"read deployment {deployment_id}",
                             lambda: self._get(self._repo_path(f"/deployments/{deployment_id}")))
        return self._remember(data)

    def _retire_earlier(self, deployment_id: int) -> None:
        """Mark inactive the production deployments of the environment that succeeded before this one.

        GitHub's ``auto_inactive`` leaves production (and transient) deployments alone, so without
        this a production environment would show every past success as active. Newest first, up to
        the first already inactive (everything before it was retired when it succeeded).
        """
        current = self._deployment(deployment_id)
        if not current.production or current.transient:
            return
        _, page = self._call(f"list deployments to {current.environment}", lambda: self._get(
            self._repo_path("/deployments"), {"environment": current.environment, "per_page": RETIRE_WINDOW}))
        for data in page or []:
            earlier = _Deployment.of(data)
            if earlier.id >= deployment_id or earlier.transient:
                continue
            state = self._latest_state(earlier.id)
            if state == "inactive":
                return
            if state == "success":
                self._post_status(earlier.id, {"state": "inactive",
                                               "description": f"Superseded by deployment {deployment_id}"})

    def retire_environment(self, environment: str) -> None:
        """Mark inactive every deployment to ``environment`` whose latest state is success (among the
        newest :data:`RETIRE_WINDOW`): GitHub then shows nothing live there."""
        _, page = self._call(f"list deployments to {environment}", lambda: self._get(
            self._repo_path("/deployments"), {"environment": environment, "per_page": RETIRE_WINDOW}))
        for data in page or []:
            deployment = self._remember(data)
            if self._latest_state(deployment.id) == "success":
                self._post_status(deployment.id, {"state": "inactive", "description": "Decommissioned"})

    def _latest_state(self, deployment_id: int) -> str | None:
        _, statuses = self._call(f"read the state of deployment {deployment_id}", lambda: self._get(
            self._repo_path(f"/deployments/{deployment_id}/statuses"), {"per_page": 1}))
        return statuses[0].get("state") if statuses else None

    # -- revert pull requests ---------------------------------------------------------------------------

    def open_revert_pull(self, base: str, files: dict[str, str | None], *, branch: str, title: str,
                         body: str) -> int:
        """A pull request into ``base`` from ``branch``, whose one commit on ``base``'s head writes
        ``files`` (None deletes); its number. Idempotent, see :meth:`Forge.open_revert_pull`."""
        title = clip(defuse_mentions(title), PULL_TITLE_LIMIT, "title")
        try:
            return self._open_revert_pull(base, files, branch, title, body)
        except GitHubError as exc:
            if exc.status != 422 or "already exists" not in str(exc):
                raise
        return self._open_revert_pull(base, files, branch, title, body)   # lost a race for the branch: once more

    def _open_revert_pull(self, base: str, files: dict[str, str | None], branch: str, title: str, body: str) -> int:
        head = self._branch_sha(branch)
        number = self._open_pull(branch, base) if head else None
        start = head if number is not None else self._branch_sha(base)
        if start is None:
            raise GitHubError(404, f"GitHub: branch {base} not found in {self.repo}")
        tree, entries = self._entries(start, list(files))
        changes = tree_changes(files, entries)
        if changes:
            commit = self._commit(start, tree, changes, title)
            self._move_branch(branch, commit, exists=head is not None, force=number is None)
        elif number is None:
            raise NothingToRevert(f"{base} of {self.repo} already holds these contents: nothing to revert")
        return number if number is not None else self._create_pull(base, branch, title, body)

    def _branch_sha(self, branch: str) -> str | None:
        """The commit a branch points at; None when there is no such branch."""
        try:
            _, data = self._call(f"read branch {branch}",
                                 lambda: self._get(self._repo_path(f"/git/ref/heads/{quote(branch, safe='/')}")))
        except GitHubError as exc:
            if exc.status == 404:
                return None
            raise
        return data["object"]["sha"]

    def _open_pull(self, branch: str, base: str) -> int | None:
        """The number of the open pull request from ``branch`` into ``base``, if there is one."""
        owner = self.repo.split("/", 1)[0]
        params = {"state": "open", "head": f"{owner}:{branch}", "base": base, "per_page": 1}
        _, pulls = self._call(f"find the pull request of {branch}", lambda: self._get(self._repo_path("/pulls"), params))
        return int(pulls[0]["number"]) if pulls else None

    def _entries(self, commit: str, paths: list[str]) -> tuple[str, dict[str, _Entry]]:
        """The root tree SHA of ``commit`` and the files it holds among ``paths``.

        One recursive tree listing; when GitHub cuts it (over 100,000 entries), each path it misses
        is looked up through the contents API.
        """
        _, data = self._call(f"list files of {commit[:12]}", lambda: self._get(
            self._repo_path(f"/git/trees/{commit}"), {"recursive": "1"}))
        wanted = set(paths)
        found = {e["path"]: _Entry(e["sha"], e["mode"]) for e in data["tree"]
                 if e.get("type") == "blob" and e["path"] in wanted}
        if data.get("truncated"):
            for path in wanted - found.keys():
                sha = self._blob_sha(commit, path)
                if sha is not None:
                    found[path] = _Entry(sha, "100644")
        return data["sha"], found

    def _blob_sha(self, commit: str, path: str) -> str | None:
        try:
            _, data = self._call(f"look up {path} at {commit[:12]}", lambda: self._get(
                self._repo_path(f"/contents/{quote(path)}"), {"ref": commit}))
        except GitHubError as exc:
            if exc.status == 404:
                return None
            raise
        return data.get("sha") if isinstance(data, dict) and data.get("type") == "file" else None

    def _commit(self, parent: str, base_tree: str, changes: list[dict[str, Any]], message: str) -> str:
        """A commit on ``parent`` whose tree is ``base_tree`` with ``changes``; its SHA."""
        tree = self._call("create a tree", lambda: self._send(
            "POST", self._repo_path("/git/trees"), {"base_tree": base_tree, "tree": changes}))
        commit = self._call("create a commit", lambda: self._send(
            "POST", self._repo_path("/git/commits"), {"message": message, "tree": tree["sha"], "parents": [parent]}))
        return commit["sha"]

    def _move_branch(self, branch: str, sha: str, *, exists: bool, force: bool) -> None:
        """Point ``branch`` at ``sha``: create it, or move it (``force``: even when not a fast-forward)."""
        if exists:
            path = self._repo_path(f"/git/refs/heads/{quote(branch, safe='/')}")
            self._call(f"update branch {branch}", lambda: self._send("PATCH", path, {"sha": sha, "force": force}))
        else:
            self._call(f"create branch {branch}", lambda: self._send(
                "POST", self._repo_path("/git/refs"), {"ref": f"refs/heads/{branch}", "sha": sha}))

    def _create_pull(self, base: str, branch: str, title: str, body: str) -> int:
        data = self._call(f"open a pull request from {branch}", lambda: self._send(
            "POST", self._repo_path("/pulls"),
            {"title": title, "head": branch, "base": base, "body": clip(body, OUTPUT_LIMIT, "body")}))
        return int(data["number"])


# -- reading the repository ------------------------------------------------------------------------------


class GitHubReader:
    """A pull request's files and the repository's contents at any revision, without cloning."""

    def __init__(self, forge: GitHubForge, cr: ChangeRequest | None):
        self.forge, self.cr = forge, cr
        self._caches = forge.caches

    def changed_files(self, base: str, head: str) -> list[str]:
        """Paths the pull request touches (both names of a rename), from the pull request files API.

        ``head`` is the PR's head, or for a merged PR its merge commit (what the base branch now holds).
        """
        return changed_files_cached(self.cr, head, self._caches.pull_files, self._list_pull_files,
                                    lambda message: GitHubError(None, message), "GitHub", "pull request", "#")

    def _list_pull_files(self) -> list[str]:
        number = self.cr.number
        files = self.forge._call(f"list files of #{number}",
                                 lambda: list(self.forge._repo.get_pull(number).get_files()))
        if len(files) >= FILES_API_CAP:
            raise TooManyFiles(None, f"GitHub: pull request #{number} changes {len(files)} or more files; GitHub "
                                     f"lists only the first {FILES_API_CAP}, so modelherd cannot see every change. "
                                     "Split the pull request.")
        paths = {f.filename for f in files} | {f.previous_filename for f in files if f.previous_filename}
        return sorted(paths)

    def read_many(self, ref: str, paths: list[str]) -> dict[str, bytes | None]:
        """Contents of ``paths`` at ``ref`` (None where absent); at a SHA, each is fetched at most once.

        When many of them are not cached yet, they come out of one archive of the commit (two
        requests, see :meth:`_from_archive`); the rest, or all when the archive is not used, one
        contents request each.
        """
        fetched = self._from_archive(ref, paths)
        return read_cached(self._caches.contents, ref, paths,
                           lambda at, path: fetched[path] if path in fetched else self._read(at, path))

    # -- many files at once: the commit's archive ------------------------------------------------------

    def _from_archive(self, ref: str, paths: list[str]) -> dict[str, bytes | None]:
        """The uncached ``paths`` at commit ``ref`` from its tarball, when there are at least
        ``threshold`` of them and the repository is small enough; ``{}`` otherwise, or when the archive
        is refused (too big, unreadable, GitHub failed): the caller then reads file by file."""
        limits = self.forge.archive_limits
        if not is_sha(ref):
            return {}
        missing = sorted({p for p in paths if (ref, p) not in self._caches.contents})
        if len(missing) < limits.threshold:
            return {}
        try:
            if not self._archive_allowed(limits):
                return {}
            return self._archive(ref, missing, limits).usable()
        except ArchiveTooBig as exc:
            self._caches.archive_hold_off = monotonic() + limits.hold_off
            log.info("%s: %s at %s; reading file by file", self.forge.repo, exc, ref[:12])
        except (ArchiveRefused, GitHubError) as exc:
            log.warning("%s: archive of %s not used (%s); reading file by file", self.forge.repo, ref[:12], exc)
        return {}

    def _archive_allowed(self, limits: ArchiveLimits) -> bool:
        if monotonic() < self._caches.archive_hold_off:
            return False
        if self.forge.size_kb() > limits.max_repo_kb:
            self._caches.archive_hold_off = monotonic() + limits.hold_off
            return False
        return True

    def _archive(self, sha: str, wanted: list[str], limits: ArchiveLimits) -> Extracted:
        """``GET /repos/{o}/{r}/tarball/{sha}`` (PyGithub: paced, retried, token refreshed), then the
        download of the ``Location`` it redirects to, streamed through :func:`extract`."""
        location = self.forge._call(f"ask for the archive of {sha[:12]}",
                                    lambda: self.forge._repo.get_archive_link("tarball", sha))
        try:
            with requests.get(location, headers=self._download_headers(location), stream=True,
                              allow_redirects=False, timeout=limits.read_timeout) as response:
                if response.status_code != 200:
                    raise ArchiveRefused(f"the archive download answered {response.status_code}")
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > limits.max_bytes:
                    raise ArchiveTooBig(f"the archive is {int(declared):,} bytes, over {limits.max_bytes:,}")
                return extract(response.iter_content(64 * 1024), wanted, limits)
        except requests.RequestException as exc:
            raise ArchiveRefused(f"the archive download failed: {type(exc).__name__}: {exc}") from exc

    def _download_headers(self, location: str) -> dict[str, str]:
        """Headers for the archive download. The installation token goes only where the API itself is
        (GHES serves archives from its own host); codeload.github.com gets none — its URL carries its
        own short-lived token. Same rule as requests' redirects (``should_strip_auth``)."""
        requester = self.forge._requester
        headers = {"User-Agent": requester.kwargs.get("user_agent") or "modelherd"}
        if requester.auth is not None and not _strips_auth(requester.base_url, location):
            requester.auth.authentication(headers)
        return headers

    def _read(self, ref: str, path: str) -> bytes | None:
        """One file through the contents API; files over 1 MB through the blob API; 404 → None."""
        try:
            found = self.forge._call(f"read {path} at {ref[:12]}", lambda: self.forge._repo.get_contents(path, ref=ref))
        except GitHubError as exc:
            if exc.status == 404:
                return None
            raise
        if isinstance(found, list) or found.type != "file":
            return None                       # a directory, symlink or submodule is not a file to read
        if found.encoding == "base64":
            return found.decoded_content
        blob = self.forge._call(f"read blob of {path} at {ref[:12]}", lambda: self.forge._repo.get_git_blob(found.sha))
        return base64.b64decode(blob.content) if blob.encoding == "base64" else blob.content.encode("utf-8")

    def list_files(self, ref: str, folder: str) -> list[str]:
        """Files below ``folder`` at ``ref``, from the git trees API (recursive; cached at a SHA)."""
        prefix = folder.strip("/")
        paths = self._caches.trees.get(ref) if is_sha(ref) else None
        if paths is None:
            paths, truncated = self._tree(ref)
            if truncated:                     # over 100,000 entries: list only the folder's own tree
                return sorted(f"{prefix}/{p}" for p in self._folder_tree(ref, prefix))
            if is_sha(ref):
                self._caches.trees.put(ref, paths)
        return sorted(p for p in paths if not prefix or p.startswith(prefix + "/"))

    def _tree(self, tree: str) -> tuple[list[str], bool]:
        """Blob paths of a tree (a commit SHA, ref or tree SHA), recursively; and whether GitHub cut it."""
        found = self.forge._call(f"list files of {tree[:12]}",
                                 lambda: self.forge._repo.get_git_tree(tree, recursive=True))
        return [e.path for e in found.tree if e.type == "blob"], bool(found.truncated)

    def _folder_tree(self, ref: str, folder: str) -> list[str]:
        """Blob paths below ``folder`` (relative to it), walking down one tree per path component."""
        if not folder:
            raise GitHubError(None, f"GitHub: the tree at {ref[:12]} is too large to list recursively")
        tree_sha = ref
        for part in folder.split("/"):
            level = self.forge._call(f"list {part} at {ref[:12]}", lambda: self.forge._repo.get_git_tree(tree_sha))
            entry = next((e for e in level.tree if e.path == part and e.type == "tree"), None)
            if entry is None:
                return []
            tree_sha = entry.sha
        paths, truncated = self._tree(tree_sha)
        if truncated:
            raise GitHubError(None, f"GitHub: {folder} at {ref[:12]} is too large to list recursively")
        return paths


# -- pure mappings -----------------------------------------------------------------------------------------


def to_change_request(pr: dict[str, Any], repo: str) -> ChangeRequest:
    """A pull request's JSON as a :class:`ChangeRequest`."""
    user = pr.get("user") or {}
    base, head = pr["base"], pr["head"]
    base_repo, head_repo = base.get("repo") or {}, head.get("repo") or {}
    login = user.get("login") or "ghost"
    return ChangeRequest(
        repo=base_repo.get("full_name") or repo, number=int(pr["number"]), title=pr.get("title") or "",
        author=login, base_ref=base["ref"], base_sha=base["sha"], head_ref=head["ref"], head_sha=head["sha"],
        state="merged" if pr.get("merged") or pr.get("merged_at") else pr.get("state", "open"),
        url=pr.get("html_url") or "", draft=bool(pr.get("draft")),
        from_fork=(head_repo.get("full_name") or "").lower() != (base_repo.get("full_name") or repo).lower(),
        author_is_bot=user.get("type") == "Bot" or login.endswith("[bot]"),
        labels=tuple(label["name"] for label in pr.get("labels") or []),
        default_branch=base_repo.get("default_branch") or "main",
        merge_sha=pr.get("merge_commit_sha") if pr.get("merged") or pr.get("merged_at") else None,
    )


def check_fields(report: CheckReport) -> dict[str, Any]:
    """The create/update fields of a check run for ``report`` (annotations left to the caller)."""
    fields: dict[str, Any] = {"status": str(report.status)}
    if report.status is CheckStatus.COMPLETED:
        fields["conclusion"] = report.conclusion or "neutral"
    if report.details_url:
        fields["details_url"] = report.details_url
    output = {"title": clip(report.title or report.name, 1000, "title"),
              "summary": clip(report.summary or report.title or report.name, OUTPUT_LIMIT, "summary")}
    if report.text:
        output["text"] = clip(report.text, OUTPUT_LIMIT)
    fields["output"] = output
    return fields


def annotation_json(a: Annotation) -> dict[str, Any]:
    """An annotation as GitHub takes it (columns only on a single line, message within 64 KB)."""
    data = {k: v for k, v in asdict(a).items() if v is not None and k not in ("level", "start_column", "end_column")}
    data["annotation_level"] = a.level
    data["message"] = _clip_bytes(a.message, MESSAGE_LIMIT)
    if a.start_line == a.end_line and a.start_column is not None:
        data["start_column"] = a.start_column
        data["end_column"] = a.end_column if a.end_column is not None else a.start_column
    return data


def _annotations_digest(annotations: list[dict[str, Any]]) -> str | None:
    """What a run's ``external_id`` says of the annotations it was created for (None: none)."""
    if not annotations:
        return None
    text = json.dumps(annotations, sort_keys=True, separators=(",", ":"))
    return "modelherd:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def short(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, ending with an ellipsis when cut (one-line descriptions)."""
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def tree_changes(files: dict[str, str | None], current: dict[str, _Entry]) -> list[dict[str, Any]]:
    """Tree entries turning ``current`` (the files of a tree among ``files``' paths) into ``files``:
    text written inline, ``None`` deleted; files already as wanted are left out."""
    changes: list[dict[str, Any]] = []
    for path, text in sorted(files.items()):
        held = current.get(path)
        mode = held.mode if held else "100644"
        if text is None and held is not None:
            changes.append({"path": path, "mode": mode, "type": "blob", "sha": None})
        elif text is not None and (held is None or held.sha != git_blob_sha(text.encode("utf-8"))):
            changes.append({"path": path, "mode": mode, "type": "blob", "content": text})
    return changes


def _payload(deployment: dict[str, Any]) -> dict[str, Any]:
    """A deployment's payload as a dict (GitHub returns what it was given, an object or a string)."""
    payload = deployment.get("payload")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload or "{}")
        except ValueError:
            return {}
    return payload if isinstance(payload, dict) else {}


def _clip_bytes(text: str, limit: int) -> str:
    raw = text.encode("utf-8")
    return text if len(raw) <= limit else raw[:limit - 64].decode("utf-8", errors="ignore") + "\n… (truncated)"


def _strips_auth(api_url: str, url: str) -> bool:
    """Whether requests would drop credentials sent to ``api_url`` on a redirect to ``url`` (another host,
    port or scheme)."""
    return requests.sessions.SessionRedirectMixin().should_strip_auth(api_url, url)


def _next_link(link: str) -> str | None:
    for part in link.split(","):
        url, _, rel = part.partition(";")
        if 'rel="next"' in rel:
            return url.strip().strip("<>")
    return None


def _message(exc: GithubException) -> str:
    """GitHub's message, with the ``errors`` it lists (where a 422 says what was wrong)."""
    data = exc.data if isinstance(exc.data, dict) else {}
    details = [e.get("message") or e.get("code") for e in data.get("errors") or [] if isinstance(e, dict)]
    message = str(data.get("message") or exc.data or "")
    return "; ".join([message, *(d for d in details if d)])


__all__ = ["GitHubError", "GitHubForge", "GitHubReader", "RepoCaches", "TooManyFiles", "annotation_json",
           "check_fields", "clip", "defuse_mentions", "git_blob_sha", "is_sha", "short", "to_change_request",
           "tree_changes"]
