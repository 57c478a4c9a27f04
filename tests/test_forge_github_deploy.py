"""The forge operations rollouts need, on the GitHub adapter against the fake GitHub (github.com and
GHES 3.19): deployments and their statuses (idempotent per rollout id, older ones retired on
success) and revert pull requests through the git data API (idempotent per branch). Each test counts
the requests it costs; the fake's teardown fails any request that broke GitHub's OpenAPI description."""

from __future__ import annotations

import pytest
from modelherd.forges.base import DEPLOYMENT_STATES, NothingToRevert
from modelherd.forges.github import (
    DESCRIPTION_LIMIT,
    _Entry,
    defuse_mentions,
    git_blob_sha,
    short,
    tree_changes,
)
from modelherd.github_auth import GitHubClients, TokenCache

from tests.fakes.github import FakeGitHub
from tests.test_forge_github import World, both_flavors

BRANCH = "modelherd/revert-r1"
MANIFESTS = {"models/a.yaml": "name: a\nversion: 2\n", "models/b.yaml": "name: b\nversion: 5\n"}


def calls(world: World) -> list[tuple[str, str]]:
    """(method, template) of the API calls so far (token minting left out)."""
    return [(c.method, c.template) for c in world.api_calls()]


def fresh_clients(world: World) -> None:
    """Another worker: new clients, cold caches."""
    world.clients = GitHubClients(world.clients.settings, pacer=world.pacer, private_key=world.key,
                                  tokens=TokenCache())


def states(fake: FakeGitHub, repo: str, deployment_id: str) -> list[str]:
    deployment = next(d for d in fake.deployments(repo) if d.id == int(deployment_id))
    return [s["state"] for s in deployment.statuses]


def deploy(forge, sha: str, environment: str, rollout: str, *, production: bool = False,
           transient: bool = False) -> str:
    return forge.create_deployment(sha, environment, description=f"rollout {rollout}",
                                   payload={"modelherd_rollout": rollout, "model": "m0"},
                                   production=production, transient=transient)


# -- deployments ------------------------------------------------------------------------------------------


