"""GitLab as a :class:`~modelherd.forges.base.Forge`, on python-gitlab, for one project.

Handlers see only the dataclasses of :mod:`modelherd.forges.base` and plain dicts: every answer of
python-gitlab is taken as JSON (``http_get``/``http_list``/``http_post``/``http_put``) and mapped
here; failures become :class:`GitLabError` (a ``SourceError``) or
:class:`~modelherd.pacing.RateLimited`.

How GitLab's ideas map onto the forge interface (``tests/test_forge_gitlab.py`` holds each):

* **Change request** — a merge request by ``iid``. ``base_sha`` is ``diff_refs.start_sha`` (the
  target branch's tip GitLab diffed against, like a pull request's ``base.sha``); changed files are
  listed against the merge base, as the MR shows them. ``merge_sha`` of a merged MR is its merge
  commit, else its squash commit, else (fast-forward merge) its head.
* **Checks** are commit statuses (``POST /projects/:id/statuses/:sha``), one per ``report.name``.
  GitLab has no annotations: the plan note carries them. GitLab refuses to move a status to the
  state it already has (400 "Cannot transition status"), so a repeated pending/running report is
  skipped (or its 400 taken as done); a completed report always posts (GitLab then keeps the new one).
* **Permissions** (:func:`role_for`): the user's effective access level on the project (inherited
  and shared-group memberships included): Owner (50) → ``admin``, Maintainer (40) → ``maintain``,
  Developer (30) → ``write``, Reporter (20) → ``triage``, Planner (15) / Guest (10) → ``read``,
  Minimal access (5), no membership or a blocked account → ``none``. Commands need ``write``, so
  Developer or above.
* **Teams** ``@group/subgroup`` are GitLab groups by full path; a member (inherited from a parent
  group too) is ``active``, one whose seat awaits an administrator (``membership_state: awaiting``)
  is ``pending``.
* **Reviews** are the MR's approvals (``GET …/approvals``), each an ``APPROVED`` review. GitLab does
  not say which commit an approval was given on, and keeps approvals across pushes unless the
  project resets them, so ``commit_id`` is derived: the head of the newest MR version (``GET
  …/versions``) created strictly before ``approved_at``. An approval without ``approved_at`` gets
  ``commit_id`` None, which never counts as an approval of the head: safe, never stale.
* **Commits** carry git names and e-mails only; a committer's username is found by public e-mail
  (``GET /users?public_email=``), else None — like GitHub's commits by unknown identities.
* **Deployments** are GitLab deployments (``POST /projects/:id/deployments``, created ``running``:
  the API creates no other live state). GitLab keeps neither a description nor a payload on them,
  and one successful deployment per environment is live by construction, so ``inactive`` leaves a
  finished deployment alone and cancels an unfinished one; a decommission stops the environment
  (``POST …/environments/:id/stop``). ``environment_url`` becomes the environment's ``external_url``; ``log_url`` has no place
  (the ``modelherd/rollout`` status links it). ``production`` creates the environment with tier
  ``production``. Idempotency by rollout id: the adapter remembers rollout → deployment, and after a
  restart adopts this bot's newest unfinished (created/running) deployment of the same commit to the
  same environment — the rollout engine runs one rollout per environment at a time.
* **Revert requests**: one ``POST …/repository/commits`` (actions create/update/delete, the branch
  created or rebuilt from the base's SHA in the same request) and one merge request.

Calls are kept to what the work needs: contents and trees at a SHA are cached by (SHA, path); the
MR's file list by (iid, base, head); the note's id, the bot user, user ids and the last status per
(SHA, name) are remembered, so a plan costs one note write and one status write per check.

Retries: python-gitlab's own (``retry_transient_errors``, ``max_retries``): 429 always (GitLab did
not act on the request; ``Retry-After`` honoured), 5xx and connection errors for every method but
``POST`` — a ``POST`` that failed may have created its note — except commit statuses, which are
upserts. A wait longer than ``max_wait`` raises :class:`RateLimited` instead of sleeping, and every
wait holds the pacer key, so every worker using the same token waits.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote, urlsplit

import gitlab
import requests
from gitlab.exceptions import GitlabError
from modelherd.clock import epoch
from modelherd.forges.base import (
    DEPLOYMENT_STATES,
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
from modelherd.pacing import Pacer, RateLimited

log = logging.getLogger(__name__)
T = TypeVar("T")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STATUS_DESCRIPTION_LIMIT = 255   # characters of a commit status's description (and of its target URL)
TITLE_LIMIT = 255                # characters of a merge request's title
NOTE_LIMIT = 1_000_000           # characters of a note (and of an MR description)
PAGE = 100                       # items per page of a list
ROLLOUT_KEY = "modelherd_rollout"
ADOPT_WINDOW = 20                # latest deployments of an environment looked at to adopt an unfinished one
MAX_RETRIES = 3                  # python-gitlab's retries of one request (429, 5xx)
#: Forge reaction names (GitHub's) → GitLab emoji names.
EMOJI = {"+1": "thumbsup", "-1": "thumbsdown", "laugh": "laughing", "confused": "confused", "heart": "heart",
         "hooray": "tada", "rocket": "rocket", "eyes": "eyes"}
#: A check run's conclusion → a commit status state (neutral and skipped pass, as in branch protection).
CONCLUSION_STATES = {"success": "success", "neutral": "success", "skipped": "success", "cancelled": "canceled"}
#: Forge deployment states → GitLab deployment statuses. ``inactive``: a finished deployment stays as it
#: is (GitLab keeps one live deployment per environment by construction); an unfinished one (a rollout
#: cancelled or superseded, a decommission) is ``canceled``, so it does not stay ``running`` for ever.
DEPLOYMENT_STATUS = {"queued": "running", "in_progress": "running", "success": "success", "failure": "failed",
                     "error": "failed", "inactive": "canceled"}
UNFINISHED_DEPLOYMENTS = frozenset({"created", "running"})
_BOT_USERNAME = re.compile(r"(project|group)_\d+_bot(_\w+)?|.*\[bot\]|ghost")


class GitLabError(SourceError):
    """GitLab refused or failed a request; ``status`` is its HTTP status (None: no answer)."""

    def __init__(self, status: int | None, message: str):
        super().__init__(message)
        self.status = status


class TooManyChanges(GitLabError):
    """GitLab cut the merge request's list of changes (``overflow``): modelherd cannot see them all."""


