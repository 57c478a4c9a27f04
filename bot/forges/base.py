"""What the core needs from wherever the repository lives: changed paths and file contents at a revision.

GitHub, GitLab and a local checkout each implement :class:`RevisionReader`; the planner takes one as an
argument and never knows which it got.
"""

from __future__ import annotations

from typing import Protocol


class SourceError(Exception):
    """The repository could not be read (unknown revision, forge unreachable)."""


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
