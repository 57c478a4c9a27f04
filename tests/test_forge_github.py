"""The GitHub adapter against the fake GitHub (github.com and GHES 3.19): every method, the calls a
PR plan costs (reads and writes for 1 and 50 manifests), the immutable cache, retries and rate limits."""

from __future__ import annotations

import time

import pytest

from modelherd.forges.base import Annotation, BranchTip, CheckReport, CheckStatus
from modelherd.forges.github import GitHubError, TooManyFiles, clip
from modelherd.github_auth import ClientOptions, GitHubClients, TokenCache
from modelherd.pacing import LocalPacer, PacingPolicy, RateLimited
from modelherd.settings import GitHubSettings
from tests.fakes.github import FakeGitHub

FLAVORS = ["github.com", "ghes-3.19"]
both_flavors = pytest.mark.parametrize("fake_github", FLAVORS, indirect=True)
MARKER = "<!-- modelherd:plan -->"
CONFIG = "environments:\n  - name: prod\n"
POLICIES = {"policies/extra.rego": "package extra\n", "policies/sub/more.rego": "package more\n",
            "policies/README.md": "docs\n"}


class RecordingPacer(LocalPacer):
    """A local pacer (no spacing) that remembers the holds it was asked for."""

    def __init__(self) -> None:
        super().__init__(PacingPolicy(write_interval=0.0))
        self.holds: list[tuple[str, float]] = []

    def hold(self, key: str, seconds: float) -> None:
        self.holds.append((key, seconds))
        super().hold(key, seconds)


class World:
    """A repository with ``n`` manifests, a pull request changing them all, and the app's clients."""

    def __init__(self, fake: FakeGitHub, n: int = 1, *, pacer: LocalPacer | None = None,
                 options: ClientOptions | None = None):
        self.fake = fake
        self.key = key = fake.generate_app_key()
        files = {".modelherd.yaml": CONFIG, **POLICIES}
        files.update({f"models/m{i}.yaml": f"name: m{i}\nreplicas: 1\n" for i in range(n)})
        self.repo = fake.add_repo("acme", "models", files=files)
        self.base = fake.head(self.repo)
        self.head = fake.add_commit(self.repo, {f"models/m{i}.yaml": f"name: m{i}\nreplicas: 2\n" for i in range(n)})
        self.number = fake.open_pull(self.repo, self.base, self.head, author="alice", labels=["models"])
        self.installation = fake.installation_id("acme")
        self.pacer = pacer or RecordingPacer()
        settings = GitHubSettings(app_id=fake.state.app_id, api_url=fake.base_url)
        self.clients = GitHubClients(settings, pacer=self.pacer, private_key=key, tokens=TokenCache(),
                                     options=options or ClientOptions(backoff_factor=0.01))
        self.n = n

    def forge(self):
        return self.clients.forge(self.installation, self.repo)

    def api_calls(self):
        """Calls other than the app's own (JWT: token minting, ``GET /app``)."""
        return [c for c in self.fake.calls if not (c.template or "").startswith("/app")]

    def counts(self) -> tuple[int, int]:
        calls = self.api_calls()
        return sum(not c.is_write for c in calls), sum(c.is_write for c in calls)


def plan_sequence(forge, number: int, *, checks: int = 2, annotations: int = 0, body: str = "plan") -> None:
    """What the PR-plan handler asks of the forge, in its order."""
    cr = forge.change_request(number)
    rules = forge.default_branch_tip()
    reader = forge.reader(cr)
    reader.read_many(rules.sha, [".modelherd.yaml"])
    touched = [p for p in reader.changed_files(cr.base_sha, cr.head_sha) if p.startswith("models/")]
    reader.read_many(cr.base_sha, touched)
    reader.read_many(cr.head_sha, touched)
    policies = [p for p in reader.list_files(rules.sha, "policies") if p.endswith(".rego")]
    reader.read_many(rules.sha, policies)
    forge.upsert_comment(number, MARKER, body)
    notes = tuple(Annotation(f"models/m{i % 50}.yaml", 2, 2, "failure", f"finding {i}") for i in range(annotations))
    names = ["modelherd/plan", "modelherd/policy"][:checks]
    for name in names:
        forge.report_check(cr.head_sha, CheckReport(name, CheckStatus.COMPLETED, "failure" if notes else "success",
                                                    title="plan", summary="summary",
                                                    annotations=notes if name == names[0] else ()))


