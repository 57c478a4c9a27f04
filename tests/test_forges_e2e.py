"""The same end-to-end scenarios on both forges: a change request (GitHub pull request / GitLab merge
request) changing a model manifest, from opening to rollout and rollback.

Each scenario runs twice (``forge`` in github, gitlab) through a small facade, :class:`Forge`, over the
two harnesses (:mod:`tests.github_app`, :mod:`tests.gitlab_app`): real webhook payloads in, through
intake, the store, the queue and the unchanged handlers, to the fake forge (each validated against
its forge's OpenAPI description) and back. Rollouts go through the ``mlflow-alias`` target on an
in-memory registry, so the registry's aliases say what each environment serves.

Where a forge forces a difference, each forge's own behaviour is asserted and the difference is said
in a comment:

* checks are GitHub check runs, GitLab commit statuses (``failed`` where GitHub says ``failure``; a
  pending report is ``in_progress`` on GitHub, ``running`` on GitLab) — :meth:`Forge.status` maps
  both onto success / failure / pending;
* an approval is a review of a commit on GitHub, and on GitLab an MR approval that names no commit
  (the adapter binds it to the MR version it was given on);
* ``/unlock`` is one of GitLab's own quick actions, so there ours is ``/unlock-env``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from modelherd.comment import MARKER
from modelherd.registry.memory import InMemoryRegistry
from modelherd.settings import ClusterConfig, Provider

from tests.fakes.gitlab import DEVELOPER, GUEST, REPORTER
from tests.github_app import GitHubApp, example_files
from tests.gitlab_app import GitLabApp

PASSED = {"validation_status": "passed"}
#: Every cluster follows the registry alias: no Kubernetes here, the registry says what is served.
CLUSTERS = {name: ClusterConfig(provider=provider, gpus=gpus, target="mlflow-alias")
            for name, provider, gpus in (("onprem-a", Provider.ONPREM, False), ("onprem-gpu", Provider.ONPREM, True),
                                         ("aws-eu-1", Provider.AWS, False), ("gcp-us-1", Provider.GCP, False))}
#: A check run's conclusion or a commit status's state → one word for both forges.
STATES = {"success": "success", "failure": "failure", "failed": "failure", "in_progress": "pending",
          "queued": "pending", "pending": "pending", "running": "pending"}


@dataclass
class Forge:
    """What a person does on a forge and what the forge then shows, the same on both."""

    name: str
    app: Any

    # -- actions (each delivers its webhook) -----------------------------------------------------------
    def open(self, files: dict[str, str | None], author: str = "alice") -> int:
        """Open a PR/MR changing ``files`` and deliver "opened"; its number (GitLab: iid)."""
        if self.name == "github":
            number = self.app.pull_request(files, author=author)
            self.app.deliver("pull_request", self.app.pull_request_payload("opened", number))
        else:
            number = self.app.merge_request(files, author=author)
            self.app.deliver("Merge Request Hook", self.app.merge_request_hook("open", number, user=author))
        return number

    def push(self, number: int, files: dict[str, str | None]) -> str:
        """A new commit on the PR/MR and its webhook (GitHub synchronize, GitLab update with oldrev)."""
        if self.name == "github":
            sha = self.app.fake.push_to_pull(self.app.repo, number, files)
            self.app.deliver("pull_request", self.app.pull_request_payload("synchronize", number))
            return sha
        return self.app.push(number, files)

    def approve(self, number: int, user: str) -> None:
        """GitHub: an APPROVED review (of the head commit); GitLab: an MR approval (of no commit)."""
        if self.name == "github":
            self.app.fake.add_review(self.app.repo, number, user, "APPROVED")
            self.app.deliver("pull_request_review", self.app.review_payload("submitted", number, user, "APPROVED"))
        else:
            self.app.approve(number, user)

    def command(self, number: int, user: str, body: str) -> str:
        """Comment ``body``, run the jobs, and return the bot's reply (the newest comment/note)."""
        self.app.comment(number, user, body)
        self.app.work()
        return self.comments(number)[-1]

    def merge(self, number: int) -> str:
        """Merge and deliver the webhook; the commit the default branch now points at."""
        return self.app.merge(number)

    def push_default_branch(self, sha: str) -> None:
        """Deliver the push that moved the default branch to ``sha``, and run the jobs."""
        if self.name == "github":
            self.app.deliver("push", self.app.push_payload(sha))
        else:
            self.app.deliver("Push Hook", self.app.push_hook(sha))
        self.app.work()

    # -- what the forge shows --------------------------------------------------------------------------
    def comments(self, number: int) -> list[str]:
        """Bodies of every comment/note, oldest first."""
        if self.name == "github":
            return [c.body for c in self.app.comments(number)]
        return [n.body for n in self.app.notes(number)]

    def sticky(self, number: int) -> list[str]:
        """Bodies of the plan comments/notes (there should be exactly one)."""
        return [body for body in self.comments(number) if body.startswith(MARKER)]

    def reactions(self, number: int, author: str) -> list[str]:
        """Reactions on ``author``'s newest comment/note (``eyes`` is spelled alike on both forges)."""
        if self.name == "github":
            [*_, comment] = [c for c in self.app.comments(number) if c.user == author]
            return [r["content"] for r in comment.reactions]
        user = self.app.fake.user_id(author)
        [*_, note] = [n for n in self.app.notes(number) if n.author == user]
        return [a["name"] for a in note.awards]

    def head(self, number: int) -> str:
        if self.name == "github":
            return self.app.fake.pull(self.app.repo, number).head_sha
        return self.app.head(number)

    def status(self, sha: str, name: str) -> str:
        """success / failure / pending of check run (GitHub) or commit status (GitLab) ``name`` on ``sha``."""
        if self.name == "github":
            run = self.app.check(sha, name)
            return STATES[run.conclusion if run.status == "completed" else run.status]
        return STATES[self.app.status(sha, name).status]

    def title(self, number: int) -> str:
        if self.name == "github":
            return self.app.fake.pull(self.app.repo, number).title
        return self.app.fake.merge_request(self.app.repo, number).title

    def file_at_head(self, number: int, path: str) -> str:
        return self.app.fake.read_file(self.app.repo, self.head(number), path)


