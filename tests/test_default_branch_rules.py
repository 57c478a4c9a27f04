"""Rules and protection come from the default branch's tip, never from a pull request's own base — on
both forges, end to end (real webhook payloads in, through intake, the queue and the handlers, to the
fake GitHub / fake GitLab, each validated against its forge's OpenAPI description).

* A pull request into another branch (``lax``, whose ``.modelherd.yaml`` does not protect production)
  is planned with the default branch's rules, but never deploys: ``/deploy`` and ``/rollback`` refuse
  and say why, it holds no lock, and merging it starts nothing.
* A rule tightened on the default branch after a pull request was opened applies to its ``/deploy``
  at once, even before any push webhook re-planned it.
"""

from __future__ import annotations

from typing import Any

import pytest
from modelherd.registry.memory import InMemoryRegistry

from tests.test_forges_e2e import PASSED, Forge, _github, _gitlab

NOT_DEFAULT = "is not the default branch"


@pytest.fixture
def registry() -> InMemoryRegistry:
    reg = InMemoryRegistry()
    for version, auc in ((1, 0.931), (2, 0.947), (3, 0.95)):
        reg.add("fraud-detector", version, metrics={"auc": auc, "latency_p99_ms": 30}, tags=PASSED)
    return reg


@pytest.fixture(params=["github", "gitlab"])
def forge(request: pytest.FixtureRequest, tmp_path: Any, registry: InMemoryRegistry) -> Any:
    app = (_github if request.param == "github" else _gitlab)(request, tmp_path, registry)
    yield Forge(request.param, app)
    app.close()


def relaxed(config: str) -> str:
    """``.modelherd.yaml`` with production neither protected nor needing an approval."""
    out = config.replace("    approvals: {count: 1, owners: true}\n", "").replace("protected: true", "protected: false")
    assert out != config
    return out


def open_into(forge: Forge, branch: str, files: dict[str, str | None], author: str = "alice") -> int:
    """Open a PR/MR from a new branch ``feat`` into ``branch`` (one commit on its tip writing ``files``),
    deliver "opened" and run the jobs; its number (GitLab: iid)."""
    app = forge.app
    base = app.fake.head(app.repo, branch)
    head = app.fake.add_commit(app.repo, files, parent=base, author=author)
    if forge.name == "github":
        number = app.fake.open_pull(app.repo, base, head, author=author, base_ref=branch, head_ref="feat")
        app.deliver("pull_request", app.pull_request_payload("opened", number))
    else:
        number = app.fake.open_merge_request(app.repo, base, head, author, source_branch="feat",
                                             target_branch=branch)
        app.deliver("Merge Request Hook", app.merge_request_hook("open", number, user=author))
    app.work()
    return number


def lax_pull(forge: Forge) -> int:
    """The audit's scenario: a branch ``lax`` whose rules leave production open, and a PR from ``feat``
    into it that sets production's version (fraud-detector 1 → 2)."""
    app = forge.app
    app.fake.add_commit(app.repo, {".modelherd.yaml": relaxed(app.file(".modelherd.yaml"))}, branch="lax",
                        message="Looser rules")
    return open_into(forge, "lax", forge.app.bump("fraud-detector", 1, 2))


def deployments(forge: Forge) -> list[Any]:
    """Deployments the forge shows (GitHub deployments / GitLab deployments)."""
    return list(forge.app.fake.deployments(forge.app.repo))


def assert_nothing_deployed(forge: Forge, registry: InMemoryRegistry) -> None:
    forge.app.step()
    assert forge.app.store.list_rollouts(repo=forge.app.repo) == []
    for env in ("staging", "production"):
        with pytest.raises(Exception, match="no alias"):
            registry.resolve("fraud-detector", alias=env)
    assert deployments(forge) == []


# -- a pull request into another branch --------------------------------------------------------------


def test_deploy_of_a_pull_request_into_another_branch_is_refused(forge, registry):
    number = lax_pull(forge)
    reply = forge.command(number, "alice", "/deploy production")
    assert "refused" in reply and NOT_DEFAULT in reply, reply
    assert "`lax`" in reply and "`main`" in reply, reply
    assert_nothing_deployed(forge, registry)
    assert forge.app.store.locks(forge.app.repo) == []              # it never took production's lock


