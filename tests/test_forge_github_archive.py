"""Big pull requests read their manifests out of one archive per commit (``GET .../tarball/{sha}``, then
the download it redirects to) instead of one contents request per file; small ones, over-size archives
and big repositories still read file by file. Counted on the fake GitHub (github.com and GHES 3.19),
which serves real ``.tar.gz`` archives of its commits."""

from __future__ import annotations

import gzip
import io
import re
import tarfile

import pytest

import modelherd.forges.github as adapter
from modelherd.forges.archive import ArchiveLimits, ArchiveRefused, ArchiveTooBig, extract, repo_path
from tests.fakes.github import CODELOAD_TEMPLATE, FakeGitHub
from tests.test_forge_github import World, both_flavors, plan_sequence

TARBALL = "/repos/{owner}/{repo}/tarball/{ref}"
CONTENTS = "/repos/{owner}/{repo}/contents/{path}"
NO_ARCHIVES = ArchiveLimits(threshold=10**9)


def manifests(n: int) -> list[str]:
    return [f"models/m{i}.yaml" for i in range(n)]


def archive_calls(fake: FakeGitHub) -> tuple[int, int, int]:
    """(tarball redirects, archive downloads, contents reads) the fake served."""
    return (len(fake.calls_to("GET", TARBALL)), len(fake.calls_to("GET", CODELOAD_TEMPLATE)),
            len(fake.calls_to("GET", CONTENTS)))


def reader_at(world: World, limits: ArchiveLimits | None = None):
    """A reader of the world's pull request through a forge with its own (empty) caches."""
    from modelherd.forges.github import RepoCaches

    forge = world.clients.forge(world.installation, world.repo)
    forge.caches = RepoCaches()
    forge.archive_limits = limits or ArchiveLimits()
    return forge.reader(forge.change_request(world.number))


# -- what a pull request costs ---------------------------------------------------------------------------


@both_flavors
def test_fifty_manifests_come_from_one_archive_per_side(fake_github: FakeGitHub) -> None:
    world = World(fake_github, 50)
    fake_github.reset_calls()
    plan_sequence(world.forge(), world.number)
    # base and head: one redirect and one download each; the config and 2 policies on their own
    assert archive_calls(fake_github) == (2, 2, 3)
    reads, _ = world.counts()
    assert reads == 13                                  # file by file: 2 per manifest + 9

    head = reader_at(world).read_many(world.head, manifests(50) + ["models/absent.yaml"])
    assert head == {**{p: f"name: m{i}\nreplicas: 2\n".encode() for i, p in enumerate(manifests(50))},
                    "models/absent.yaml": None}


@both_flavors
def test_archive_reads_equal_per_file_reads(fake_github: FakeGitHub) -> None:
    world = World(fake_github, 12)
    big = b"x: " + b"y" * (1536 * 1024) + b"\n"            # over 1 MB: the contents API sends no content
    head = fake_github.push_to_pull(world.repo, world.number, {"models/big.yaml": big, "models/m3.yaml": None})
    wanted = manifests(12) + ["models/big.yaml", "models", "policies/README.md", "nowhere/x.yaml"]
    fake_github.reset_calls()
    from_archive = reader_at(world).read_many(head, wanted)
    assert archive_calls(fake_github) == (1, 1, 0)
    assert from_archive["models/big.yaml"] == big and from_archive["models/m3.yaml"] is None
    assert from_archive["models"] is None                 # a directory is not a file, as before
    # the same files file by file (the big one through the blob API, see test_forge_github)
    small = [p for p in wanted if p != "models/big.yaml"]
    fake_github.reset_calls()
    assert reader_at(world, NO_ARCHIVES).read_many(head, small) == {p: from_archive[p] for p in small}
    assert archive_calls(fake_github) == (0, 0, len(small))


@both_flavors
def test_small_pull_request_reads_file_by_file(fake_github: FakeGitHub) -> None:
    world = World(fake_github, 4)
    fake_github.reset_calls()
    plan_sequence(world.forge(), world.number)
    assert archive_calls(fake_github) == (0, 0, 1 + 2 * 4 + 2)
    assert world.counts()[0] == 2 * 4 + 9


@both_flavors
def test_cached_files_do_not_count_towards_the_threshold(fake_github: FakeGitHub) -> None:
    world = World(fake_github, 12)
    reader = reader_at(world)
    reader.read_many(world.head, manifests(5))
    fake_github.reset_calls()
    got = reader.read_many(world.head, manifests(12))     # 7 uncached: below 10, file by file
    assert archive_calls(fake_github) == (0, 0, 7)
    assert got["models/m11.yaml"] == b"name: m11\nreplicas: 2\n"


def test_branch_names_are_read_file_by_file(fake_github: FakeGitHub) -> None:
    """Only contents at a SHA are cached; a branch's archive would be fetched anew on every read."""
    world = World(fake_github, 12)
    fake_github.reset_calls()
    reader_at(world).read_many("main", manifests(12))
    assert archive_calls(fake_github) == (0, 0, 12)


# -- where archives are not used ----------------------------------------------------------------------------