# -- calls per PR event ---------------------------------------------------------------------------------


@both_flavors
@pytest.mark.parametrize("n", [1, 50])
def test_plan_costs_writes_constant_in_manifests(fake_github: FakeGitHub, n: int) -> None:
    world = World(fake_github, n)
    forge = world.forge()
    plan_sequence(forge, world.number)
    reads, writes = world.counts()
    # PR, default branch's ref, config, files page, the manifests, tree, 2 policies, comments list, one
    # check-runs list; the manifests: one read each side for 1, one archive each side (redirect +
    # download) for 50
    manifest_reads = 2 * n if n < 10 else 2 * 2
    assert (reads, writes) == (manifest_reads + 9, 3), [(c.method, c.template) for c in world.api_calls()]
    assert [c.method for c in world.fake.writes() if not c.template.startswith("/app")] == ["POST"] * 3
    auth = [(c.method, c.template) for c in world.fake.calls if c.template.startswith("/app")]
    assert auth == [("POST", "/app/installations/{installation_id}/access_tokens"), ("GET", "/app")]

    # the same SHAs again (a re-run): contents, files and tree come from the immutable cache
    world.fake.reset_calls()
    plan_sequence(world.forge(), world.number, body="plan, again")
    assert world.counts() == (2, 3)
    # the PR and the default branch, unchanged: no rate limit spent
    assert [c.status for c in world.fake.reads()] == [304, 304]
    assert sorted({c.method for c in world.fake.writes()}) == ["PATCH"]
    comments = world.fake.comments(world.repo, world.number)
    assert [c.body for c in comments] == [f"{MARKER}\nplan, again"]
    assert len(world.fake.check_runs(world.repo, world.head)) == 2


@both_flavors
def test_annotations_beyond_fifty_go_in_further_updates(fake_github: FakeGitHub) -> None:
    world = World(fake_github, 3)
    plan_sequence(world.forge(), world.number, checks=2, annotations=120)
    _, writes = world.counts()
    assert writes == 1 + 2 + 2          # comment, two checks, two overflow batches (50 + 50 + 20)
    plan = next(r for r in world.fake.check_runs(world.repo, world.head) if r.name == "modelherd/plan")
    assert len(plan.annotations) == 120 and plan.conclusion == "failure"
    assert [len((c.body.get("output") or {}).get("annotations") or []) for c in world.fake.writes()
            if "check-runs" in c.path] == [50, 50, 20, 0]

    # re-sending the same report (a retried job) updates the run without doubling its annotations
    world.fake.reset_calls()
    plan_sequence(world.forge(), world.number, checks=1, annotations=120)
    runs = [r for r in world.fake.check_runs(world.repo, world.head) if r.name == "modelherd/plan"]
    assert [len(r.annotations) for r in runs] == [120]
    assert [c.method for c in world.fake.writes() if "check-runs" in c.path] == ["PATCH"]

    # other annotations (GitHub appends, never replaces): a fresh run of the same name, shown instead
    plan_sequence(world.forge(), world.number, checks=1, annotations=70)
    runs = [r for r in world.fake.check_runs(world.repo, world.head) if r.name == "modelherd/plan"]
    assert [len(r.annotations) for r in runs] == [120, 70]