class _Deployment(NamedTuple):
    """What the adapter remembers of a deployment."""

    id: int
    environment: str
    environment_id: int | None
    status: str


class _Status(NamedTuple):
    """The last commit status this adapter posted for a (SHA, name)."""

    state: str
    description: str
    target_url: str | None


# -- pure mappings ---------------------------------------------------------------------------------------


def role_for(access_level: int | None) -> str:
    """A GitLab access level as the forge roles: 50 admin, 40 maintain, 30 write, 20 triage, 10–19 read."""
    level = access_level or 0
    for floor, role in ((50, "admin"), (40, "maintain"), (30, "write"), (20, "triage"), (10, "read")):
        if level >= floor:
            return role
    return "none"


def is_bot_user(user: dict[str, Any] | None) -> bool:
    """Whether a GitLab user is a bot (``bot: true``, or a project/group access token's bot user)."""
    user = user or {}
    return bool(user.get("bot")) or bool(_BOT_USERNAME.fullmatch(user.get("username") or ""))


def to_change_request(mr: dict[str, Any], project: str, default_branch: str) -> ChangeRequest:
    """A merge request's JSON as a :class:`ChangeRequest` (``diff_refs`` must be present)."""
    author = mr.get("author") or {}
    refs = mr.get("diff_refs") or {}
    state = {"opened": "open", "locked": "open"}.get(mr.get("state") or "", mr.get("state") or "open")
    head = mr.get("sha") or refs.get("head_sha")
    merged = state == "merged"
    return ChangeRequest(
        repo=project, number=int(mr["iid"]), title=mr.get("title") or "", author=author.get("username") or "ghost",
        base_ref=mr["target_branch"], base_sha=refs.get("start_sha") or refs["base_sha"],
        head_ref=mr["source_branch"], head_sha=head, state=state, url=mr.get("web_url") or "",
        draft=bool(mr.get("draft") or mr.get("work_in_progress")),
        from_fork=mr.get("source_project_id") != mr.get("target_project_id"),
        author_is_bot=is_bot_user(author), labels=tuple(_label_names(mr.get("labels"))),
        default_branch=default_branch,
        merge_sha=(mr.get("merge_commit_sha") or mr.get("squash_commit_sha") or head) if merged else None,
    )


def _label_names(labels: Any) -> Iterable[str]:
    for label in labels or []:
        yield label["name"] if isinstance(label, dict) else str(label)


def status_state(report: CheckReport) -> str:
    """The commit status state of a check report: pending, running, success, failed or canceled."""
    if report.status is CheckStatus.QUEUED:
        return "pending"
    if report.status is CheckStatus.IN_PROGRESS:
        return "running"
    return CONCLUSION_STATES.get(report.conclusion or "neutral", "failed")


def status_description(report: CheckReport) -> str:
    """One line for the status (GitLab keeps 255 characters): the title, else the summary's first line."""
    text = report.title or next((line for line in report.summary.splitlines() if line.strip()), report.name)
    return _one_line(text, STATUS_DESCRIPTION_LIMIT)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time as GitLab writes it (``2026-01-01T10:00:00.123Z``); None when absent."""
    if not text:
        return None
    return datetime.fromisoformat(text)


def approval_commit(approved_at: datetime | None, versions: list[tuple[datetime, str]]) -> str | None:
    """The head SHA an approval given at ``approved_at`` applies to: that of the newest MR version
    created strictly before it (``versions`` as (created_at, head SHA)); None when unknown."""
    if approved_at is None:
        return None
    earlier = [(created, sha) for created, sha in versions if created < approved_at]
    return max(earlier)[1] if earlier else None


def commit_actions(files: dict[str, str | None], current: dict[str, str]) -> list[dict[str, Any]]:
    """Commit actions turning ``current`` (path → blob SHA, among ``files``' paths) into ``files``:
    text written (create/update), ``None`` deleted; files already as wanted are left out."""
    actions: list[dict[str, Any]] = []
    for path, text in sorted(files.items()):
        held = current.get(path)
        if text is None and held is not None:
            actions.append({"action": "delete", "file_path": path})
        elif text is not None and held is None:
            actions.append({"action": "create", "file_path": path, "content": text})
        elif text is not None and held != git_blob_sha(text.encode("utf-8")):
            actions.append({"action": "update", "file_path": path, "content": text})
    return actions


def retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds GitLab asks to wait (``Retry-After`` seconds or date, else ``RateLimit-Reset``)."""
    now = epoch() if now is None else now
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value)
            return max(0.0, parsed.timestamp() - now) if parsed else None
    reset = headers.get("RateLimit-Reset")
    return max(0.0, float(reset) - now) if reset and reset.isdigit() else None


