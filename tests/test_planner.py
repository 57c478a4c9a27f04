"""The planner end to end over a real git repository, with the real policies and an in-memory registry.

What a reviewer would notice: which change is blocked and why, rules taken from the base branch, clear
errors when the registry is down, and a plan that costs only the files the change touches.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from modelherd.checks import Conclusion, Severity
from modelherd.forges.localgit import LocalGit
from modelherd.plan import Action
from modelherd.planner import PlanContext, build_plan
from modelherd.registry.memory import InMemoryRegistry
from tests.gitrepo import branch, example_repo, read

NOW = "2026-11-26T12:00:00Z"
CLUSTERS = {
    "onprem-a": {"name": "onprem-a", "provider": "onprem", "onprem": True, "gpus": False, "known": True},
    "onprem-gpu": {"name": "onprem-gpu", "provider": "onprem", "onprem": True, "gpus": True, "known": True},
    "aws-eu-1": {"name": "aws-eu-1", "provider": "aws", "onprem": False, "gpus": False, "known": True},
    "gcp-us-1": {"name": "gcp-us-1", "provider": "gcp", "onprem": False, "gpus": False, "known": True},
}
PASSED = {"validation_status": "passed"}


@pytest.fixture
def registry() -> InMemoryRegistry:
    reg = InMemoryRegistry()
    reg.add("fraud-detector", 1, metrics={"auc": 0.931, "latency_p99_ms": 31}, tags=PASSED)
    reg.add("fraud-detector", 2, metrics={"auc": 0.947, "latency_p99_ms": 29.5}, tags=PASSED)
    reg.add("churn-model", 3, metrics={"f1": 0.78, "accuracy": 0.88}, tags=PASSED)
    reg.add("churn-model", 4, metrics={"f1": 0.71, "accuracy": 0.84}, tags=PASSED)
    reg.add("search-reranker", 2, metrics={"ndcg_at_10": 0.44}, tags=PASSED)
    return reg


@pytest.fixture
def repo(tmp_path):
    return example_repo(tmp_path / "repo")


def plan_for(repo, registry, files, name="change"):
    branch(repo, name, files)
    source = LocalGit(repo)
    ctx = PlanContext(registries={"mlflow": registry}, clusters=CLUSTERS, now=NOW)
    return build_plan(source, source.resolve("main"), source.resolve(name), ctx)


def bump(repo, model, old, new):
    rel = f"models/{model}.yaml"
    return {rel: read(repo, rel).replace(f"name: {model}, version: {old}}}", f"name: {model}, version: {new}}}")}


def report(plan, name, env):
    return next(r for r in plan.reports if r.change.key == (name, env))


def test_a_passing_and_a_failing_model(repo, registry):
    plan = plan_for(repo, registry, {**bump(repo, "fraud-detector", 1, 2), **bump(repo, "churn-model", 3, 4)})
    assert plan.conclusion is Conclusion.FAILURE
    fraud, churn = report(plan, "fraud-detector", "production"), report(plan, "churn-model", "production")
    assert not fraud.blocked and churn.blocked
    assert (fraud.current.version, fraud.candidate.version) == ("1", "2")
    [f1] = [m for m in churn.metrics if m.metric == "f1"]
    assert f1.verdict == "fail" and f1.delta == pytest.approx(-0.07)
    [error] = [f for f in churn.findings if f.severity is Severity.ERROR]
    assert error.file == "models/churn-model.yaml" and error.position.line == 17   # the f1 gate line
    assert plan.checks["metrics"].conclusion is Conclusion.FAILURE
    assert plan.checks["schema"].conclusion is Conclusion.SUCCESS
    assert "storageUri: s3://models/fraud-detector/2" in fraud.diff
    assert [a.environment for a in fraud.approvals] == ["production"]   # config + policy, merged into one


def test_changes_come_in_promotion_order(repo, registry):
    plan = plan_for(repo, registry, bump(repo, "fraud-detector", 1, 2))
    assert [r.change.environment for r in plan.reports] == ["staging", "production"]


def test_rules_are_read_from_the_base_branch_not_the_pull_request(repo, registry):
    loosen = read(repo, ".modelherd.yaml").replace("protected: true", "protected: false")
    direct = read(repo, "models/fraud-detector.yaml").replace(
        "rollout: {canary: [10, 50, 100], verify_for: 10m}", "rollout: {}").replace("version: 1}", "version: 2}")
    plan = plan_for(repo, registry, {".modelherd.yaml": loosen, "models/fraud-detector.yaml": direct,
                                     "policies/team.rego": "package modelherd\n"})
    prod = report(plan, "fraud-detector", "production")
    assert any("canary" in f.message and f.severity is Severity.ERROR for f in prod.findings)
    assert plan.checks["policy"].conclusion is Conclusion.FAILURE


def test_the_repositorys_own_policy_applies(repo, registry):
    no_owners = read(repo, "models/fraud-detector.yaml").replace('owners: [alice, "@acme/risk-ml"]', "owners: []")
    plan = plan_for(repo, registry, {"models/fraud-detector.yaml": no_owners})
    staging = report(plan, "fraud-detector", "staging")
    [finding] = [f for f in staging.findings if "owners is empty" in f.message]
    assert finding.position.line == 7   # metadata.owners


def test_registry_outage_is_a_check_error_with_the_reason(repo, registry):
    registry.down = "http://mlflow.internal: connection refused"
    plan = plan_for(repo, registry, bump(repo, "fraud-detector", 1, 2))
    assert plan.conclusion is Conclusion.ERROR
    assert plan.checks["metrics"].conclusion is Conclusion.ERROR
    assert "connection refused" in plan.checks["metrics"].summary
    assert registry.calls == 2   # v2 and v1, each asked once although two environments use them


def test_an_unknown_version_fails_at_the_model_line(repo, registry):
    plan = plan_for(repo, registry, bump(repo, "fraud-detector", 1, 9))
    finding = next(f for f in report(plan, "fraud-detector", "staging").findings if "no version 9" in f.message)
    assert finding.position.line == 10 and plan.checks["metrics"].conclusion is Conclusion.FAILURE


def test_a_version_no_server_can_fetch_is_a_finding_not_a_crash(repo, registry):
    """The registry hands out a ``models:/`` URI as the artifact location: rendering refuses it, and the
    plan says so at the model line instead of raising."""
    v2 = registry.versions[("fraud-detector", "2")]
    registry.versions[("fraud-detector", "2")] = replace(v2, storage_uri="models:/fraud-detector/2")
    plan = plan_for(repo, registry, bump(repo, "fraud-detector", 1, 2))
    finding = next(f for f in report(plan, "fraud-detector", "staging").findings if "rendered" in f.message)
    assert "models:/fraud-detector/2 is a registry URI" in finding.message
    assert finding.position.line == 10 and plan.checks["schema"].conclusion is Conclusion.FAILURE


def test_a_nan_metric_in_the_registry_blocks_the_change(repo, registry):
    registry.add("fraud-detector", 2, metrics={"auc": float("nan"), "latency_p99_ms": 29.5}, tags=PASSED)
    plan = plan_for(repo, registry, bump(repo, "fraud-detector", 1, 2))
    assert plan.checks["metrics"].conclusion is Conclusion.FAILURE
    finding = next(f for f in report(plan, "fraud-detector", "production").findings if "NaN" in f.message)
    assert finding.message == "auc is NaN for version 2: not a number, so the gate cannot pass"
    assert finding.position.line == 19


def test_a_broken_manifest_is_reported_and_the_others_still_planned(repo, registry):
    broken = read(repo, "models/churn-model.yaml").replace("replicas: {min: 1, max: 4}", "replicas: {min: 1, max: four}")
    plan = plan_for(repo, registry, {**bump(repo, "fraud-detector", 1, 2), "models/churn-model.yaml": broken})
    assert plan.checks["schema"].conclusion is Conclusion.FAILURE
    [finding] = plan.file_findings
    assert (finding.file, finding.position.line) == ("models/churn-model.yaml", 14)
    assert {r.change.name for r in plan.reports} == {"fraud-detector"}   # churn-model is not "deleted"


def test_moving_a_manifest_to_another_file_is_not_a_delete(repo, registry):
    text = read(repo, "models/fraud-detector.yaml")
    plan = plan_for(repo, registry, {"models/fraud-detector.yaml": None, "models/risk/fraud-detector.yaml": text})
    assert {r.change.action for r in plan.reports} == {Action.NOOP}
    assert not plan.has_changes


def test_removing_an_environment_is_a_delete_that_needs_approval(repo, registry):
    text = read(repo, "models/search-reranker.yaml")
    staging_only = text[: text.index("    production:")]
    plan = plan_for(repo, registry, {"models/search-reranker.yaml": staging_only})
    prod = report(plan, "search-reranker", "production")
    assert prod.change.action is Action.DELETE and prod.rendered_after == []
    assert prod.approvals and any(f.severity is Severity.WARNING for f in prod.findings)


def test_a_change_without_manifests_is_neutral(repo, registry):
    plan = plan_for(repo, registry, {"README.md": "docs\n"})
    assert plan.files == [] and plan.conclusion is Conclusion.NEUTRAL


def test_a_broken_policy_on_the_base_is_a_policy_error_naming_the_file(repo, registry):
    branch(repo, "bad-policy", {"policies/broken.rego": "package modelherd\nimport rego.v1\ndeny contains x if {\n"})
    from tests.gitrepo import git
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--ff-only", "bad-policy")
    plan = plan_for(repo, registry, bump(repo, "fraud-detector", 1, 2))
    assert plan.checks["policy"].conclusion is Conclusion.ERROR
    assert "policies/broken.rego" in plan.checks["policy"].summary


def test_deleting_from_a_protected_environment_needs_the_same_approvals_as_an_update(repo, registry):
    update = report(plan_for(repo, registry, bump(repo, "fraud-detector", 1, 2), "update"), "fraud-detector",
                    "production")
    delete = report(plan_for(repo, registry, {"models/fraud-detector.yaml": None}, "delete"), "fraud-detector",
                    "production")
    assert delete.change.action is Action.DELETE
    rules = lambda r: {(a.count, a.users, a.teams, a.owners) for a in r.approvals}  # noqa: E731
    assert rules(update) and rules(delete) == rules(update)
    assert any("is deleted from protected production" in a.reason for a in delete.approvals)