def test_a_lost_answer_while_annotating_sends_only_the_rest(fake_github: FakeGitHub) -> None:
    """The second batch of annotations reached GitHub but its answer did not: the retried report adds
    the third batch to the same run, and neither repeats a batch nor makes a second run."""
    world = World(fake_github, 3, options=ClientOptions(retries=0))
    fake_github.fail_next(1, 502, applied=True, match=lambda method, path: method == "PATCH" and "check-runs" in path)
    with pytest.raises(GitHubError):
        plan_sequence(world.forge(), world.number, checks=1, annotations=120)
    plan_sequence(world.forge(), world.number, checks=1, annotations=120)
    [run] = [r for r in fake_github.check_runs(world.repo, world.head) if r.name == "modelherd/plan"]
    assert len(run.annotations) == 120
    assert len({a["message"] for a in run.annotations}) == 120


def test_a_check_run_created_elsewhere_is_updated_not_made_twice(fake_github: FakeGitHub) -> None:
    """A worker that listed a commit's runs earlier (another job) does not take a run it has not seen for
    absent: another worker created it in between, and this one updates it."""
    world = World(fake_github, 1)
    first = world.forge()
    first.report_check(world.head, CheckReport("modelherd/plan", CheckStatus.COMPLETED, "success", title="plan"))
    other = GitHubClients(world.clients.settings, pacer=world.pacer, private_key=world.key, tokens=TokenCache())
    other.forge(world.installation, world.repo).report_check(
        world.head, CheckReport("modelherd/rollout", CheckStatus.IN_PROGRESS, title="rolling out"))
    world.forge().report_check(world.head, CheckReport("modelherd/rollout", CheckStatus.COMPLETED, "success",
                                                       title="rolled out"))
    runs = [(r.name, r.status, r.conclusion) for r in fake_github.check_runs(world.repo, world.head)]
    assert sorted(runs) == [("modelherd/plan", "completed", "success"), ("modelherd/rollout", "completed", "success")]


def test_new_process_finds_its_comment_and_checks(fake_github: FakeGitHub) -> None:
    """Cold caches (another worker, a restart): the comment and check runs are found, not duplicated."""
    world = World(fake_github, 2)
    plan_sequence(world.forge(), world.number)
    world.clients = GitHubClients(world.clients.settings, pacer=world.pacer, private_key=world.key,
                                  tokens=TokenCache())
    world.fake.reset_calls()
    plan_sequence(world.forge(), world.number, body="second worker")
    assert world.counts() == (2 * 2 + 9, 3)
    assert {c.method for c in world.fake.writes() if not c.template.startswith("/app")} == {"PATCH"}
    assert len(world.fake.comments(world.repo, world.number)) == 1
    assert len(world.fake.check_runs(world.repo, world.head)) == 2


# -- each method ------------------------------------------------------------------------------------------