@both_flavors
def test_archive_over_the_cap_falls_back_to_file_by_file(fake_github: FakeGitHub) -> None:
    world = World(fake_github, 30)
    limits = ArchiveLimits(max_bytes=512)                # the fake's archive of 30 manifests is bigger
    reader = reader_at(world, limits)
    fake_github.reset_calls()
    got = reader.read_many(world.head, manifests(30))
    assert got == {p: f"name: m{i}\nreplicas: 2\n".encode() for i, p in enumerate(manifests(30))}
    assert archive_calls(fake_github) == (1, 1, 30)
    # the repository holds off archives for a while: the base side goes straight to per-file reads
    fake_github.reset_calls()
    reader.read_many(world.base, manifests(30))
    assert archive_calls(fake_github) == (0, 0, 30)


@both_flavors
def test_big_repository_is_not_archived(fake_github: FakeGitHub) -> None:
    world = World(fake_github, 12)
    fake_github.state.repos["acme/models"].size_kb = 200 * 1024         # 200 MB of history
    reader = reader_at(world)                            # the pull request told the size: no extra read
    fake_github.reset_calls()
    assert reader.read_many(world.head, manifests(12))["models/m0.yaml"] == b"name: m0\nreplicas: 2\n"
    assert archive_calls(fake_github) == (0, 0, 12)
    assert not fake_github.calls_to("GET", "/repos/{owner}/{repo}")


def test_size_is_read_once_without_a_pull_request(fake_github: FakeGitHub) -> None:
    """Drift reads contents without a pull request: the size costs one ``GET /repos``, then is kept."""
    from modelherd.forges.github import RepoCaches

    world = World(fake_github, 12)
    forge = world.forge()
    forge.caches = RepoCaches()
    reader = forge.reader()
    fake_github.reset_calls()
    reader.read_many(world.base, manifests(12))
    reader.read_many(world.head, manifests(12))
    assert len(fake_github.calls_to("GET", "/repos/{owner}/{repo}")) == 1
    assert archive_calls(fake_github) == (2, 2, 0)


@both_flavors
def test_oversized_member_is_read_on_its_own(fake_github: FakeGitHub) -> None:
    world = World(fake_github, 12)
    big = b"x: " + b"y" * 4096 + b"\n"
    head = fake_github.push_to_pull(world.repo, world.number, {"models/m0.yaml": big})
    fake_github.reset_calls()
    got = reader_at(world, ArchiveLimits(max_member=1024)).read_many(head, manifests(12))
    assert got["models/m0.yaml"] == big and got["models/m1.yaml"] == b"name: m1\nreplicas: 2\n"
    assert archive_calls(fake_github) == (1, 1, 1)
    assert fake_github.calls_to("GET", CONTENTS)[0].path.endswith("/models/m0.yaml")


def test_failed_download_falls_back_to_file_by_file(fake_github: FakeGitHub) -> None:
    world = World(fake_github, 12)
    fake_github.fail_next(6, status=502, match=lambda method, path: "/tarball/" in path)
    fake_github.reset_calls()
    got = reader_at(world).read_many(world.head, manifests(12))
    assert got["models/m7.yaml"] == b"name: m7\nreplicas: 2\n"
    assert archive_calls(fake_github)[1:] == (0, 12)


# -- who gets the token ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fake_github", ["github.com"], indirect=True)
def test_codeload_on_another_host_never_sees_the_token(fake_github: FakeGitHub) -> None:
    world = World(fake_github, 12)
    fake_github.reset_calls()
    reader_at(world).read_many(world.head, manifests(12))
    redirect, = fake_github.calls_to("GET", TARBALL)
    download, = fake_github.calls_to("GET", CODELOAD_TEMPLATE)
    assert redirect.login == "modelherd[bot]"
    assert download.host.startswith("localhost:") and download.authorization is None


@pytest.mark.parametrize("fake_github", ["ghes-3.19"], indirect=True)
def test_ghes_serves_the_archive_from_its_own_host(fake_github: FakeGitHub) -> None:
    world = World(fake_github, 12)
    fake_github.reset_calls()
    reader_at(world).read_many(world.head, manifests(12))
    download, = fake_github.calls_to("GET", CODELOAD_TEMPLATE)
    assert download.host == fake_github.host_url.removeprefix("http://")
    assert (download.authorization or "").startswith("token ghs_")


@both_flavors
def test_private_repository_archive_comes_with_the_redirects_token(fake_github: FakeGitHub) -> None:
    world = World(fake_github, 12)
    fake_github.state.repos["acme/models"].private = True
    fake_github.reset_calls()
    got = reader_at(world).read_many(world.head, manifests(12))
    assert got["models/m0.yaml"] == b"name: m0\nreplicas: 2\n"
    download, = fake_github.calls_to("GET", CODELOAD_TEMPLATE)
    assert download.status == 200 and download.query.get("token")


# -- hostile archives ----------------------------------------------------------------------------------------


def _member(name: str, data: bytes | None = None, *, kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data or b"")
    return info, data