@pytest.fixture
def registry() -> InMemoryRegistry:
    reg = InMemoryRegistry()
    for version, auc in ((1, 0.931), (2, 0.947), (3, 0.95)):
        reg.add("fraud-detector", version, metrics={"auc": auc, "latency_p99_ms": 30}, tags=PASSED)
    reg.add("churn-model", 3, metrics={"f1": 0.78, "accuracy": 0.88}, tags=PASSED)
    return reg


def _files() -> dict[str, str]:
    """The example repository, production's verification shortened so rollouts finish in a few steps."""
    files = example_files()
    files["models/fraud-detector.yaml"] = files["models/fraud-detector.yaml"].replace("verify_for: 10m",
                                                                                      "verify_for: 0s")
    return files


def _github(request: pytest.FixtureRequest, tmp_path: Any, registry: InMemoryRegistry) -> GitHubApp:
    fake = request.getfixturevalue("fake_github")
    app = GitHubApp(fake, tmp_path, registry, clusters=CLUSTERS, files=_files())
    fake.add_team_member("acme", "risk-ml", "bob")                   # @acme/risk-ml: a GitHub team
    for user in ("alice", "bob"):
        fake.set_permission(app.repo, user, "write")
    fake.set_permission(app.repo, "mallory", "read")
    return app


def _gitlab(request: pytest.FixtureRequest, tmp_path: Any, registry: InMemoryRegistry) -> GitLabApp:
    fake = request.getfixturevalue("fake_gitlab")
    app = GitLabApp(fake, tmp_path, registry, clusters=CLUSTERS, files=_files())
    fake.add_group_member("acme/risk-ml", "bob")                     # @acme/risk-ml: a GitLab group
    fake.add_group_member("acme/risk-ml", fake.bot_username, GUEST)  # private: the bot must be in it to see it
    for user in ("alice", "bob"):
        fake.set_access_level(app.repo, user, DEVELOPER)              # Developer = GitHub's write
    fake.set_access_level(app.repo, "mallory", REPORTER)
    return app


