"""The GitHub App's permissions: the fake GitHub refuses an installation token what its permissions do
not allow (GitHub's 403 "Resource not accessible by integration"), the permissions come from
``app.yaml``, every endpoint the fake serves has its entry in ``tests/fakes/github_permissions.py``,
and ``app.yaml`` asks for nothing the product does not use (README's "least permissions").

The defect this caught: ``/rollback`` opens its revert pull request through ``POST /git/trees``,
``/git/commits`` and ``/git/refs``, which need ``contents: write``, while ``app.yaml`` asked for
``contents: read`` — on GitHub every revert pull request failed with 403."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from modelherd.forges.base import CheckReport, CheckStatus
from modelherd.forges.github import GitHubError

from tests.fakes import github_permissions as perms
from tests.fakes.github import FakeGitHub, served_templates
from tests.fakes.openapi import load_github_description
from tests.test_forge_github import FLAVORS, MARKER, World, both_flavors, plan_sequence

ROOT = Path(__file__).resolve().parents[1]
REVERT = {"models/m0.yaml": "name: m0\nreplicas: 3\n", "models/gone.yaml": None}
DOCS = {"github.com": "https://docs.github.com/rest/git/trees#create-a-tree",
        "ghes-3.19": "https://docs.github.com/enterprise-server@3.19/rest/git/trees#create-a-tree"}


def open_revert(forge) -> int:
    return forge.open_revert_pull("main", REVERT, branch="modelherd/revert-r1", title="Revert m0",
                                  body="Rolled back by @carol.")


# -- the fake enforces the installation's permissions -------------------------------------------------


@both_flavors
def test_revert_pull_request_is_refused_without_contents_write(fake_github: FakeGitHub) -> None:
    """What GitHub did with the permissions app.yaml used to ask for (contents: read)."""
    world = World(fake_github)
    before = perms.app_permissions()
    fake_github.set_installation_permissions("acme", {**before, "contents": "read"})
    with pytest.raises(GitHubError) as refused:
        open_revert(world.forge())
    assert refused.value.status == 403
    assert "Resource not accessible by integration" in str(refused.value)
    assert [c.status for c in fake_github.calls_to("POST", "/repos/{owner}/{repo}/git/trees")] == [403]
    assert fake_github.denied == [("POST", "/repos/{owner}/{repo}/git/trees", "contents: write")]
    assert fake_github.head(world.repo, "main") == world.base          # nothing was written


@both_flavors
def test_the_403_body_is_githubs(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    fake_github.set_installation_permissions("acme", {"metadata": "read", "contents": "read"})
    world.forge().change_request(world.number)                        # mints a token with those
    token = next(iter(fake_github.state.tokens))
    answer = requests.post(f"{fake_github.base_url}/repos/{world.repo}/git/trees",
                           json={"tree": [{"path": "a", "mode": "100644", "type": "blob", "content": "x"}]},
                           headers={"Authorization": f"token {token}"}, timeout=10)
    assert answer.status_code == 403
    assert answer.json() == {"message": "Resource not accessible by integration",
                             "documentation_url": DOCS[fake_github.flavor], "status": "403"}


@both_flavors
def test_revert_pull_request_opens_with_the_permissions_of_app_yaml(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    number = open_revert(world.forge())
    assert fake_github.pull(world.repo, number).head_ref == "modelherd/revert-r1"
    assert fake_github.denied == []


@both_flavors
def test_tokens_carry_the_installations_permissions(fake_github: FakeGitHub) -> None:
    """The token's ``permissions`` are what the installation granted; a token asking for a subset
    gets that subset, and asking for more than granted is refused (422)."""
    world = World(fake_github)
    world.forge().change_request(world.number)
    token = next(iter(fake_github.state.tokens.values()))
    assert token.permissions == perms.app_permissions()
    granted = {"metadata": "read", "contents": "read"}
    assert perms.narrowed(granted, {"contents": "read"}) == {"contents": "read"}
    assert perms.narrowed(granted, {"contents": "write"}) is None


@both_flavors
def test_comment_works_with_issues_or_pull_requests_but_a_reaction_needs_issues(fake_github: FakeGitHub) -> None:
    world = World(fake_github)
    fake_github.set_installation_permissions("acme", {"metadata": "read", "pull_requests": "write"})
    forge = world.forge()
    comment = forge.create_comment(world.number, "hello")
    with pytest.raises(GitHubError) as refused:
        forge.react(world.number, comment, "eyes")
    assert refused.value.status == 403
    assert fake_github.denied == [("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
                                   "issues: write")]


# -- the table covers what the fake serves ------------------------------------------------------------


def test_every_served_endpoint_has_its_permissions() -> None:
    from tests.fakes.github import _ROUTES

    served = set(_ROUTES)
    assert served - perms.APP_ENDPOINTS - set(perms.ENDPOINTS) == set(), \
        "endpoints the fake serves without an entry in tests/fakes/github_permissions.py"
    assert set(perms.ENDPOINTS) - served == set(), "entries for endpoints the fake does not serve"
    assert perms.APP_ENDPOINTS <= served


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_table_names_real_operations(flavor: str) -> None:
    paths = load_github_description(flavor)["paths"]
    for method, template in perms.ENDPOINTS:
        assert method.lower() in paths.get(template, {}), f"{method} {template} is not in {flavor}'s description"
    assert {t for _, t in perms.ENDPOINTS} <= served_templates()


def test_an_endpoint_missing_from_the_table_is_a_violation(fake_github: FakeGitHub,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(fake_github)
    monkeypatch.delitem(perms.ENDPOINTS, ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"))
    with pytest.raises(GitHubError):
        world.forge().change_request(world.number)
    assert any("has no entry in tests/fakes/github_permissions.py" in v for v in fake_github.take_violations())


# -- app.yaml asks for what the product uses, nothing more ---------------------------------------------


def tour(world: World) -> None:
    """Every operation of the GitHub forge, as the handlers use them."""
    forge = world.forge()
    plan_sequence(forge, world.number, annotations=60)              # PR, files, contents, tree, comment, checks
    cr = forge.change_request(world.number)
    forge.reviews(world.number)
    forge.commits(world.number)
    forge.permission("alice")
    forge.team_membership("acme", "ml-reviewers", "alice")
    comment = forge.create_comment(world.number, "/deploy prod")
    forge.react(world.number, comment, "eyes")
    forge.open_pulls()
    forge.reader(cr).read_many(cr.head_sha, [f"models/m{i}.yaml" for i in range(world.n)])   # the archive
    deployment = forge.create_deployment(cr.head_sha, "prod", description="rollout 1",
                                         payload={"modelherd_rollout": "r1"}, production=True)
    forge.set_deployment_status(deployment, "in_progress", description="canary 10%")
    forge.set_deployment_status(deployment, "success", description="done")
    forge.retire_environment("prod")
    forge.report_check(cr.head_sha, CheckReport("modelherd/rollout", CheckStatus.IN_PROGRESS, title="rolling out",
                                                summary="10%"))
    open_revert(forge)


def installation_calls(fake: FakeGitHub) -> set[tuple[str, str]]:
    return {(c.method, c.template) for c in fake.calls
            if c.template and (c.method, c.template) not in perms.APP_ENDPOINTS and c.template.startswith("/")}


def weaker(level: str) -> str | None:
    return {"admin": "write", "write": "read", "read": None}[level]


@both_flavors
def test_app_yaml_asks_for_exactly_what_the_product_uses(fake_github: FakeGitHub) -> None:
    world = World(fake_github, 12)
    tour(world)
    assert fake_github.denied == []
    used = installation_calls(fake_github)
    granted = perms.app_permissions()
    assert granted.get("metadata") == "read"                          # GitHub makes it mandatory
    unused = []
    for name, level in granted.items():
        if name == "metadata":
            continue
        less = {k: v for k, v in granted.items() if k != name}
        if weaker(level):
            less[name] = weaker(level)
        if all(perms.allowed(less, method, template) for method, template in used):
            unused.append(f"{name}: {level}")
    assert unused == [], f"app.yaml asks for more than the product uses: {unused}"


def test_readme_lists_the_permissions_of_app_yaml() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("| permission | access |", 1)[1].split("\n\n", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| (read|write) \|", section, flags=re.MULTILINE))
    assert rows == perms.app_permissions()
    assert "[SECURITY.md](SECURITY.md)" in readme
    security = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    for name, level in perms.app_permissions().items():
        assert re.search(rf"\| `{name}` \| {level} \|", security), f"SECURITY.md lacks {name}: {level}"