@both_flavors
def test_change_request_maps_the_pull(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    cr = world.forge().change_request(world.number)
    assert (cr.repo, cr.number, cr.author, cr.state, cr.labels) == ("acme/models", world.number, "alice", "open",
                                                                    ("models",))
    assert (cr.base_sha, cr.head_sha, cr.base_ref, cr.head_ref) == (world.base, world.head, "main",
                                                                    f"pr-{world.number}")
    assert not cr.from_fork and not cr.author_is_bot and not cr.draft and cr.default_branch == "main"
    bot_pr = fake_github.open_pull(world.repo, world.base, world.head, author="renovate[bot]", draft=True)
    bot = world.forge().change_request(bot_pr)
    assert bot.author_is_bot and bot.draft
    fake_github.merge_pull(world.repo, world.number)
    assert world.forge().change_request(world.number).state == "merged"
    with pytest.raises(GitHubError) as missing:
        world.forge().change_request(999)
    assert missing.value.status == 404


def test_change_request_detects_forks() -> None:
    from modelherd.forges.github import to_change_request

    def pr(head_repo):
        return {"number": 7, "title": "t", "user": {"login": "dependabot[bot]", "type": "Bot"}, "state": "closed",
                "merged_at": None, "base": {"ref": "main", "sha": "a" * 40, "repo": {"full_name": "acme/models"}},
                "head": {"ref": "x", "sha": "b" * 40, "repo": head_repo}, "labels": []}

    fork = to_change_request(pr({"full_name": "mallory/models"}), "acme/models")
    assert fork.from_fork and fork.author_is_bot and fork.state == "closed"
    assert to_change_request(pr(None), "acme/models").from_fork          # the fork was deleted
    assert not to_change_request(pr({"full_name": "ACME/models"}), "acme/models").from_fork


@both_flavors
def test_default_branch_tip_is_read_fresh_and_conditionally(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    forge = world.forge()
    assert forge.change_request(world.number).default_branch == "main"
    tip = forge.default_branch_tip()                      # the name from the PR just read: one request
    assert (tip.branch, tip.sha) == ("main", world.base)
    assert [c.template for c in world.fake.calls][-1] == "/repos/{owner}/{repo}/git/ref/{ref}"
    moved = fake_github.add_commit(world.repo, {".modelherd.yaml": "environments: []\n"}, branch="main")
    world.fake.reset_calls()
    assert world.forge().default_branch_tip().sha == moved      # no PR read: the repository says the name
    assert [(c.template, c.status) for c in world.api_calls()] == [("/repos/{owner}/{repo}", 200),
                                                                   ("/repos/{owner}/{repo}/git/ref/{ref}", 200)]
    world.fake.reset_calls()
    forge = world.forge()
    forge.change_request(world.number)
    assert forge.default_branch_tip().sha == moved              # unmoved since: 304, no rate limit spent
    assert [c.status for c in world.api_calls()] == [304, 304]
    # the default branch renamed: the next event follows it
    fake_github.state.repos["acme/models"].default_branch = "trunk"
    fake_github.state.repos["acme/models"].branches["trunk"] = world.head
    assert world.forge().default_branch_tip() == BranchTip("trunk", world.head)


@both_flavors
def test_reader_reads_without_cloning(fake_github: FakeGitHub) -> None:
    world = World(fake_github, 2)
    fake_github.push_to_pull(world.repo, world.number, {"models/new.yaml": "name: new\n", "models/m1.yaml": None})
    forge = world.forge()
    cr = forge.change_request(world.number)
    reader = forge.reader(cr)
    assert reader.changed_files(cr.base_sha, cr.head_sha) == ["models/m0.yaml", "models/m1.yaml", "models/new.yaml"]
    got = reader.read_many(cr.head_sha, ["models/m0.yaml", "models/m1.yaml", "models/new.yaml", "policies"])
    assert got == {"models/m0.yaml": b"name: m0\nreplicas: 2\n", "models/m1.yaml": None,
                   "models/new.yaml": b"name: new\n", "policies": None}
    assert reader.list_files(cr.base_sha, "policies") == sorted(POLICIES)
    assert reader.list_files(cr.base_sha, "policies/sub/") == ["policies/sub/more.rego"]
    assert reader.list_files(cr.base_sha, "nowhere") == []
    assert reader.read_many("main", [".modelherd.yaml"]) == {".modelherd.yaml": CONFIG.encode()}
    with pytest.raises(GitHubError, match="read the pull request again"):
        reader.changed_files(cr.base_sha, world.head)


def test_truncated_tree_lists_the_folder_alone(fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over 100,000 entries GitHub cuts the recursive listing: walk down to the folder's own tree."""
    import github.GitTree

    world = World(fake_github, 2)
    monkeypatch.setattr(github.GitTree.GitTree, "truncated",
                        property(lambda tree: any(e.path.startswith("policies/") for e in tree.tree)))
    forge = world.forge()
    reader = forge.reader(forge.change_request(world.number))
    fake_github.reset_calls()
    assert reader.list_files(world.base, "policies/sub") == ["policies/sub/more.rego"]
    assert len(world.api_calls()) == 4     # root (cut), root level, policies level, policies/sub recursive
    with pytest.raises(GitHubError, match="too large"):
        reader.list_files(world.base, "")


def test_renames_report_both_names(fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake lists renames as delete + add; GitHub sends ``previous_filename``: both names count."""
    import github.File

    world = World(fake_github, 1)
    monkeypatch.setattr(github.File.File, "previous_filename",
                        property(lambda f: "models/old.yaml" if f.filename == "models/m0.yaml" else None))
    forge = world.forge()
    cr = forge.change_request(world.number)
    assert forge.reader(cr).changed_files(cr.base_sha, cr.head_sha) == ["models/m0.yaml", "models/old.yaml"]


def test_files_api_cap_is_reported(fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    import modelherd.forges.github as adapter

    world = World(fake_github, 4)
    monkeypatch.setattr(adapter, "FILES_API_CAP", 3)
    forge = world.forge()
    cr = forge.change_request(world.number)
    with pytest.raises(TooManyFiles, match="lists only the first 3"):
        forge.reader(cr).changed_files(cr.base_sha, cr.head_sha)


def test_large_files_come_through_the_blob_api(fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over 1 MB the contents API sends no content (``encoding: none``): the blob API is asked."""
    from github.ContentFile import ContentFile
    from github.GitBlob import GitBlob

    world = World(fake_github, 1)
    big = b"x: " + b"y" * (1024 * 1024) + b"\n"
    head = fake_github.push_to_pull(world.repo, world.number, {"models/big.yaml": big})
    seen: list[str] = []

    def get_contents(repo, path, ref):
        seen.append(f"contents {path}")
        return ContentFile(repo.requester, {}, {"type": "file", "encoding": "none", "content": "", "sha": "b1",
                                                "path": path}, completed=True)

    def get_git_blob(repo, sha):
        seen.append(f"blob {sha}")
        import base64
        return GitBlob(repo.requester, {}, {"sha": sha, "encoding": "base64",
                                            "content": base64.b64encode(big).decode()}, completed=True)

    import github.Repository
    monkeypatch.setattr(github.Repository.Repository, "get_contents", get_contents)
    monkeypatch.setattr(github.Repository.Repository, "get_git_blob", get_git_blob)
    forge = world.forge()
    cr = forge.change_request(world.number)
    assert forge.reader(cr).read_many(head, ["models/big.yaml"]) == {"models/big.yaml": big}
    assert seen == ["contents models/big.yaml", "blob b1"]


@both_flavors
def test_upsert_comment_edits_only_its_own(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    impostor = fake_github.add_comment(world.repo, world.number, "mallory", f"{MARKER}\nfake plan")
    forge = world.forge()
    first = forge.upsert_comment(world.number, MARKER, "plan v1")
    assert first != str(impostor)
    fake_github.reset_calls()
    assert world.forge().upsert_comment(world.number, MARKER, "plan v2") == first
    assert [(c.method, c.template) for c in world.api_calls()] == [
        ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}")]
    bodies = {c.user: c.body for c in fake_github.comments(world.repo, world.number)}
    assert bodies == {"mallory": f"{MARKER}\nfake plan", "modelherd[bot]": f"{MARKER}\nplan v2"}
    assert fake_github.state.comments[impostor].body == f"{MARKER}\nfake plan"

    # create=False edits the existing comment, and never creates one
    assert world.forge().upsert_comment(world.number, MARKER, "no changes", create=False) == first
    other_pr = fake_github.open_pull(world.repo, world.base, world.head, author="alice")
    assert world.forge().upsert_comment(other_pr, MARKER, "no changes", create=False) is None
    assert fake_github.comments(world.repo, other_pr) == []

    # someone deleted it: found missing on PATCH, searched, then created again
    del fake_github.state.comments[int(first)]
    third = world.forge().upsert_comment(world.number, MARKER, "plan v3")
    assert third != first and len(fake_github.comments(world.repo, world.number)) == 2


@both_flavors
def test_comments_reactions_people(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    forge = world.forge()
    command = fake_github.add_comment(world.repo, world.number, "bob", "/deploy")
    forge.react(world.number, command, "eyes")
    assert [r["content"] for r in fake_github.state.comments[command].reactions] == ["eyes"]
    with pytest.raises(ValueError):
        forge.react(world.number, command, "thumbsup")
    reply = forge.create_comment(world.number, "deploying")
    assert fake_github.state.comments[int(reply)].body == "deploying"

    for role in ("admin", "maintain", "write", "triage", "read"):
        fake_github.set_permission(world.repo, f"u-{role}", role)
        assert forge.permission(f"u-{role}") == role
    assert forge.permission("stranger") == "none"

    fake_github.add_team_member("acme", "ml-leads", "carol")
    fake_github.add_team_member("acme", "ml-leads", "dave", state="pending")
    assert forge.team_membership("acme", "ml-leads", "carol") == "active"
    assert forge.team_membership("acme", "ml-leads", "dave") == "pending"
    assert forge.team_membership("acme", "ml-leads", "erin") is None


@both_flavors
def test_reviews_and_commits(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    fake_github.add_review(world.repo, world.number, "bob", "CHANGES_REQUESTED", commit_id=world.base)
    fake_github.add_review(world.repo, world.number, "bob", "approved")
    fake_github.add_review(world.repo, world.number, "ci[bot]", "APPROVED")
    fake_github.push_to_pull(world.repo, world.number, {"models/m0.yaml": "name: m0\n"}, author="carol")
    forge = world.forge()
    reviews = forge.reviews(world.number)
    assert [(r["user"], r["user_type"], r["state"]) for r in reviews] == [
        ("bob", "User", "CHANGES_REQUESTED"), ("bob", "User", "APPROVED"), ("ci[bot]", "Bot", "APPROVED")]
    assert reviews[0]["commit_id"] == world.base and reviews[1]["commit_id"] == world.head
    assert all(r["submitted_at"] for r in reviews)
    commits = forge.commits(world.number)
    assert [(c["author"], c["committer"]) for c in commits] == [("alice", "alice"), ("carol", "carol")]


@both_flavors
def test_report_check_updates_in_place(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    forge = world.forge()
    forge.report_check(world.head, CheckReport("modelherd/plan", CheckStatus.COMPLETED, "failure", title="first"))
    forge.report_check(world.head, CheckReport("modelherd/plan", CheckStatus.COMPLETED, "success", title="ok",
                                               summary="s" * 70_000, text="t", details_url="https://x.invalid/p"))
    [run] = fake_github.check_runs(world.repo, world.head)
    assert (run.status, run.conclusion, run.details_url) == ("completed", "success", "https://x.invalid/p")
    assert len(run.output["summary"]) == 65_535 and "truncated by modelherd" in run.output["summary"]
    assert [c.method for c in fake_github.writes() if "check-runs" in c.path] == ["POST", "PATCH"]


def test_annotation_and_output_limits() -> None:
    from modelherd.forges.github import annotation_json

    assert clip("abc", 10) == "abc"
    cut = clip("x" * 100_000, 65_535)
    assert len(cut) == 65_535 and cut.endswith("(GitHub's limit).")
    one_line = annotation_json(Annotation("a.yaml", 3, 3, "warning", "m", start_column=5))
    assert one_line == {"path": "a.yaml", "start_line": 3, "end_line": 3, "annotation_level": "warning",
                        "message": "m", "start_column": 5, "end_column": 5}
    span = annotation_json(Annotation("a.yaml", 3, 4, "notice", "é" * 40_000, title="t", start_column=1))
    assert "start_column" not in span and len(span["message"].encode()) <= 64 * 1024 and span["title"] == "t"


# -- auth -----------------------------------------------------------------------------------------------


@both_flavors
def test_one_token_and_one_client_per_installation(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    other_repo = fake_github.add_repo("globex", "models")
    other_head = fake_github.add_commit(other_repo, {"m.yaml": "name: m\n"})
    other_pr = fake_github.open_pull(other_repo, fake_github.head(other_repo), other_head, author="bob")
    for _ in range(3):      # three webhooks for each of two installations
        world.forge().change_request(world.number)
        world.clients.forge(fake_github.installation_id("globex"), other_repo).change_request(other_pr)
    mints = fake_github.calls_to("POST", "/app/installations/{installation_id}/access_tokens")
    assert len(mints) == 2
    assert world.clients.for_installation(world.installation) is world.clients.for_installation(world.installation)
    requester = world.clients.for_installation(world.installation).requester
    assert requester.kwargs["seconds_between_requests"] == 0 == requester.kwargs["seconds_between_writes"]


def test_rejected_token_is_replaced_once(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    world.forge().change_request(world.number)
    fake_github.expire_tokens()
    assert world.forge().change_request(world.number).number == world.number
    assert len(fake_github.calls_to("POST", "/app/installations/{installation_id}/access_tokens")) == 2


# -- retries and rate limits ------------------------------------------------------------------------------


@both_flavors
def test_server_errors_are_retried(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    forge = world.forge()
    forge.create_comment(world.number, "token minted")
    fake_github.reset_calls()
    fake_github.fail_next(2, 502)
    assert forge.change_request(world.number).number == world.number
    assert [c.status for c in world.api_calls()] == [502, 502, 200]


def test_server_errors_on_post_are_not_retried(fake_github: FakeGitHub) -> None:
    """A POST that failed with 5xx may have been applied: the job fails and is run again instead."""
    world = World(fake_github)
    forge = world.forge()
    forge.change_request(world.number)
    fake_github.fail_next(1, 502, match=lambda method, path: method == "POST" and "/comments" in path)
    with pytest.raises(GitHubError) as failed:
        forge.create_comment(world.number, "hello")
    assert failed.value.status == 502
    assert len(fake_github.calls_to("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments")) == 1


def test_server_errors_give_up_after_the_retries(fake_github: FakeGitHub) -> None:
    world = World(fake_github, options=ClientOptions(retries=2, backoff_factor=0.01))
    forge = world.forge()
    forge.create_comment(world.number, "token minted")
    fake_github.reset_calls()
    fake_github.fail_next(5, 503)
    with pytest.raises(GitHubError) as failed:
        forge.change_request(world.number)
    assert failed.value.status == 503 and len(world.api_calls()) == 3


@both_flavors
def test_secondary_rate_limit_waits_retry_after_even_for_writes(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    forge = world.forge()
    forge.change_request(world.number)
    fake_github.fail_next(1, 403, retry_after=1, match=lambda method, path: method == "POST")
    started = time.monotonic()
    forge.create_comment(world.number, "after the limit")
    assert time.monotonic() - started >= 1.0
    assert [c.status for c in fake_github.calls_to("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments")] \
        == [403, 201]
    assert world.pacer.holds == [(world.clients.pace_key(world.installation), 1.0)]   # all workers wait


def test_long_retry_after_raises_rate_limited(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    forge = world.forge()
    forge.change_request(world.number)
    fake_github.fail_next(1, 403, retry_after=120)
    with pytest.raises(RateLimited) as limited:
        forge.change_request(world.number)
    assert 115 <= limited.value.retry_in <= 121
    assert world.pacer._peek(world.clients.pace_key(world.installation), "w") > 100   # other workers hold too


@both_flavors
def test_exhausted_budget_with_far_reset_raises_rate_limited(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    forge = world.forge()
    forge.change_request(world.number)
    fake_github.fail_next(1, 429, reset_in=3600)
    with pytest.raises(RateLimited) as limited:              # raised for the queue, not slept through
        forge.upsert_comment(world.number, MARKER, "x")
    assert 3590 <= limited.value.retry_in <= 3602


def test_exhausted_budget_with_near_reset_waits_for_it(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    forge = world.forge()
    forge.change_request(world.number)
    fake_github.fail_next(1, 429, reset_in=1)
    started = time.monotonic()
    assert forge.change_request(world.number).number == world.number
    assert time.monotonic() - started >= 1.0
    assert [c.status for c in world.api_calls()][-2:] == [429, 304]
