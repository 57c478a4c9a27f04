"""The local git reader: the files a change touches and their contents, without a checkout."""

import subprocess

import pytest

from modelherd.forges.base import SourceError
from modelherd.forges.localgit import LocalGit


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo), *args],
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.yaml").write_text("a: 1\n")
    (tmp_path / "models" / "b c.yaml").write_text("b: 1\n")
    git(tmp_path, "add", "-A"); git(tmp_path, "commit", "-qm", "base")
    git(tmp_path, "checkout", "-qb", "change")
    (tmp_path / "models" / "a.yaml").write_text("a: 2\n")
    (tmp_path / "models" / "b c.yaml").unlink()
    (tmp_path / "models" / "new.yaml").write_text("n: 1\n")
    git(tmp_path, "add", "-A"); git(tmp_path, "commit", "-qm", "change")
    git(tmp_path, "checkout", "-q", "main")
    (tmp_path / "unrelated.txt").write_text("x")
    git(tmp_path, "add", "-A"); git(tmp_path, "commit", "-qm", "main moves on")
    return LocalGit(tmp_path)


def test_changed_files_are_against_the_merge_base(repo):
    assert repo.changed_files("main", "change") == ["models/a.yaml", "models/b c.yaml", "models/new.yaml"]


def test_read_many_at_a_revision(repo):
    got = repo.read_many("change", ["models/a.yaml", "models/b c.yaml", "models/new.yaml"])
    assert got == {"models/a.yaml": b"a: 2\n", "models/b c.yaml": None, "models/new.yaml": b"n: 1\n"}
    assert repo.read_many("main", ["models/b c.yaml"]) == {"models/b c.yaml": b"b: 1\n"}


def test_list_files(repo):
    assert repo.list_files("change", "models/") == ["models/a.yaml", "models/new.yaml"]


def test_unknown_revision_is_a_clear_error(repo):
    with pytest.raises(SourceError):
        repo.changed_files("main", "no-such-branch")


def test_default_branch_tip(repo):
    tip = repo.default_branch_tip()
    assert (tip.branch, tip.sha) == ("main", repo.resolve("main"))


def test_default_branch_of_a_clone_is_the_remotes(repo, tmp_path, monkeypatch):
    """A clone follows ``origin/HEAD``, at the tip the remote last said (not a local commit on top)."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    git(repo.repo, "checkout", "-q", "change")
    git(repo.repo, "symbolic-ref", "HEAD", "refs/heads/change")
    origin_main = repo.resolve("main")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--branch", "main", str(repo.repo), str(clone)], check=True)
    git(clone, "remote", "set-head", "origin", "main")
    git(clone, "checkout", "-qb", "work")
    (clone / "local.txt").write_text("x")
    git(clone, "add", "-A"); git(clone, "commit", "-qm", "local")
    git(clone, "branch", "-f", "main", "HEAD")                         # local main ahead of origin's
    tip = LocalGit(clone).default_branch_tip()
    assert (tip.branch, tip.sha) == ("main", origin_main)


def test_no_default_branch_is_a_source_error(repo, monkeypatch):
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    git(repo.repo, "branch", "-m", "main", "trunk")
    assert repo.default_branch() is None
    with pytest.raises(SourceError, match="no default branch"):
        repo.default_branch_tip()
    git(repo.repo, "config", "init.defaultBranch", "trunk")
    assert repo.default_branch_tip().sha == repo.resolve("trunk")