# -- the client: python-gitlab with pacing and bounded retries ----------------------------------------------


class PacedSession(requests.Session):
    """The HTTP session python-gitlab sends through: asks the pacer before each request, and on a 429
    holds the key for every worker — or, when GitLab asks for longer than ``max_wait``, raises
    :class:`RateLimited` so the queue runs the job later instead of a worker sleeping."""

    def __init__(self, pacer: Pacer | None, pace_key: str, max_wait: float = 30.0):
        super().__init__()
        self.pacer, self.pace_key, self.max_wait = pacer, pace_key, max_wait

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.pacer is not None:
            self.pacer.acquire(self.pace_key, write=method.upper() not in READ_METHODS)
        response = super().request(method, url, *args, **kwargs)
        if response.status_code == 429:
            self._slow_down(response)
        return response

    def _slow_down(self, response: requests.Response) -> None:
        wait = retry_after(response.headers)
        wait = 1.0 if wait is None else wait
        if self.pacer is not None:
            self.pacer.hold(self.pace_key, wait)
        if wait > self.max_wait:
            raise RateLimited(epoch() + wait, f"GitLab rate limit on {urlsplit(response.url).path}")


class GitLabClient(gitlab.Gitlab):
    """python-gitlab with bounded retries: ``max_retries`` per request, and transient errors (5xx,
    timeouts) retried for every method but ``POST`` — commit statuses excepted, they are upserts."""

    def __init__(self, url: str, token: str, *, session: requests.Session, max_retries: int = MAX_RETRIES,
                 timeout: float = 30.0):
        super().__init__(url, private_token=token, session=session, retry_transient_errors=True, timeout=timeout,
                         user_agent="modelherd", keep_base_url=True)
        self.max_retries = max_retries

    def http_request(self, verb: str, path: str, *args: Any, retry_transient_errors: bool | None = None,
                     max_retries: int | None = None, **kwargs: Any) -> requests.Response:
        if retry_transient_errors is None:
            retry_transient_errors = verb.lower() != "post" or "/statuses/" in path
        return super().http_request(verb, path, *args, retry_transient_errors=retry_transient_errors,
                                    max_retries=self.max_retries if max_retries is None else max_retries, **kwargs)


def pace_key(url: str, token: str) -> str:
    """The pacer key of a token on an instance: ``host/<token fingerprint>`` (GitLab limits per user)."""
    return f"{urlsplit(url).netloc}/{hashlib.sha256(token.encode()).hexdigest()[:12]}"


# -- caches shared by every job of a process --------------------------------------------------------------


def _bytes_weight(value: bytes | None) -> int:
    return 64 + (len(value) if value else 0)


@dataclass
class ProjectCaches:
    """What one project's forges remember across jobs (immutable data, and ids of our own objects).

    Ids of notes and deployments are hints: a stale one is detected (404) and searched again.
    """

    contents: LruCache = field(default_factory=lambda: LruCache(32 * 1024 * 1024, _bytes_weight))
    trees: LruCache = field(default_factory=lambda: LruCache(256))          # (sha, folder) → paths
    mr_files: LruCache = field(default_factory=lambda: LruCache(256))       # (iid, base, head) → paths
    note_ids: LruCache = field(default_factory=lambda: LruCache(4096))      # (iid, marker) → note id
    statuses: LruCache = field(default_factory=lambda: LruCache(4096))      # (sha, name) → _Status
    head_refs: LruCache = field(default_factory=lambda: LruCache(1024))     # head sha → source branch
    user_ids: LruCache = field(default_factory=lambda: LruCache(4096))      # username → (id, state) | None
    emails: LruCache = field(default_factory=lambda: LruCache(4096))        # public e-mail → username | None
    deployments: LruCache = field(default_factory=lambda: LruCache(4096))   # id → _Deployment
    rollouts: LruCache = field(default_factory=lambda: LruCache(4096))      # (sha, env, rollout) → id
    environments: LruCache = field(default_factory=lambda: LruCache(256))   # name → (id, external_url)
    facts: dict[str, Any] = field(default_factory=dict)                     # "bot", "default_branch"
    lock: threading.Lock = field(default_factory=threading.Lock)


# -- the forge ------------------------------------------------------------------------------------------


