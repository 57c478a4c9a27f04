"""A local git checkout as a :class:`~modelherd.forges.base.RevisionReader` (the command line's forge).

Reads objects straight from the repository (``git cat-file --batch``), so nothing is checked out and
the working tree is left alone; one process serves all reads of one call, which keeps a plan's cost
proportional to the files the change touches, not to the size of the repository.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from modelherd.forges.base import BranchTip, SourceError


class LocalGit:
    def __init__(self, repo: str | Path):
        self.repo = Path(repo)

    def _git(self, *args: str, input: bytes | None = None) -> bytes:
        try:
            done = subprocess.run(["git", "-C", str(self.repo), *args], input=input,
                                  capture_output=True, check=False)
        except FileNotFoundError as exc:  # pragma: no cover - git is a prerequisite
            raise SourceError("git is not installed") from exc
        if done.returncode != 0:
            raise SourceError(f"git {' '.join(args[:2])}: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout

    def resolve(self, ref: str) -> str:
        """The commit SHA a ref names."""
        return self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()

    def _try(self, *args: str) -> str | None:
        try:
            return self._git(*args).decode().strip() or None
        except SourceError:
            return None

    def default_branch(self) -> str | None:
        """The repository's default branch: the one ``origin/HEAD`` names (the forge's default, as last
        fetched), else the branch ``HEAD`` names in a bare repository, else ``init.defaultBranch``,
        ``main`` or ``master``, whichever exists first; None when none does."""
        remote = self._try("symbolic-ref", "--quiet", "refs/remotes/origin/HEAD")
        if remote:
            return remote.removeprefix("refs/remotes/origin/")
        candidates = []
        if self._try("rev-parse", "--is-bare-repository") == "true":
            candidates.append(self._try("symbolic-ref", "--quiet", "--short", "HEAD") or "")
        candidates += [self._try("config", "init.defaultBranch") or "", "main", "master"]
        for name in candidates:
            if name and (self._try("rev-parse", "--verify", "--quiet", f"refs/heads/{name}^{{commit}}")
                         or self._try("rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{name}^{{commit}}")):
                return name
        return None

    def default_branch_tip(self) -> BranchTip:
        """The default branch and its tip: ``origin/<branch>`` when the remote is known (what the forge
        last said), else the local branch. :class:`SourceError` when there is no default branch."""
        branch = self.default_branch()
        if branch is None:
            raise SourceError(f"{self.repo}: no default branch found (no origin/HEAD, main or master)")
        for ref in (f"refs/remotes/origin/{branch}", f"refs/heads/{branch}"):
            sha = self._try("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
            if sha:
                return BranchTip(branch, sha)
        raise SourceError(f"{self.repo}: the default branch {branch} has no commit")

    def changed_files(self, base: str, head: str) -> list[str]:
        out = self._git("diff", "--name-only", "--no-renames", "-z", f"{base}...{head}", "--")
        return sorted(p for p in out.decode("utf-8", errors="surrogateescape").split("\0") if p)

    def read_many(self, ref: str, paths: list[str]) -> dict[str, bytes | None]:
        if not paths:
            return {}
        commit = self.resolve(ref)
        request = "".join(f"{commit}:{p}\n" for p in paths).encode("utf-8", errors="surrogateescape")
        out = self._git("cat-file", "--batch", input=request)
        result: dict[str, bytes | None] = {}
        pos = 0
        for path in paths:
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            pos = end + 1
            if header[-1] == b"missing" or len(header) < 3:
                result[path] = None
                continue
            kind, size = header[1], int(header[2])
            body = out[pos:pos + size]
            pos += size + 1
            result[path] = body if kind == b"blob" else None
        return result

    def list_files(self, ref: str, folder: str) -> list[str]:
        folder = folder.rstrip("/") or "."
        out = self._git("ls-tree", "-r", "--name-only", "-z", self.resolve(ref), "--", folder)
        return sorted(p for p in out.decode("utf-8", errors="surrogateescape").split("\0") if p)
