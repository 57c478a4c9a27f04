"""The policy engine (checks/policy.py) and the default Rego bundle (policies/)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from modelherd.checks import Position, Severity
from modelherd.checks.policy import (
    PolicyDecision,
    PolicyEngine,
    PolicyError,
    Violation,
    default_modules,
    default_test_modules,
    discover_tests,
    parse_field,
    policy_input,
    run_policy_tests,
    to_findings,
)
from modelherd.manifest import ModelDeployment, effective
from modelherd.plan import Action, ApprovalRequirement, Change, changed_fields
from modelherd.registry import ModelVersionInfo
from modelherd.repoconfig import DEFAULT
from modelherd.settings import ClusterConfig

# ---------------------------------------------------------------------------------------------------
# The bundle's own tests, one pytest case per test_* rule

_BUNDLE_TESTS = discover_tests(default_test_modules())


@pytest.fixture(scope="module")
def bundle_results():
    return {r.name: r for r in run_policy_tests(default_modules(), default_test_modules())}


@pytest.mark.parametrize("file,package,rule", _BUNDLE_TESTS, ids=[t[2] for t in _BUNDLE_TESTS])
def test_bundle(bundle_results, file, package, rule):
    result = bundle_results[f"{package}.{rule}"]
    assert result.passed, result.error or f"{rule} ({file}) is false"


def test_every_rule_file_has_tests():
    rules = {name.rsplit("/", 1)[1].removesuffix(".rego") for name, _ in default_modules()} - {"common"}
    tested = {name.rsplit("/", 1)[1].removesuffix("_test.rego") for name, _ in default_test_modules()}
    assert rules <= tested


def test_policy_tests_report_failures_and_compile_errors():
    failing = [("t_test.rego", "package modelherd_test\nimport rego.v1\ntest_no if { 1 == 2 }\ntest_yes if true\n")]
    results = {r.name: r for r in run_policy_tests([], failing)}
    assert results["modelherd_test.test_no"].passed is False
    assert results["modelherd_test.test_yes"].passed is True
    broken = [("bad_test.rego", "package modelherd_test\nimport rego.v1\ntest_x if {\n  y := \n}\n")]
    [result] = run_policy_tests([], broken)
    assert not result.passed and result.file == "bad_test.rego" and "bad_test.rego:4" in result.error


# ---------------------------------------------------------------------------------------------------
# Inputs

MANIFEST = {
    "apiVersion": "modelherd.dev/v1", "kind": "ModelDeployment",
    "metadata": {"name": "fraud", "owners": ["@acme/risk-ml"], "labels": {"data-class": "internal"}},
    "spec": {
        "model": {"name": "fraud", "version": 8},
        "serving": {"runtime": "kserve", "format": "sklearn", "resources": {"cpu": "1", "memory": "2Gi"}},
        "environments": {
            "staging": {"cluster": "eu", "namespace": "models"},
            "production": {"cluster": "eu", "namespace": "models", "rollout": {"canary": [10, 100]}},
        },
    },
}
NOW = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def deployment(env: str, **spec_changes):
    raw = {**MANIFEST, "spec": {**MANIFEST["spec"], **spec_changes}}
    return effective(ModelDeployment.model_validate(raw), env)


def version(v: str, **tags) -> ModelVersionInfo:
    return ModelVersionInfo(name="fraud", version=v, status="READY", storage_uri="s3://m/fraud/" + v,
                            tags={"validation_status": "passed", **tags})


def update(env: str, head, base=None) -> Change:
    base = base or deployment(env, model={"name": "fraud", "version": 7})
    return Change("fraud", env, Action.UPDATE, base, head, "models/fraud.yaml", "models/fraud.yaml",
                  changed_fields(base, head))


def make_input(change: Change, *, cluster=ClusterConfig(provider="onprem"), candidate=None, current=None,
               now=NOW, pr=None):
    return policy_input(change, environment_config=DEFAULT.environment(change.environment),
                        cluster_facts=cluster.facts("eu") if cluster else None,
                        candidate=candidate if candidate is not None else version("8"),
                        current=current if current is not None else version("7"),
                        pr=pr, now=now, order=DEFAULT.order(change.environment))


@pytest.fixture(scope="module")
def engine():
    return PolicyEngine(default_modules(), {"ceilings": {"cpu": "4", "memory": "16Gi", "gpu": 2, "replicas": 20}})


def test_policy_input_document():
    change = update("production", deployment("production"))
    doc = make_input(change, pr={"number": 4, "author": "bob", "title": "v8", "base_ref": "main",
                                 "head_sha": "f00", "labels": ["ml"]})
    assert doc["manifest"]["model"]["version"] == 8 and doc["previous"]["model"]["version"] == 7
    assert doc["change"] == {"action": "update", "name": "fraud", "environment": "production",
                             "changed_fields": ["model.version"], "version_from": "7", "version_to": "8"}
    assert doc["environment"] == {"name": "production", "protected": True, "order": 1,
                                  "approvals": {"count": 1, "owners": True, "users": [], "teams": []}}
    assert doc["cluster"]["known"] is True and doc["cluster"]["onprem"] is True
    assert doc["registry"]["candidate"]["tags"] == {"validation_status": "passed"}
    assert doc["pr"]["labels"] == ["ml"]
    assert doc["now"] == "2026-11-02T10:00:00Z"


def test_policy_input_without_registry_facts_uses_manifest_references():
    head = deployment("staging", model={"name": "fraud", "alias": "champion"})
    change = Change("fraud", "staging", Action.CREATE, None, head, "models/fraud.yaml")
    doc = policy_input(change, environment_config=None, cluster_facts=None, candidate=None, current=None,
                       pr=None, now=datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))))
    assert doc["change"]["version_from"] is None and doc["change"]["version_to"] == "@champion"
    assert doc["previous"] is None and doc["pr"] is None
    assert doc["cluster"] == {"name": "eu", "known": False}
    assert doc["environment"]["protected"] is False
    assert doc["now"] == "2026-01-01T10:00:00Z"


# ---------------------------------------------------------------------------------------------------
# The engine

def test_a_good_change_is_allowed_and_asks_for_approval(engine):
    decision = engine.evaluate(make_input(update("production", deployment("production"))))
    assert decision.allowed and decision.warn == []
    assert decision.approvals == [ApprovalRequirement("production", 1, "version 8 enters protected production",
                                                      owners=True)]


def test_default_rules_fire_with_fields(engine):
    head = deployment("production", serving={"runtime": "kserve", "format": "sklearn",
                                             "resources": {"cpu": "6", "gpu": 1}})
    decision = engine.evaluate(make_input(update("production", head), cluster=ClusterConfig(provider="aws")))
    assert {(v.policy, v.field) for v in decision.deny} == {
        ("gpu-cluster", "serving.resources.gpu"), ("resource-ceilings", "serving.resources.cpu")}


def test_repo_policy_adds_to_the_default_bundle():
    repo = ("policies/owners.rego", 'package modelherd\nimport rego.v1\n\n'
            '# every model names a team\n'
            'deny contains {"msg": "name an owning team", "field": "owners"} if {\n'
            '  deploying\n  not startswith(concat(",", input.manifest.owners), "@")\n}\n'
            'warn contains "staging first" if input.environment.name == "production"\n')
    engine = PolicyEngine(default_modules() + [repo], {})
    head = deployment("production", model={"name": "fraud", "alias": "champion"})
    doc = make_input(update("production", head))
    doc["manifest"]["owners"] = ["alice"]
    decision = engine.evaluate(doc)
    assert {v.policy for v in decision.deny} == {"pinned-version", None}
    assert Violation("name an owning team", "owners", None) in decision.deny
    assert Violation("staging first") in decision.warn


def test_disable_list_switches_rules_off():
    head = deployment("production", model={"name": "fraud", "alias": "champion"})
    doc = make_input(update("production", head))
    assert {v.policy for v in PolicyEngine(default_modules(), {}).evaluate(doc).deny} == {"pinned-version"}
    engine = PolicyEngine(default_modules(), {"disable": ["pinned-version", "protected-approval"]})
    decision = engine.evaluate(doc)
    assert decision.deny == [] and decision.approvals == []


def test_freeze_window_uses_the_given_clock():
    data = {"freeze": [{"start": "2026-12-20T00:00:00Z", "end": "2027-01-04T00:00:00Z", "reason": "year end"}]}
    engine = PolicyEngine(default_modules(), data)
    change = update("staging", deployment("staging"))
    assert engine.evaluate(make_input(change)).allowed
    frozen = engine.evaluate(make_input(change, now=datetime(2026, 12, 24, tzinfo=UTC)))
    assert [v.policy for v in frozen.deny] == ["change-freeze"]


def test_evaluate_many_equals_one_by_one(engine):
    heads = [deployment("production"), deployment("staging"),
             deployment("production", model={"name": "fraud", "alias": "champion"}),
             deployment("production", serving={"runtime": "kserve", "format": "sklearn",
                                               "resources": {"memory": "32Gi"}})]
    docs = [make_input(update(h.environment, h), candidate=version("8", **({"modelherd.rejected": "bad"} if i == 1 else {})))
            for i, h in enumerate(heads)]
    assert engine.evaluate_many(docs) == [engine.evaluate(d) for d in docs]
    assert engine.evaluate_many([]) == []


def test_evaluate_is_thread_safe(engine):
    from concurrent.futures import ThreadPoolExecutor
    doc = make_input(update("production", deployment("production")))
    expected = engine.evaluate(doc)
    with ThreadPoolExecutor(4) as pool:
        assert all(d == expected for d in pool.map(lambda _: engine.evaluate(doc), range(40)))


# ---------------------------------------------------------------------------------------------------
# Broken policies are PolicyErrors that name the file

def _policy(body: str) -> tuple[str, str]:
    return ("policies/broken.rego", "package modelherd\n\nimport rego.v1\n\n" + body)


def test_syntax_error_names_file_and_line():
    with pytest.raises(PolicyError) as err:
        PolicyEngine(default_modules() + [_policy("deny contains msg if {\n  msg := \n}\n")], {})
    assert err.value.file == "policies/broken.rego" and err.value.line == 6
    assert str(err.value).startswith("policies/broken.rego:6:")


def test_conflict_at_evaluation_names_the_rule():
    engine = PolicyEngine([_policy('limit := 1\nlimit := 2 if input.now\ndeny contains "x" if limit > 3\n')], {})
    with pytest.raises(PolicyError) as err:
        engine.evaluate({"now": "2026-01-01T00:00:00Z"})
    assert err.value.file == "policies/broken.rego" and err.value.line == 5
    assert "multiple outputs" in str(err.value) and "limit" in str(err.value)


def test_unknown_function_names_the_call():
    engine = PolicyEngine([_policy('deny contains "x" if {\n  input.a\n  nosuch(1)\n}\n')], {})
    with pytest.raises(PolicyError) as err:
        engine.evaluate({"a": True})
    assert err.value.file == "policies/broken.rego" and err.value.line == 7


def test_wrong_output_shape_is_a_policy_error():
    engine = PolicyEngine([_policy('deny contains 42 if true\n')], {})
    with pytest.raises(PolicyError, match="string"):
        engine.evaluate({})
    engine = PolicyEngine([("old.rego", 'package modelherd\ndeny[msg] { msg := "a" }\n')], {})
    with pytest.raises(PolicyError, match="must be a set"):
        engine.evaluate({})


def test_constructs_that_crash_regopy_are_refused():
    with pytest.raises(PolicyError) as err:
        PolicyEngine([_policy('t if { count(deny) == 0 with input as {"a": 1} }\n')], {})
    assert err.value.file == "policies/broken.rego" and err.value.line == 5
    crasher = ("policies/crash.rego", 'package modelherd_test\nimport rego.v1\nfx := {"x": 7}\n'
               't if { count(data.modelherd.deny) == 1 with input.x as fx.x }\n')
    with pytest.raises(PolicyError, match="crashed"):
        PolicyEngine([_policy('deny contains "x" if input.x > 5\n'), crasher], {})
    [result] = run_policy_tests([_policy('deny contains "x" if input.x > 5\n')], [crasher])
    assert not result.passed and "crashed" in result.error


# ---------------------------------------------------------------------------------------------------
# Findings

def test_to_findings_locates_fields():
    decision = PolicyDecision(
        deny=[Violation("needs canary", "rollout.canary", "canary-required"), Violation("no")],
        warn=[Violation("step 0", "rollout.canary.0")], approvals=[])
    seen = []

    def locate(path):
        seen.append(path)
        return Position(12, 5) if path else Position(3, 1)

    findings = to_findings(decision, file="models/fraud.yaml", model="fraud", environment="production",
                           locate=locate)
    assert seen == [("rollout", "canary"), None, ("rollout", "canary", 0)]
    assert [(f.check, f.severity, f.position, f.hint) for f in findings] == [
        ("policy", Severity.ERROR, Position(12, 5), "policy rule canary-required"),
        ("policy", Severity.ERROR, Position(3, 1), None),
        ("policy", Severity.WARNING, Position(12, 5), None)]
    assert findings[0].one_line() == "models/fraud.yaml:12:5: error: needs canary (hint: policy rule canary-required)"


def test_parse_field():
    assert parse_field("serving.resources.gpu") == ("serving", "resources", "gpu")
    assert parse_field(["labels", "example.com/team"]) == ("labels", "example.com/team")
    assert parse_field(None) is None and parse_field("") is None