class GitLabForge:
    """One GitLab project (``group/project``), as handlers need it. Built by :class:`GitLabClients`
    (or directly, with any authenticated :class:`GitLabClient`)."""

    def __init__(self, gl: gitlab.Gitlab, project: str, *, caches: ProjectCaches | None = None):
        self.repo = project
        self._gl = gl
        self._base = f"/projects/{quote(project, safe='')}"
        self.caches = caches or ProjectCaches()

    # -- plumbing ---------------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` (python-gitlab calls); its failures as :class:`GitLabError`."""
        try:
            return fn()
        except GitlabError as exc:
            status = getattr(exc, "response_code", None)
            raise GitLabError(status, f"GitLab: {what}: {status or ''} {_message(exc)}".replace("  ", " ")) from exc
        except requests.RequestException as exc:
            raise GitLabError(None, f"GitLab: {what}: {type(exc).__name__}: {exc}") from exc

    def _get(self, what: str, path: str, params: dict[str, Any] | None = None) -> Any:
        """``GET`` a path of the project (``path`` starts with ``/``; absolute when it starts ``//``)."""
        return self._call(what, lambda: self._gl.http_get(self._url(path), query_data=params or {}))

    def _get_or_none(self, what: str, path: str, params: dict[str, Any] | None = None) -> Any:
        """Like :meth:`_get`, but None on 404."""
        try:
            return self._get(what, path, params)
        except GitLabError as exc:
            if exc.status == 404:
                return None
            raise

    def _list(self, what: str, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of a paginated list (``Link: rel="next"``), 100 a page."""
        query = {"per_page": PAGE, **(params or {})}
        return self._call(what, lambda: list(self._gl.http_list(self._url(path), query_data=query, get_all=True)))

    def _send(self, what: str, method: str, path: str, body: dict[str, Any]) -> Any:
        """``POST``/``PUT`` a JSON body; the JSON answer."""
        send = self._gl.http_post if method == "POST" else self._gl.http_put
        return self._call(what, lambda: send(self._url(path), post_data=body))

    def _url(self, path: str) -> str:
        return path[1:] if path.startswith("//") else self._base + path

    # -- facts read once ------------------------------------------------------------------------------

    def bot_user(self) -> dict[str, Any]:
        """The user the token acts as (``GET /user``, once per process): id and username."""
        with self.caches.lock:
            known = self.caches.facts.get("bot")
        if known is None:
            data = self._get("read the token's user", "//user")
            known = {"id": int(data["id"]), "username": data.get("username") or ""}
            with self.caches.lock:
                self.caches.facts["bot"] = known
        return known

    def default_branch(self) -> str:
        """The project's default branch (``GET /projects/:id``, once per process)."""
        with self.caches.lock:
            known = self.caches.facts.get("default_branch")
        if known is None:
            known = self._get(f"read project {self.repo}", "").get("default_branch") or "main"
            with self.caches.lock:
                self.caches.facts["default_branch"] = known
        return known

    def default_branch_tip(self) -> BranchTip:
        """The project's default branch (``GET /projects/:id``, fresh: what :meth:`default_branch`
        remembers is updated) and its tip (``GET /projects/:id/repository/branches/:branch``)."""
        branch = self._get(f"read project {self.repo}", "").get("default_branch") or "main"
        with self.caches.lock:
            self.caches.facts["default_branch"] = branch
        sha = self._branch_sha(branch)
        if sha is None:
            raise GitLabError(404, f"GitLab: the default branch {branch} of {self.repo} was not found")
        return BranchTip(branch, sha)

    # -- merge requests ---------------------------------------------------------------------------------

    def change_request(self, number: int) -> ChangeRequest:
        """The merge request as GitLab says now. While GitLab still prepares a new MR's diff
        (``diff_refs`` null) the target branch's tip stands in for the base."""
        mr = self._get(f"read merge request !{number}", f"/merge_requests/{number}")
        if not mr.get("diff_refs"):
            mr = {**mr, "diff_refs": {"start_sha": self._branch_sha(mr["target_branch"], required=True),
                                      "head_sha": mr.get("sha")}}
        cr = to_change_request(mr, self.repo, self.default_branch())
        if not cr.from_fork:
            self.caches.head_refs.put(cr.head_sha, cr.head_ref)
        return cr

    def reader(self, cr: ChangeRequest | None = None) -> GitLabReader:
        """Reads the MR's changed files and contents at any revision; without an MR, contents only
        (drift detection reads the default branch)."""
        return GitLabReader(self, cr)

    def open_pulls(self) -> list[int]:
        """IIDs of the project's open merge requests."""
        return [int(mr["iid"]) for mr in self._list("list open merge requests", "/merge_requests",
                                                     {"state": "opened"})]

    def reviews(self, number: int) -> list[dict[str, Any]]:
        """The MR's approvals as ``APPROVED`` reviews, oldest first, each bound to the head it was
        given on (see the module notes): user, user_type, state, commit_id, submitted_at, id."""
        data = self._get(f"read approvals of !{number}", f"/merge_requests/{number}/approvals")
        approvals = [a for a in data.get("approved_by") or [] if a.get("user")]
        if not approvals:
            return []
        versions = [(parse_time(v.get("created_at")), v.get("head_commit_sha"))
                    for v in self._list(f"list versions of !{number}", f"/merge_requests/{number}/versions")]
        versions = [(created, sha) for created, sha in versions if created and sha]
        reviews = []
        for approval in approvals:
            user = approval["user"]
            approved_at = parse_time(approval.get("approved_at"))
            reviews.append({"user": user.get("username"), "user_type": "Bot" if is_bot_user(user) else "User",
                            "state": "APPROVED", "commit_id": approval_commit(approved_at, versions),
                            "submitted_at": approval.get("approved_at"), "id": int(user.get("id") or 0)})
        return sorted(reviews, key=lambda r: r["submitted_at"] or "")

    def commits(self, number: int) -> list[dict[str, Any]]:
        """The MR's commits, oldest first like GitHub's (GitLab lists newest first): sha, author and
        committer usernames (found by public e-mail; None when no user shows that address), git names."""
        items = self._list(f"list commits of !{number}", f"/merge_requests/{number}/commits")[::-1]
        return [{"sha": c["id"], "author": self._username_by_email(c.get("author_email")),
                 "committer": self._username_by_email(c.get("committer_email")),
                 "author_name": c.get("author_name"), "committer_name": c.get("committer_name")} for c in items]

    def _username_by_email(self, address: str | None) -> str | None:
        if not address:
            return None
        key = address.lower()
        if key in self.caches.emails:
            return self.caches.emails.get(key)
        found = self._get(f"look up the user of {address}", "//users", {"public_email": address}) or []
        username = next((u.get("username") for u in found
                         if (u.get("public_email") or "").lower() == key), None) if isinstance(found, list) else None
        self.caches.emails.put(key, username)
        return username

    # -- people -----------------------------------------------------------------------------------------

    def permission(self, user: str) -> str:
        """The user's role on the project from their effective access level (see :func:`role_for`)."""
        found = self._user(user)
        if found is None or found[1] not in ("active", None):
            return "none"
        member = self._get_or_none(f"read the access of {user}", f"/members/all/{found[0]}")
        if member is None:
            return "none"
        return role_for(_int(member.get("access_level")))

    def team_membership(self, org: str, team: str, user: str) -> str | None:
        """``active`` or ``pending`` (awaiting a seat) in the group ``org/team`` (``team`` may be empty
        or nested: ``@a/b/c`` is the group ``a/b/c``), inherited membership included; else None."""
        group = f"{org}/{team}".strip("/")
        found = self._user(user)
        if found is None or found[1] not in ("active", None):
            return None
        member = self._get_or_none(f"read {user}'s membership of {group}",
                                   f"//groups/{quote(group, safe='')}/members/all/{found[0]}")
        if member is None:
            return None
        return "pending" if member.get("membership_state") == "awaiting" else "active"

    def _user(self, username: str) -> tuple[int, str | None] | None:
        """(id, account state) of ``username`` (``GET /users?username=``, remembered); None if unknown."""
        key = username.lower()
        if key in self.caches.user_ids:
            return self.caches.user_ids.get(key)
        found = self._get(f"look up user {username}", "//users", {"username": username}) or []
        match = next((u for u in found if (u.get("username") or "").lower() == key), None)
        result = (int(match["id"]), match.get("state")) if match else None
        self.caches.user_ids.put(key, result)
        return result

    # -- notes ------------------------------------------------------------------------------------------

    def create_comment(self, number: int, body: str) -> str:
        """A new note on the merge request; returns its id."""
        data = self._send(f"comment on !{number}", "POST", f"/merge_requests/{number}/notes",
                          {"body": clip(body, NOTE_LIMIT, "comment")})
        return str(data["id"])

    def react(self, number: int, comment_id: int | str, content: str) -> None:
        """Award an emoji (``eyes``, ``+1``… in the forge's names) to a note of merge request ``number``
        (GitLab addresses a note through its MR). Awarding twice is a no-op."""
        if content not in EMOJI:
            raise ValueError(f"unknown reaction {content!r}; one of {sorted(EMOJI)}")
        try:
            self._send(f"react to note {comment_id}", "POST",
                       f"/merge_requests/{number}/notes/{comment_id}/award_emoji", {"name": EMOJI[content]})
        except GitLabError as exc:
            if "already been taken" not in str(exc):
                raise

    def upsert_comment(self, number: int, marker: str, body: str, *, create: bool = True) -> str | None:
        """Edit this bot's note holding ``marker`` on the merge request, or create it; returns its id.

        Notes of anyone else are never touched, even when they quote the marker. ``create=False``
        only edits an existing note (None when there is none).
        """
        if marker not in body:
            body = f"{marker}\n{body}"
        body = clip(body, NOTE_LIMIT, "comment")
        key = (number, marker)
        known = self.caches.note_ids.get(key)
        if known is not None and self._edit_note(number, known, body):
            return str(known)
        found = self._find_note(number, marker)
        if found is not None and self._edit_note(number, found, body):
            self.caches.note_ids.put(key, found)
            return str(found)
        if not create:
            return None
        created = self.create_comment(number, body)
        self.caches.note_ids.put(key, int(created))
        return created

    def _edit_note(self, number: int, note_id: int, body: str) -> bool:
        """PUT the note's body; False if it no longer exists."""
        try:
            self._send(f"edit note {note_id}", "PUT", f"/merge_requests/{number}/notes/{note_id}", {"body": body})
        except GitLabError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _find_note(self, number: int, marker: str) -> int | None:
        """The oldest note of this bot on the merge request that holds ``marker``."""
        bot = self.bot_user()["id"]
        notes = self._list(f"list notes of !{number}", f"/merge_requests/{number}/notes",
                           {"sort": "asc", "order_by": "created_at"})
        for note in notes:
            author = note.get("author") or {}
            if not note.get("system") and author.get("id") == bot and marker in (note.get("body") or ""):
                return int(note["id"])
        return None

    # -- checks: commit statuses ------------------------------------------------------------------------

    def report_check(self, sha: str, report: CheckReport) -> None:
        """Set the commit status ``report.name`` on ``sha`` (skipped when it already says the same)."""
        status = _Status(status_state(report), status_description(report), _short_url(report.details_url))
        key = (sha, report.name)
        if self.caches.statuses.get(key) == status:
            return
        body: dict[str, Any] = {"state": status.state, "name": report.name, "description": status.description}
        if status.target_url:
            body["target_url"] = status.target_url
        ref = self.caches.head_refs.get(sha)
        if ref:
            body["ref"] = ref
        try:
            self._send(f"set status {report.name} on {sha[:12]}", "POST", f"/statuses/{sha}", body)
        except GitLabError as exc:
            if not (exc.status == 400 and "Cannot transition status" in str(exc)
                    and status.state in ("pending", "running")):
                raise
            log.info("%s: status %s on %s is already %s", self.repo, report.name, sha[:12], status.state)
        self.caches.statuses.put(key, status)

    # -- deployments ------------------------------------------------------------------------------------

    def create_deployment(self, ref: str, environment: str, *, description: str, payload: dict[str, Any],
                          production: bool, transient: bool = False) -> str:
        """A GitLab deployment of ``ref`` (a SHA, or a branch) to ``environment``, ``running``; its id.

        GitLab wants the branch a SHA belongs to: ``payload["ref"]`` when given, else the default
        branch. ``description`` has no place on a GitLab deployment (see the module notes).
        """
        sha, branch = self._deploy_target(ref, payload)
        rollout = payload.get(ROLLOUT_KEY)
        key = (sha, environment, rollout)
        if rollout is not None:
            found = self.caches.rollouts.get(key) or self._adopt_deployment(sha, environment)
            if found is not None:
                self.caches.rollouts.put(key, found)
                return str(found)
        self._ensure_environment(environment, production=production, transient=transient)
        data = self._send(f"create a deployment of {sha[:12]} to {environment}", "POST", "/deployments",
                          {"environment": environment, "sha": sha, "ref": branch, "tag": False, "status": "running"})
        deployment = self._remember(data)
        if rollout is not None:
            self.caches.rollouts.put(key, deployment.id)
        return str(deployment.id)

    def set_deployment_status(self, deployment_id: str, state: str, *, description: str = "",
                              environment_url: str | None = None, log_url: str | None = None) -> None:
        """Move the deployment to ``state`` (see :data:`DEPLOYMENT_STATUS`); a state it already has is
        not sent again. ``environment_url`` becomes the environment's external URL."""
        if state not in DEPLOYMENT_STATES:
            raise ValueError(f"unknown deployment state {state!r}; one of {DEPLOYMENT_STATES}")
        current = self._deployment(int(deployment_id))
        status = DEPLOYMENT_STATUS[state]
        if state == "inactive" and current.status not in UNFINISHED_DEPLOYMENTS:
            status = None
        if status is not None and status != current.status:
            try:
                data = self._send(f"set deployment {deployment_id} {status}", "PUT",
                                  f"/deployments/{deployment_id}", {"status": status})
            except GitLabError as exc:
                # GitLab refuses a move to the status the deployment has: an earlier PUT whose answer was
                # lost (or a retry of python-gitlab's own) already made it
                if exc.status != 400 or "Cannot transition" not in str(exc):
                    raise
                data = self._get(f"read deployment {deployment_id}", f"/deployments/{deployment_id}")
                if data.get("status") != status:
                    raise
            current = self._remember(data)
        if environment_url and current.environment_id is not None:
            self._set_external_url(current.environment, current.environment_id, environment_url)

    def _deploy_target(self, ref: str, payload: dict[str, Any]) -> tuple[str, str]:
        """(commit SHA, branch) of a deployment of ``ref``."""
        if is_sha(ref):
            return ref, str(payload.get("ref") or self.default_branch())
        return self._branch_sha(ref, required=True), ref

    def _adopt_deployment(self, sha: str, environment: str) -> int | None:
        """This bot's newest unfinished deployment of ``sha`` to ``environment``, if any."""
        bot = self.bot_user()["id"]
        found = self._call(f"list deployments to {environment}", lambda: self._gl.http_get(
            self._url("/deployments"), query_data={"environment": environment, "order_by": "id", "sort": "desc",
                                                    "per_page": ADOPT_WINDOW}))
        for data in found or []:
            if (data.get("sha") == sha and data.get("status") in UNFINISHED_DEPLOYMENTS
                    and (data.get("user") or {}).get("id") == bot):
                return self._remember(data).id
        return None

    def _ensure_environment(self, name: str, *, production: bool, transient: bool) -> None:
        """Create the environment unless it exists (tier production, or development when transient): once
        per process."""
        if name in self.caches.environments:
            return
        found = self._get(f"look up environment {name}", "/environments", {"name": name}) or []
        env = next((e for e in found if e.get("name") == name), None)
        if env is None:
            body = {"name": name}
            if production or transient:               # otherwise GitLab guesses the tier from the name
                body["tier"] = "production" if production else "development"
            env = self._send(f"create environment {name}", "POST", "/environments", body)
        self.caches.environments.put(name, (int(env["id"]), env.get("external_url")))

    def retire_environment(self, environment: str) -> None:
        """Stop the environment (GitLab lists it under *Stopped*); one that does not exist or is stopped
        already is left as it is."""
        found = self._get(f"look up environment {environment}", "/environments", {"name": environment}) or []
        env = next((e for e in found if e.get("name") == environment), None)
        if env is None or env.get("state") == "stopped":
            return
        self._send(f"stop environment {environment}", "POST", f"/environments/{int(env['id'])}/stop", {})

    def _set_external_url(self, name: str, environment_id: int, url: str) -> None:
        known = self.caches.environments.get(name)
        if known is not None and known[1] == url:
            return
        self._send(f"set the URL of environment {name}", "PUT", f"/environments/{environment_id}",
                   {"external_url": url})
        self.caches.environments.put(name, (environment_id, url))

    def _remember(self, data: dict[str, Any]) -> _Deployment:
        env = data.get("environment") or {}
        deployment = _Deployment(int(data["id"]), env.get("name") or "", _int(env.get("id")), data.get("status") or "")
        self.caches.deployments.put(deployment.id, deployment)
        return deployment

    def _deployment(self, deployment_id: int) -> _Deployment:
        known = self.caches.deployments.get(deployment_id)
        if known is not None:
            return known
        return self._remember(self._get(f"read deployment {deployment_id}", f"/deployments/{deployment_id}"))

    # -- revert merge requests --------------------------------------------------------------------------

    def open_revert_pull(self, base: str, files: dict[str, str | None], *, branch: str, title: str,
                         body: str) -> int:
        """A merge request into ``base`` from ``branch``, whose one commit on ``base``'s head writes
        ``files`` (None deletes); its iid. Idempotent, see :meth:`Forge.open_revert_pull`."""
        title = clip(defuse_mentions(title), TITLE_LIMIT, "title")
        try:
            return self._open_revert(base, files, branch, title, body)
        except GitLabError as exc:
            if exc.status not in (400, 409) or "already exists" not in str(exc):
                raise
        return self._open_revert(base, files, branch, title, body)     # lost a race for the branch: once more

    def _open_revert(self, base: str, files: dict[str, str | None], branch: str, title: str, body: str) -> int:
        head = self._branch_sha(branch)
        number = self._open_mr(branch, base) if head else None
        start = head if number is not None else self._branch_sha(base, required=True)
        actions = commit_actions(files, self._blob_ids(start, list(files)))
        if actions:
            commit: dict[str, Any] = {"branch": branch, "commit_message": title, "actions": actions}
            if number is None:                 # a new branch, or a stale one rebuilt: from base's SHA
                commit.update(start_sha=start, force=head is not None)
            self._send(f"commit to {branch}", "POST", "/repository/commits", commit)
        elif number is None:
            raise NothingToRevert(f"{base} of {self.repo} already holds these contents: nothing to revert")
        return number if number is not None else self._create_mr(base, branch, title, body)

    def _branch_sha(self, branch: str, *, required: bool = False) -> str | None:
        """The commit a branch points at; None when there is no such branch (unless ``required``)."""
        data = self._get_or_none(f"read branch {branch}", f"/repository/branches/{quote(branch, safe='')}")
        if data is None and required:
            raise GitLabError(404, f"GitLab: branch {branch} not found in {self.repo}")
        return data["commit"]["id"] if data else None

    def _open_mr(self, branch: str, base: str) -> int | None:
        found = self._get(f"find the merge request of {branch}", "/merge_requests",
                          {"state": "opened", "source_branch": branch, "target_branch": base, "per_page": 1})
        return int(found[0]["iid"]) if found else None

    def _blob_ids(self, commit: str, paths: list[str]) -> dict[str, str]:
        """Blob SHAs of those of ``paths`` that are files at ``commit``: one tree listing per folder."""
        found: dict[str, str] = {}
        for folder in sorted({p.rpartition("/")[0] for p in paths}):
            params = {"ref": commit, **({"path": folder} if folder else {})}
            try:
                entries = self._list(f"list {folder or '/'} at {commit[:12]}", "/repository/tree", params)
            except GitLabError as exc:
                if exc.status != 404:
                    raise
                entries = []
            found.update({e["path"]: e["id"] for e in entries if e.get("type") == "blob"})
        return {p: found[p] for p in paths if p in found}

    def _create_mr(self, base: str, branch: str, title: str, body: str) -> int:
        data = self._send(f"open a merge request from {branch}", "POST", "/merge_requests",
                          {"source_branch": branch, "target_branch": base, "title": title,
                           "description": clip(body, NOTE_LIMIT, "description"), "remove_source_branch": True})
        return int(data["iid"])


# -- reading the repository ------------------------------------------------------------------------------


class GitLabReader:
    """A merge request's files and the project's contents at any revision, without cloning."""

    def __init__(self, forge: GitLabForge, cr: ChangeRequest | None):
        self.forge, self.cr = forge, cr
        self._caches = forge.caches

    def changed_files(self, base: str, head: str) -> list[str]:
        """Paths the merge request touches (both names of a rename), from its diffs.

        ``head`` is the MR's head, or for a merged MR the commit the merge left on the target.
        """
        return changed_files_cached(self.cr, head, self._caches.mr_files, self._list_changes,
                                    lambda message: GitLabError(None, message), "GitLab", "merge request", "!")

    def _list_changes(self) -> list[str]:
        """Old and new paths of every diff (``…/diffs``, paginated; ``…/changes`` before GitLab 15.7)."""
        number = self.cr.number
        try:
            diffs = self.forge._list(f"list diffs of !{number}", f"/merge_requests/{number}/diffs")
        except GitLabError as exc:
            if exc.status != 404:
                raise
            diffs = self._changes()
        return sorted({d["new_path"] for d in diffs} | {d["old_path"] for d in diffs})

    def _changes(self) -> list[dict[str, Any]]:
        number = self.cr.number
        data = self.forge._get(f"list changes of !{number}", f"/merge_requests/{number}/changes")
        if data.get("overflow"):
            raise TooManyChanges(None, f"GitLab: merge request !{number} changes more files than GitLab lists; "
                                       "modelherd cannot see every change. Split the merge request.")
        return data.get("changes") or []

    def read_many(self, ref: str, paths: list[str]) -> dict[str, bytes | None]:
        """Contents of ``paths`` at ``ref`` (None where absent); at a SHA, each is fetched at most once."""
        return read_cached(self._caches.contents, ref, paths, self._read)

    def _read(self, ref: str, path: str) -> bytes | None:
        """One file through the raw file API; 404 → None."""
        forge = self.forge
        url = forge._url(f"/repository/files/{quote(path, safe='')}/raw")
        try:
            response = forge._call(f"read {path} at {ref[:12]}",
                                   lambda: forge._gl.http_get(url, query_data={"ref": ref}, raw=True))
        except GitLabError as exc:
            if exc.status == 404:
                return None
            raise
        return response.content

    def list_files(self, ref: str, folder: str) -> list[str]:
        """Files below ``folder`` at ``ref``, from the tree API (recursive, paginated; cached at a SHA)."""
        prefix = folder.strip("/")
        key = (ref, prefix)
        paths = self._caches.trees.get(key) if is_sha(ref) else None
        if paths is None:
            params = {"ref": ref, "recursive": True, **({"path": prefix} if prefix else {})}
            try:
                entries = self.forge._list(f"list {prefix or '/'} at {ref[:12]}", "/repository/tree", params)
            except GitLabError as exc:
                if exc.status != 404:            # GitLab answers 404 for a folder that does not exist
                    raise
                entries = []
            paths = sorted(e["path"] for e in entries if e.get("type") == "blob")
            if is_sha(ref):
                self._caches.trees.put(key, paths)
        return list(paths)


# -- clients shared by a process ------------------------------------------------------------------------


class GitLabClients:
    """One python-gitlab client per process for the configured instance and token, and one cache per
    project; :meth:`forge` builds the forge a job uses (no request)."""

    def __init__(self, url: str, token: str, *, pacer: Pacer | None = None, max_wait: float = 30.0,
                 max_retries: int = MAX_RETRIES, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.pace_key = pace_key(self.url, token)
        session = PacedSession(pacer, self.pace_key, max_wait)
        self.client = GitLabClient(self.url, token, session=session, max_retries=max_retries, timeout=timeout)
        self._caches: dict[str, ProjectCaches] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any, *, pacer: Pacer | None = None) -> GitLabClients:
        """Clients for ``Settings.gitlab`` (url, token)."""
        return cls(settings.url, settings.token.get_secret_value(), pacer=pacer)

    def forge(self, project: str) -> GitLabForge:
        """The forge of ``project`` (its full path, ``group/project``)."""
        with self._lock:
            caches = self._caches.setdefault(project.lower(), ProjectCaches())
        return GitLabForge(self.client, project, caches=caches)

    def close(self) -> None:
        self.client.session.close()


def _short_url(url: str | None) -> str | None:
    """``url`` when GitLab can keep it (255 characters), else None (a cut URL would lead nowhere)."""
    return url if url and len(url) <= STATUS_DESCRIPTION_LIMIT else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _message(exc: GitlabError) -> str:
    """GitLab's message (``{"message": …}`` may be a string, a list or a dict of field errors)."""
    message = getattr(exc, "error_message", None) or str(exc)
    if isinstance(message, dict):
        return "; ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in message.items())
    if isinstance(message, list):
        return "; ".join(map(str, message))
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)


__all__ = ["GitLabClient", "GitLabClients", "GitLabError", "GitLabForge", "GitLabReader", "PacedSession",
           "ProjectCaches", "TooManyChanges", "approval_commit", "commit_actions", "is_bot_user", "pace_key",
           "retry_after", "role_for", "status_description", "status_state", "to_change_request"]