def test_deploy_of_staging_from_another_branch_is_refused_too(forge, registry):
    number = lax_pull(forge)
    reply = forge.command(number, "alice", "/deploy staging")
    assert "refused" in reply and NOT_DEFAULT in reply, reply
    assert_nothing_deployed(forge, registry)


def test_plan_of_a_pull_request_into_another_branch_says_it_cannot_deploy(forge, registry):
    number = lax_pull(forge)
    reply = forge.command(number, "alice", "/plan")
    assert "planned" in reply and NOT_DEFAULT in reply, reply
    [sticky] = forge.sticky(number)
    assert "v1 → v2" in sticky                                     # planned all the same
    assert "cannot deploy" in sticky and NOT_DEFAULT in sticky, sticky
    # the default branch's rules were applied, not lax's: production needs an owner's approval
    assert forge.status(forge.head(number), "modelherd/approvals") == "pending"
    assert "No approval is needed" not in sticky
    assert forge.app.store.locks(forge.app.repo) == []
    assert_nothing_deployed(forge, registry)


def test_rollback_on_a_pull_request_into_another_branch_is_refused(forge):
    number = lax_pull(forge)
    reply = forge.command(number, "alice", "/rollback production")
    assert "refused" in reply and NOT_DEFAULT in reply, reply


def test_merging_a_pull_request_into_another_branch_starts_no_rollout(forge, registry):
    number = lax_pull(forge)
    forge.approve(number, "bob")
    forge.app.work()
    forge.merge(number)
    forge.app.work()
    assert_nothing_deployed(forge, registry)
    assert not any("rolling out" in body for body in forge.comments(number))


# -- rules tightened on the default branch after the pull request opened --------------------------------


def tighten(config: str, how: str) -> str:
    if how == "protected":          # production protected again: deployed after merge only
        return config.replace("protected: false", "protected: true")
    # staging needs carol's approval (she never gives it)
    return config.replace("  - name: staging\n", "  - name: staging\n    approvals: {count: 1, users: [carol]}\n")


@pytest.mark.parametrize("how", ["protected", "approval"])
def test_deploy_applies_a_rule_tightened_on_the_default_branch_since_the_plan(forge, registry, how):
    app = forge.app
    app.fake.add_commit(app.repo, {".modelherd.yaml": relaxed(app.file(".modelherd.yaml"))}, branch="main",
                        message="Open production")
    number = open_into(forge, "main", app.bump("fraud-detector", 1, 2))
    strict = tighten(app.file(".modelherd.yaml"), how)
    assert strict != app.file(".modelherd.yaml")
    app.fake.add_commit(app.repo, {".modelherd.yaml": strict}, branch="main", message="Tighten")
    # no push webhook: /deploy itself must read the rules at the default branch's tip
    env = "production" if how == "protected" else "staging"
    reply = forge.command(number, "alice", f"/deploy {env}")
    expected = "is protected" if how == "protected" else "approvals are missing"
    assert "refused" in reply and expected in reply, reply
    assert_nothing_deployed(forge, registry)


# -- after a merge into the default branch ----------------------------------------------------------------


def test_a_merged_pull_request_does_not_loosen_the_rules_of_its_own_rollout(forge, registry):
    """The default branch's tip holds the merged change itself: when that change loosened the rules, its
    own rollout keeps those it was planned with (production needed an owner's approval; nobody gave it)."""
    app = forge.app
    number = open_into(forge, "main", {**app.bump("fraud-detector", 1, 2),
                                       ".modelherd.yaml": relaxed(app.file(".modelherd.yaml"))})
    assert forge.status(forge.head(number), "modelherd/approvals") == "pending"
    forge.merge(number)
    app.run_rollouts()
    assert {r.environment: r.state for r in app.store.list_rollouts(repo=app.repo)} == {"staging": "succeeded"}
    assert registry.resolve("fraud-detector", alias="staging").version == "2"
    with pytest.raises(Exception, match="no alias"):
        registry.resolve("fraud-detector", alias="production")
    assert any("its approval rules were not satisfied when it was merged" in body for body in forge.comments(number))
