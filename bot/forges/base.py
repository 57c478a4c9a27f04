"""What the core needs from wherever a repository lives.

:class:`RevisionReader` (changed paths, file contents at a revision) is what the planner reads through;
GitHub, GitLab and a local checkout each implement it, and the planner never knows which it got.
:class:`Forge` adds what handlers need from a pull/merge request: the request itself, one sticky
comment and the checks; and what rollouts need: deployments per environment and revert requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class SourceError(Exception):
    """The repository could not be read (unknown revision, forge unreachable)."""


class NothingToRevert(SourceError):
    """A revert change request was asked for, but the target branch already holds those contents."""


class RevisionReader(Protocol):
    def changed_files(self, base: str, head: str) -> list[str]:
        """Paths the change from ``base`` to ``head`` touches (added, modified, deleted, renamed: both
        names), as a pull request shows them: against the merge base of the two."""
        ...

    def read_many(self, ref: str, paths: list[str]) -> dict[str, bytes | None]:
        """The contents of ``paths`` at ``ref``; ``None`` for a path that does not exist there."""
        ...

    def list_files(self, ref: str, folder: str) -> list[str]:
        """Files below ``folder`` at ``ref`` (recursively), as repository paths."""
        ...


# --------------------------------------------------------------------------------------------------
# The forge: pull/merge requests, comments, checks. One instance serves one repository, already
# authenticated; handlers receive it and never build one. GitHub and GitLab implement it.


DEPLOYMENT_STATES = ("queued", "in_progress", "success", "failure", "error", "inactive")


class CheckStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


@dataclass(frozen=True)
class BranchTip:
    """A branch and the commit at its tip, as the forge said when asked."""

    branch: str
    sha: str

    def __str__(self) -> str:
        return f"{self.branch}@{self.sha[:7]}"


@dataclass(frozen=True)
class ChangeRequest:
    """A pull request (GitHub) or merge request (GitLab), in forge-neutral terms."""

    repo: str                     # "acme/models" (GitLab: the project's full path)
    number: int                   # PR number / MR iid
    title: str
    author: str
    base_ref: str                 # target branch name
    base_sha: str                 # target branch tip the forge reports
    head_ref: str
    head_sha: str
    state: str                    # open | closed | merged
    url: str = ""
    draft: bool = False
    from_fork: bool = False
    author_is_bot: bool = False
    labels: tuple[str, ...] = ()
    default_branch: str = "main"
    merge_sha: str | None = None  # the commit the merge made on the base branch (merged PRs only)

    def facts(self) -> dict:
        """What policies see as ``input.pr``."""
        return {"number": self.number, "author": self.author, "title": self.title, "base_ref": self.base_ref,
                "head_sha": self.head_sha, "labels": list(self.labels), "draft": self.draft,
                "from_fork": self.from_fork}


@dataclass(frozen=True)
class Annotation:
    """A remark on a line of a file, shown beside the diff (GitHub check-run annotations)."""

    path: str
    start_line: int
    end_line: int
    level: str                    # failure | warning | notice
    message: str
    title: str | None = None
    start_column: int | None = None
    end_column: int | None = None


@dataclass(frozen=True)
class CheckReport:
    """The state of one check (``modelherd/plan``...) on one commit."""

    name: str
    status: CheckStatus
    conclusion: str | None = None       # success | failure | neutral | action_required | ... (when completed)
    title: str = ""
    summary: str = ""
    text: str = ""
    annotations: tuple[Annotation, ...] = field(default_factory=tuple)
    details_url: str | None = None


class Forge(Protocol):
    """What handlers need from the place a repository lives."""

    repo: str

    def change_request(self, number: int) -> ChangeRequest:
        """The PR/MR as the forge says now (never trust a webhook payload's copy)."""
        ...

    def default_branch_tip(self) -> BranchTip:
        """The repository's default branch and the commit at its tip, as the forge says now (never a
        webhook payload's copy). The rules — ``.modelherd.yaml`` and the repository's policies — and
        protection are read there: a handler resolves it once per event and passes it down."""
        ...

    def reader(self, cr: ChangeRequest | None = None) -> RevisionReader:
        """Reads the PR's changed files and file contents at any revision, without cloning; without a
        PR, contents only (``changed_files`` is refused)."""
        ...

    def upsert_comment(self, number: int, marker: str, body: str, *, create: bool = True) -> str | None:
        """Edit in place the one comment of this bot holding ``marker``, or create it (unless
        ``create`` is false); returns its id, or None when there was none to edit."""
        ...

    def open_pulls(self) -> list[int]:
        """Numbers of the repository's open pull/merge requests."""
        ...

    def create_comment(self, number: int, body: str) -> str:
        """A new comment on the PR/MR (command replies)."""
        ...

    def react(self, number: int, comment_id: int | str, content: str) -> None:
        """React to comment ``comment_id`` of PR/MR ``number`` (``eyes`` on receipt of a command)."""
        ...

    def permission(self, user: str) -> str:
        """The user's access: admin | maintain | write | triage | read | none."""
        ...

    def reviews(self, number: int) -> list[dict]:
        """Reviews as dicts: user, user_type, state (upper case), commit_id, submitted_at, id."""
        ...

    def team_membership(self, org: str, team: str, user: str) -> str | None:
        """``active`` or ``pending``, or None when the user is not in the team."""
        ...

    def commits(self, number: int) -> list[dict]:
        """The PR's commits as dicts with ``author`` and ``committer`` logins."""
        ...

    def report_check(self, sha: str, report: CheckReport) -> None:
        """Create or update the check named ``report.name`` on ``sha`` (idempotent)."""
        ...


    # -- rollouts -------------------------------------------------------------------------------

    def create_deployment(self, ref: str, environment: str, *, description: str, payload: dict,
                          production: bool, transient: bool = False) -> str:
        """Record that ``ref`` (a commit SHA, usually) is being deployed to ``environment``; returns
        the deployment's id.

        modelherd has already checked everything, so the forge must not gate or merge anything
        itself. ``production``: end users reach this environment; ``transient``: the environment
        goes away with the deployment (a preview). Idempotent: when ``payload`` holds a
        ``modelherd_rollout`` id and a deployment of ``ref`` to ``environment`` with that id
        already exists, its id is returned and nothing new is created. Long descriptions are clipped
        to what the forge keeps.
        """
        ...

    def set_deployment_status(self, deployment_id: str, state: str, *, description: str = "",
                              environment_url: str | None = None, log_url: str | None = None) -> None:
        """Add a state to a deployment: one of :data:`DEPLOYMENT_STATES` (queued, in_progress,
        success, failure, error, inactive), with where the environment can be reached and where the
        rollout's log is. On ``success`` the environment's earlier successful deployments become
        inactive, so the forge shows one live deployment per environment.
        """
        ...

    def retire_environment(self, environment: str) -> None:
        """Nothing serves in ``environment`` any more (a decommission finished): the forge stops showing
        it as live (GitHub: its successful deployments become inactive; GitLab: the environment is
        stopped). Idempotent; an environment the forge never saw is fine."""
        ...

    def open_revert_pull(self, base: str, files: dict[str, str | None], *, branch: str, title: str,
                         body: str) -> int:
        """Open a change request into ``base`` from a new ``branch`` holding one commit on ``base``'s
        head that writes ``files`` (text; ``None`` deletes the path); returns its number (PR number /
        MR iid).

        Idempotent: when ``branch`` already has an open request, that request's number is returned,
        and the branch gets a new commit only if its contents differ from ``files``. A stale branch
        without an open request is rebuilt from ``base``. Raises :class:`NothingToRevert` when
        ``base`` already holds ``files``. Escaping ``title`` and ``body`` is the caller's job; the
        forge still never lets the title mention anyone.
        """
        ...