@pytest.fixture(params=["github", "gitlab"])
def forge(request: pytest.FixtureRequest, tmp_path: Any, registry: InMemoryRegistry) -> Any:
    """The facade over the harness of ``request.param`` (the fake forge is that forge's fixture)."""
    app = (_github if request.param == "github" else _gitlab)(request, tmp_path, registry)
    yield Forge(request.param, app)
    app.close()


def bump(forge: Forge, old: int, new: int) -> dict[str, str]:
    return forge.app.bump("fraud-detector", old, new)


def opened(forge: Forge) -> int:
    """A PR/MR by alice bumping fraud-detector 1 → 2, planned."""
    number = forge.open(bump(forge, 1, 2))
    forge.app.work()
    return number


def approved(forge: Forge) -> int:
    """:func:`opened`, approved by bob (an owner through @acme/risk-ml), approvals evaluated."""
    number = opened(forge)
    forge.approve(number, "bob")
    forge.app.work()
    return number


# -- scenarios ---------------------------------------------------------------------------------------


def test_opened_gets_a_plan_note_and_a_plan_status(forge):
    number = opened(forge)
    [sticky] = forge.sticky(number)
    assert "fraud-detector" in sticky and "v1 → v2" in sticky
    assert forge.status(forge.head(number), "modelherd/plan") == "success"
    # production needs one owner's approval: not there yet (GitHub in_progress, GitLab running)
    assert forge.status(forge.head(number), "modelherd/approvals") == "pending"


def test_new_push_edits_the_same_note(forge):
    number = opened(forge)
    head = forge.push(number, bump(forge, 1, 3))
    forge.app.work()
    [sticky] = forge.sticky(number)
    assert "v1 → v3" in sticky and "v1 → v2" not in sticky
    assert forge.status(head, "modelherd/plan") == "success"


def test_approval_reaches_the_approvals_status(forge):
    number = approved(forge)
    assert forge.status(forge.head(number), "modelherd/approvals") == "success"
    [sticky] = forge.sticky(number)
    assert "bob" in sticky


def test_approval_of_an_older_head_does_not_count(forge):
    number = approved(forge)
    head = forge.push(number, bump(forge, 1, 3))
    forge.app.work()
    # GitHub: bob's review names the old commit. GitLab: the approval names no commit, and survives the
    # push (the project does not reset approvals); the adapter binds it to the MR version it was given on.
    assert forge.status(head, "modelherd/approvals") == "pending"


def test_deploy_staging_rolls_out_through_the_registry_alias(forge, registry):
    number = approved(forge)
    reply = forge.command(number, "bob", "/deploy staging")
    assert "rollout #" in reply and "staging" in reply, reply
    # the command was acknowledged (GitHub: a reaction on the comment; GitLab: an emoji award on the note,
    # which GitLab addresses through its MR, handed to the forge from the hook)
    assert forge.reactions(number, "bob") == ["eyes"]
    forge.app.run_rollouts()
    [rollout] = forge.app.store.list_rollouts(repo=forge.app.repo)
    assert (rollout.environment, rollout.state) == ("staging", "succeeded")
    assert registry.resolve("fraud-detector", alias="staging").version == "2"
    with pytest.raises(Exception, match="no alias"):
        registry.resolve("fraud-detector", alias="production")      # production waits for the merge


def test_deploy_needs_write_access(forge):
    number = approved(forge)
    # GitHub: "read" permission; GitLab: Reporter access (Developer or above is needed)
    reply = forge.command(number, "mallory", "/deploy staging")
    assert "refused" in reply and "write" in reply, reply
    assert forge.app.store.list_rollouts(repo=forge.app.repo) == []


def test_merge_rolls_out_and_reports_the_rollout_status(forge, registry):
    number = approved(forge)
    merge_sha = forge.merge(number)
    forge.app.run_rollouts()
    states = {r.environment: r.state for r in forge.app.store.list_rollouts(repo=forge.app.repo)}
    assert states == {"staging": "succeeded", "production": "succeeded"}
    assert registry.resolve("fraud-detector", alias="production").version == "2"
    assert forge.status(merge_sha, "modelherd/rollout") == "success"
    assert any("merged, rolling out" in body for body in forge.comments(number))
    [sticky] = forge.sticky(number)
    assert "#### Rollouts" in sticky


