"""Real git repositories for tests: the example repo on main, and branches that change it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid",
                           "-c", "commit.gpgsign=false", "-C", str(repo), *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def example_repo(path: Path) -> Path:
    """A git repository holding examples/repo on ``main``."""
    shutil.copytree(EXAMPLES / "repo", path)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "models serving today")
    return path


def branch(repo: Path, name: str, files: dict[str, str | None], *, start: str = "main") -> str:
    """Commit ``files`` (text, or None to delete) on a new branch ``name``; returns its SHA."""
    git(repo, "checkout", "-q", "-b", name, start)
    for rel, text in files.items():
        target = repo / rel
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"change on {name}")
    sha = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    return sha


def read(repo: Path, rel: str) -> str:
    return (repo / rel).read_text()