@both_flavors
def test_deployment_fields_and_statuses_in_order(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    forge = world.forge()
    long_text = "x" * 300
    deployment_id = forge.create_deployment(world.head, "staging", description=long_text,
                                            payload={"modelherd_rollout": "r-1", "model": "m0"}, production=False)
    assert calls(world) == [("GET", "/repos/{owner}/{repo}/deployments"),        # the rollout's, if any
                            ("POST", "/repos/{owner}/{repo}/deployments")]
    sent = fake_github.calls_to("POST", "/repos/{owner}/{repo}/deployments")[0].body
    assert sent["auto_merge"] is False and sent["required_contexts"] == []
    assert fake_github.calls_to("GET", "/repos/{owner}/{repo}/deployments")[0].query == {
        "sha": [world.head], "environment": ["staging"], "per_page": ["100"]}
    [made] = fake_github.deployments(world.repo)
    assert str(made.id) == deployment_id
    assert (made.sha, made.ref, made.environment, made.task) == (world.head, world.head, "staging", "deploy")
    assert made.payload == {"modelherd_rollout": "r-1", "model": "m0"}
    assert (made.production_environment, made.transient_environment) == (False, False)
    assert len(made.description) == DESCRIPTION_LIMIT and made.description.endswith("…")

    world.fake.reset_calls()
    forge.set_deployment_status(deployment_id, "queued", description="waiting for staging")
    forge.set_deployment_status(deployment_id, "in_progress", description="step 1 of 3",
                                log_url="https://modelherd.example/rollouts/r-1")
    forge.set_deployment_status(deployment_id, "success", description=long_text,
                                environment_url="https://staging.example/m0",
                                log_url="https://modelherd.example/rollouts/r-1")
    # a known non-production deployment: three writes, nothing read (GitHub retires the older ones)
    assert calls(world) == [("POST", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses")] * 3
    assert states(fake_github, world.repo, deployment_id) == ["queued", "in_progress", "success"]
    queued, running, success = made.statuses
    assert queued["description"] == "waiting for staging" and queued["environment_url"] == ""
    assert running["log_url"] == "https://modelherd.example/rollouts/r-1"
    assert success["environment_url"] == "https://staging.example/m0"
    assert len(success["description"]) == DESCRIPTION_LIMIT
    bodies = [c.body for c in fake_github.writes()]
    assert [b.get("auto_inactive") for b in bodies] == [None, None, True]
    assert "environment_url" not in bodies[0] and "log_url" not in bodies[0]

    with pytest.raises(ValueError):
        forge.set_deployment_status(deployment_id, "destroyed")


@both_flavors
def test_repeated_create_with_the_same_rollout_returns_the_same_deployment(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    first = deploy(world.forge(), world.head, "staging", "r-1")
    world.fake.reset_calls()
    assert deploy(world.forge(), world.head, "staging", "r-1") == first
    assert calls(world) == []                                    # remembered: no request at all

    fresh_clients(world)                                         # another worker finds it with one list
    world.fake.reset_calls()
    assert deploy(world.forge(), world.head, "staging", "r-1") == first
    assert calls(world) == [("GET", "/repos/{owner}/{repo}/deployments")]

    world.fake.reset_calls()
    other = deploy(world.forge(), world.head, "staging", "r-2")           # another rollout: a new one
    production = deploy(world.forge(), world.head, "production", "r-1", production=True)  # another env
    assert len({first, other, production}) == 3
    assert world.counts() == (2, 2)
    assert len(fake_github.deployments(world.repo)) == 3


def test_rollout_found_among_many_deployments_of_the_commit(fake_github: FakeGitHub) -> None:
    """More deployments of the SHA than one page holds: the list follows the pages."""
    world = World(fake_github)
    forge = world.forge()
    wanted = deploy(forge, world.head, "staging", "r-0")
    for i in range(1, 120):
        deploy(forge, world.head, "staging", f"r-{i}")
    fresh_clients(world)
    world.fake.reset_calls()
    assert deploy(world.forge(), world.head, "staging", "r-0") == wanted
    assert world.counts() == (2, 0)                              # 120 deployments: two pages of 100


@both_flavors
def test_success_retires_earlier_deployments_of_the_environment(fake_github: FakeGitHub) -> None:
    """Staging: GitHub's ``auto_inactive`` does it. Production (which ``auto_inactive`` leaves
    alone): the adapter marks the previous success inactive itself, stopping at the first inactive."""
    world = World(fake_github)
    forge = world.forge()
    s1, s2 = (deploy(forge, world.head, "staging", r) for r in ("s1", "s2"))
    forge.set_deployment_status(s1, "success")
    forge.set_deployment_status(s2, "success")
    assert states(fake_github, world.repo, s1) == ["success", "inactive"]
    assert states(fake_github, world.repo, s2) == ["success"]

    p1 = deploy(forge, world.head, "production", "p1", production=True)
    forge.set_deployment_status(p1, "success")
    p2 = deploy(forge, world.head, "production", "p2", production=True)
    forge.set_deployment_status(p2, "failure")
    p3 = deploy(forge, world.head, "production", "p3", production=True)
    world.fake.reset_calls()
    forge.set_deployment_status(p3, "success")
    # the status; the environment's latest deployments; p2's state (failure), p1's (success): retired
    assert calls(world) == [("POST", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses"),
                            ("GET", "/repos/{owner}/{repo}/deployments"),
                            ("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses"),
                            ("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses"),
                            ("POST", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses")]
    assert states(fake_github, world.repo, p1) == ["success", "inactive"]
    assert states(fake_github, world.repo, p2) == ["failure"]
    assert states(fake_github, world.repo, p3) == ["success"]
    assert states(fake_github, world.repo, s2) == ["success"]            # another environment: untouched

    fresh_clients(world)                                                  # cold cache: one read of p4 itself
    p4 = deploy(world.forge(), world.head, "production", "p4", production=True)
    world.fake.reset_calls()
    world.forge().set_deployment_status(p4, "success")
    assert world.counts() == (1 + 1 + 2, 2)      # p4; the list; p3 (success → retired), p2, p1 (inactive: stop)
    assert states(fake_github, world.repo, p3) == ["success", "inactive"]
    assert states(fake_github, world.repo, p1) == ["success", "inactive"]


@both_flavors
def test_retiring_an_environment_leaves_nothing_live_there(fake_github: FakeGitHub) -> None:
    """After a decommission the environment's successful deployments become inactive (a production
    environment's earlier success would otherwise still show as live); other environments are untouched."""
    world = World(fake_github)
    forge = world.forge()
    live = deploy(forge, world.head, "production/churn", "p1", production=True)
    forge.set_deployment_status(live, "success")
    other = deploy(forge, world.head, "staging/churn", "s1")
    forge.set_deployment_status(other, "success")
    removal = deploy(forge, world.head, "production/churn", "p2", production=True)
    forge.set_deployment_status(removal, "inactive")
    forge.retire_environment("production/churn")
    forge.retire_environment("production/churn")                          # again: nothing more to retire
    forge.retire_environment("never-deployed")
    assert states(fake_github, world.repo, live) == ["success", "inactive"]
    assert states(fake_github, world.repo, removal) == ["inactive"]
    assert states(fake_github, world.repo, other) == ["success"]


@both_flavors
def test_transient_deployments_are_left_to_the_caller(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    forge = world.forge()
    preview = deploy(forge, world.head, "pr-7", "t1", transient=True)
    forge.set_deployment_status(preview, "success", environment_url="https://pr-7.example")
    later = deploy(forge, world.head, "pr-7", "t2", transient=True)
    forge.set_deployment_status(later, "success")
    assert states(fake_github, world.repo, preview) == ["success"]
    forge.set_deployment_status(preview, "inactive", description="preview destroyed")
    assert states(fake_github, world.repo, preview) == ["success", "inactive"]
    assert fake_github.deployments(world.repo)[0].transient_environment is True


def test_deployment_states_and_descriptions() -> None:
    assert DEPLOYMENT_STATES == ("queued", "in_progress", "success", "failure", "error", "inactive")
    assert short("fits", 140) == "fits"
    assert short("a" * 200, 140) == "a" * 139 + "…"


# -- revert pull requests ---------------------------------------------------------------------------------


def revert_world(fake: FakeGitHub) -> World:
    world = World(fake)
    fake.add_commit(world.repo, MANIFESTS, branch="main", message="Roll out a v2 and b v5")
    return world


def revert(forge, files: dict[str, str | None], *, title: str = "Revert a to v1 (rollback r1 by @carol)") -> int:
    return forge.open_revert_pull("main", files, branch=BRANCH, title=title, body="Rolled back by @carol.")


REVERT = {"models/a.yaml": "name: a\nversion: 1\n", "models/b.yaml": None, "models/c.yaml": "name: c\n"}


@both_flavors
def test_revert_pull_request_branch_commit_and_files(fake_github: FakeGitHub) -> None:
    world = revert_world(fake_github)
    base_head = fake_github.head(world.repo, "main")
    world.fake.reset_calls()
    number = revert(world.forge(), REVERT)
    assert calls(world) == [("GET", "/repos/{owner}/{repo}/git/ref/{ref}"),           # the branch: none
                            ("GET", "/repos/{owner}/{repo}/git/ref/{ref}"),           # main's head
                            ("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}"),    # what it holds
                            ("POST", "/repos/{owner}/{repo}/git/trees"),
                            ("POST", "/repos/{owner}/{repo}/git/commits"),
                            ("POST", "/repos/{owner}/{repo}/git/refs"),
                            ("POST", "/repos/{owner}/{repo}/pulls")]
    pr = fake_github.pull(world.repo, number)
    head = fake_github.head(world.repo, BRANCH)
    assert (pr.state, pr.base_ref, pr.head_ref, pr.head_sha) == ("open", "main", BRANCH, head)
    commit = fake_github.state.git.commits[head]
    assert commit.parents == [base_head]
    assert "@carol" not in pr.title and pr.title == defuse_mentions("Revert a to v1 (rollback r1 by @carol)")
    assert commit.message == pr.title and pr.body == "Rolled back by @carol."
    assert fake_github.read_file(world.repo, head, "models/a.yaml") == "name: a\nversion: 1\n"
    assert fake_github.read_file(world.repo, head, "models/b.yaml") is None
    assert fake_github.read_file(world.repo, head, "models/c.yaml") == "name: c\n"
    assert fake_github.read_file(world.repo, head, ".modelherd.yaml") is not None     # the rest kept
    assert fake_github.read_file(world.repo, "main", "models/b.yaml") == "name: b\nversion: 5\n"
    tree_body = fake_github.calls_to("POST", "/repos/{owner}/{repo}/git/trees")[0].body
    assert tree_body["base_tree"] == fake_github.state.git.commits[base_head].tree
    assert [(e["path"], "content" in e, e.get("sha", "-")) for e in tree_body["tree"]] == [
        ("models/a.yaml", True, "-"), ("models/b.yaml", False, None), ("models/c.yaml", True, "-")]

    # again (a retried job, another worker): the same pull request, three reads, no write
    fresh_clients(world)
    world.fake.reset_calls()
    assert revert(world.forge(), REVERT) == number
    assert world.counts() == (3, 0)
    assert fake_github.head(world.repo, BRANCH) == head


@both_flavors
def test_revert_pull_request_updated_only_when_its_contents_differ(fake_github: FakeGitHub) -> None:
    world = revert_world(fake_github)
    number = revert(world.forge(), REVERT)
    first_head = fake_github.head(world.repo, BRANCH)
    changed = {**REVERT, "models/a.yaml": "name: a\nversion: 0\n"}
    world.fake.reset_calls()
    assert revert(world.forge(), changed) == number
    # branch, its pull request, its tree; then tree, commit, fast-forward of the branch
    assert world.counts() == (3, 3)
    assert [c.body.get("force") for c in fake_github.calls_to("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}")] \
        == [False]
    head = fake_github.head(world.repo, BRANCH)
    assert fake_github.state.git.commits[head].parents == [first_head]
    assert fake_github.pull(world.repo, number).head_sha == head
    assert fake_github.read_file(world.repo, head, "models/a.yaml") == "name: a\nversion: 0\n"
    assert fake_github.read_file(world.repo, head, "models/b.yaml") is None
    assert len([p for p in fake_github.state.pulls.values() if p.repo == world.repo]) == 2   # the plan's + ours


@both_flavors
def test_stale_branch_is_rebuilt_from_the_base(fake_github: FakeGitHub) -> None:
    """A branch left from an earlier attempt (its pull request closed, or a crash before opening
    it) is reset onto the base's head with the wanted files, and a pull request opened."""
    world = revert_world(fake_github)
    base_head = fake_github.head(world.repo, "main")
    fake_github.add_commit(world.repo, {"models/a.yaml": "junk\n"}, parent=base_head, branch=BRANCH)
    world.fake.reset_calls()
    number = revert(world.forge(), REVERT)
    assert world.counts() == (4, 4)           # branch, pull requests (none open), main, tree; 4 writes
    assert [c.body.get("force") for c in fake_github.calls_to("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}")] \
        == [True]
    head = fake_github.head(world.repo, BRANCH)
    assert fake_github.state.git.commits[head].parents == [base_head]
    assert fake_github.pull(world.repo, number).head_sha == head
    assert fake_github.read_file(world.repo, head, "models/a.yaml") == REVERT["models/a.yaml"]


@both_flavors
def test_nothing_to_revert(fake_github: FakeGitHub) -> None:
    world = revert_world(fake_github)
    world.fake.reset_calls()
    with pytest.raises(NothingToRevert):
        revert(world.forge(), {"models/a.yaml": MANIFESTS["models/a.yaml"], "models/gone.yaml": None})
    assert world.counts() == (3, 0)
    assert BRANCH not in fake_github.state.repos[world.repo.lower()].branches


def test_tree_changes_keep_modes_and_skip_what_is_already_there() -> None:
    current = {"run.sh": _Entry(git_blob_sha(b"echo 1\n"), "100755"), "same.txt": _Entry(git_blob_sha(b"x"), "100644")}
    files = {"run.sh": "echo 2\n", "same.txt": "x", "absent.txt": None, "new.txt": "n"}
    assert tree_changes(files, current) == [
        {"path": "new.txt", "mode": "100644", "type": "blob", "content": "n"},
        {"path": "run.sh", "mode": "100755", "type": "blob", "content": "echo 2\n"}]
    assert defuse_mentions("by @alice and @org/team, not mail@") == "by @\u200balice and @\u200borg/team, not mail@"


def stale_once(forge, name: str, value) -> None:
    """Make ``forge.<name>`` answer ``value`` once (a worker that read before another one wrote)."""
    real, answered = getattr(forge, name), []

    def stale(*args):
        if not answered:
            answered.append(True)
            return value
        return real(*args)

    setattr(forge, name, stale)


@both_flavors
@pytest.mark.parametrize("missed", ["_branch_sha", "_open_pull"])
def test_revert_race_with_another_worker_ends_on_the_same_pull_request(fake_github: FakeGitHub,
                                                                      missed: str) -> None:
    """Another worker created the branch (or its pull request) after this one looked: GitHub's 422
    ("Reference already exists" / "A pull request already exists") sends it round once more, and
    it returns that pull request, with the same contents."""
    world = revert_world(fake_github)
    number = revert(world.forge(), REVERT)
    late = world.forge()
    stale_once(late, missed, None)
    assert revert(late, REVERT) == number
    head = fake_github.head(world.repo, BRANCH)
    assert fake_github.pull(world.repo, number).head_sha == head
    assert fake_github.read_file(world.repo, head, "models/a.yaml") == REVERT["models/a.yaml"]
    assert len([p for p in fake_github.state.pulls.values() if p.repo == world.repo]) == 2