@both_flavors
def test_traversal_and_link_members_are_ignored(fake_github: FakeGitHub) -> None:
    world = World(fake_github, 12)
    evil = b"name: evil\n"
    fake_github.archive_extras = [
        _member("{top}/../models/m0.yaml", evil),               # climbs out of the top folder
        _member("{top}/models/../models/m1.yaml", evil),        # a '..' inside
        _member("/etc/models/m2.yaml", evil),                   # absolute
        _member("./{top}/models/m3.yaml", evil),                # a '.' component
        _member("other-top/models/m4.yaml", evil),              # another tree
        _member("{top}/models/m5.yaml", kind=tarfile.SYMTYPE, link="../../../etc/passwd"),
        _member("{top}/models/link.yaml", kind=tarfile.SYMTYPE, link="m6.yaml"),
        _member("{top}/models/hard.yaml", kind=tarfile.LNKTYPE, link="{top}/models/m6.yaml"),
    ]
    wanted = manifests(12) + ["models/link.yaml", "models/hard.yaml", "etc/models/m2.yaml"]
    fake_github.reset_calls()
    got = reader_at(world).read_many(world.head, wanted)
    assert archive_calls(fake_github) == (1, 1, 0)
    assert got == {**{p: f"name: m{i}\nreplicas: 2\n".encode() for i, p in enumerate(manifests(12))},
                   "models/link.yaml": None, "models/hard.yaml": None, "etc/models/m2.yaml": None}


def _targz(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _chunks(data: bytes, size: int = 1000) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_gzip_bomb_stops_at_the_unpacked_limit() -> None:
    bomb = _targz([("top/zeros.bin", bytes(4 * 1024 * 1024)), ("top/a.yaml", b"a: 1\n")])
    assert len(bomb) < 10_000
    with pytest.raises(ArchiveTooBig, match="unpacks to over"):
        extract(_chunks(bomb), ["a.yaml"], ArchiveLimits(max_unpacked=1024 * 1024))
    assert extract(_chunks(bomb), ["a.yaml"], ArchiveLimits()).files == {"a.yaml": b"a: 1\n"}


def test_damaged_or_cut_archives_are_refused() -> None:
    good = _targz([("top/a.yaml", b"a: 1\n" * 2000)])
    with pytest.raises(ArchiveRefused, match="unreadable"):
        extract([b"<html>not an archive</html>"], ["a.yaml"], ArchiveLimits())
    with pytest.raises(ArchiveRefused, match="unreadable"):
        extract(_chunks(good[: len(good) // 2]), ["a.yaml"], ArchiveLimits())
    plain = gzip.compress(b"just text, no tar")
    with pytest.raises(ArchiveRefused):
        extract([plain], ["a.yaml"], ArchiveLimits())


def test_member_names_map_to_repository_paths() -> None:
    assert repo_path("acme-models-abc1234/models/a.yaml") == ("acme-models-abc1234", "models/a.yaml")
    assert repo_path("acme-models-abc1234/models/") == ("acme-models-abc1234", "models")
    for unsafe in ("acme-models-abc1234", "/abs/a.yaml", "top/../a.yaml", "top/./a.yaml", "top//a.yaml",
                   "top\\..\\a.yaml", "../a.yaml", ""):
        assert repo_path(unsafe) is None, unsafe


# -- the whole app --------------------------------------------------------------------------------------------


@both_flavors
def test_fifty_manifest_pr_gets_the_same_comment_for_far_fewer_reads(fake_github: FakeGitHub, tmp_path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """What a user sees is unchanged; what GitHub sees drops from ~109 reads to a constant dozen."""
    from bench.github_calls import Bench, _registry
    from tests.github_app import GitHubApp

    seen = {}
    for mode, limits in (("per-file", NO_ARCHIVES), ("archive", ArchiveLimits())):
        monkeypatch.setattr(adapter, "ARCHIVE_LIMITS", limits)
        (tmp_path / mode).mkdir()
        app = GitHubApp(fake_github, tmp_path / mode, _registry())     # its own store, locks and caches
        try:
            number = Bench(app, 50).open_pull(50)
            fake_github.reset_calls()
            assert app.deliver("pull_request", app.pull_request_payload("opened", number)).status_code == 202
            app.work()
            comment, = app.comments(number)
        finally:
            app.close()
        reads = [c for c in fake_github.calls if not c.is_write and not c.template.startswith("/app")]
        seen[mode] = (comment.body, len(reads), archive_calls(fake_github))
    per_file, archive = seen["per-file"], seen["archive"]
    assert _stable(archive[0]) == _stable(per_file[0]) and "fraud-049" in archive[0]
    assert per_file[2] == (0, 0, 102) and per_file[1] >= 108          # config, CODEOWNERS, 2 × 50 manifests
    assert archive[2] == (2, 2, 2) and archive[1] == per_file[1] - 100 + 4


def _stable(body: str) -> str:
    """A plan comment without what differs between two pull requests of the same change (SHAs, numbers)."""
    return re.sub(r"\b[0-9a-f]{7,40}\b", "<sha>", re.sub(r"#\d+|/pull/\d+", "#<n>", body))