def test_rollback_after_merge_opens_a_revert_request(forge, registry):
    number = approved(forge)
    forge.merge(number)
    forge.app.run_rollouts()
    reply = forge.command(number, "alice", "/rollback production")
    assert "v2 → v1" in reply, reply
    forge.app.run_rollouts()
    assert registry.resolve("fraud-detector", alias="production").version == "1"
    pin = forge.app.store.pinned(forge.app.repo, "fraud-detector", "production")
    assert pin is not None and pin.version == "1" and pin.revert_pr
    assert forge.title(pin.revert_pr).startswith("Revert")
    assert "version: 1}" in forge.file_at_head(pin.revert_pr, "models/fraud-detector.yaml")


def test_periodic_sweep_finds_drift_between_pushes(forge, registry):
    """Drift made by hand (here: the production alias moved in the registry) is found by the periodic
    sweep, without waiting for the next push to the default branch."""
    registry.add("search-reranker", 2, tags=PASSED)
    for model, version in (("churn-model", 3), ("search-reranker", 2)):   # the rest of the repo serves too
        for environment in ("staging", "production"):
            registry.set_alias(model, environment, version)
    number = approved(forge)
    merge_sha = forge.merge(number)
    forge.app.run_rollouts()
    forge.push_default_branch(merge_sha)
    assert forge.status(merge_sha, "modelherd/drift") == "success"
    registry.set_alias("fraud-detector", "production", 1)            # someone moved it by hand
    forge.app.queue.sweep_now()
    assert forge.status(merge_sha, "modelherd/drift") == "failure"


def test_help_and_unlock_use_the_forges_spelling(forge):
    number = opened(forge)
    help_reply = forge.command(number, "alice", "/help")
    if forge.name == "github":
        assert "`/unlock [env]`" in help_reply
        assert "released" in forge.command(number, "alice", "/unlock").lower()
    else:
        # GitLab's own /unlock unlocks the discussion (a quick action GitLab runs and we never answer):
        # ours is /unlock-env there.
        assert "`/unlock-env [env]`" in help_reply and "`/unlock [env]`" not in help_reply
        before = len(forge.comments(number))
        forge.app.comment(number, "alice", "/unlock")
        forge.app.work()
        assert len(forge.comments(number)) == before + 1                  # alice's note, no reply
        assert "released" in forge.command(number, "alice", "/unlock-env").lower()


def test_merged_deletion_decommissions_the_model(forge, registry):
    forge.merge(approved(forge))
    forge.app.run_rollouts()
    assert registry.resolve("fraud-detector", alias="staging").version == "2"
    number = forge.open({"models/fraud-detector.yaml": None})
    forge.app.work()
    [sticky] = forge.sticky(number)
    assert "will be removed from cluster `aws-eu-1` namespace `risk` (`production`)" in sticky
    forge.approve(number, "bob")                                    # a protected deletion needs its approval
    forge.app.work()
    merge_sha = forge.merge(number)
    forge.app.run_rollouts()
    gone = {r.environment: r.state for r in forge.app.store.list_rollouts(repo=forge.app.repo)
            if r.action == "decommission"}
    assert gone == {"staging": "succeeded", "production": "succeeded"}
    for env in ("staging", "production"):                           # mlflow-alias target: the alias is deleted
        with pytest.raises(Exception, match="no alias"):
            registry.resolve("fraud-detector", alias=env)
    assert forge.status(merge_sha, "modelherd/rollout") == "success"
    assert any("will be removed from `production`" in body for body in forge.comments(number))
    [sticky] = forge.sticky(number)
    assert "decommissioned: removed from cluster aws-eu-1 namespace risk" in sticky
    # nothing shows as live there any more: GitHub's deployments are inactive, GitLab's environment stopped
    for env in ("staging/fraud-detector", "production/fraud-detector"):
        if forge.name == "github":
            latest = [d.statuses[-1]["state"] for d in forge.app.fake.deployments(forge.app.repo)
                      if d.environment == env and d.statuses]
            assert latest and "success" not in latest, latest
        else:
            assert forge.app.fake.environment(forge.app.repo, env).state == "stopped"
            states = {d.status for d in forge.app.fake.state.deployments.values()}
            assert "running" not in states, states
