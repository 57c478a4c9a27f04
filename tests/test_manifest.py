"""The manifest models: what authors may write, and what an environment ends up serving."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest
from pydantic import ValidationError

from modelherd.manifest import GateMode, Goal, MetricGate, ModelDeployment, Rollout, effective, json_schema, parse_duration


def manifest(**spec_overrides) -> ModelDeployment:
    spec = {
        "model": {"name": "fraud-detector", "version": 7},
        "serving": {"runtime": "kserve", "format": "sklearn", "resources": {"cpu": "1", "memory": "2Gi"},
                    "replicas": {"min": 2, "max": 8}},
        "gates": {"metrics": {"auc": {"min": 0.95}, "latency_p99_ms": {"max": 40}}},
        "environments": {
            "staging": {"cluster": "onprem-a", "namespace": "risk-staging", "model": {"version": 8}},
            "production": {"cluster": "aws-eu-1", "namespace": "risk", "replicas": {"min": 4, "max": 16},
                           "rollout": {"canary": [10, 50, 100], "verify_for": "10m"}},
        },
    }
    spec.update(spec_overrides)
    return ModelDeployment.model_validate({"apiVersion": "modelherd.dev/v1", "kind": "ModelDeployment",
                                           "metadata": {"name": "fraud-detector", "owners": ["alice", "@acme/risk-ml"]},
                                           "spec": spec})


def test_effective_folds_environment_overrides_in():
    m = manifest()
    staging, production = effective(m, "staging"), effective(m, "production")
    assert staging.model.version == 8 and production.model.version == 7
    assert production.serving.replicas.max == 16 and staging.serving.replicas.max == 8
    assert production.rollout.strategy == "canary" and production.rollout.verify_seconds == 600
    assert staging.rollout.strategy == "direct"
    assert staging.owners == ("alice", "@acme/risk-ml")


@pytest.mark.parametrize("gate,goal", [({"min": 0.9}, Goal.MAXIMIZE), ({"max": 40}, Goal.MINIMIZE),
                                       ({"goal": "minimize", "max_regression": "5%"}, Goal.MINIMIZE)])
def test_a_gate_knows_which_way_is_better(gate, goal):
    assert MetricGate.model_validate(gate).direction is goal


def test_gate_regression_limits_absolute_and_relative():
    assert MetricGate(min=0.9, max_regression=0.01).regression_limit(0.95) == pytest.approx(0.01)
    assert MetricGate(max=40, max_regression="10%").regression_limit(30) == pytest.approx(3.0)
    assert MetricGate(min=0.9).mode is GateMode.ENFORCE


@pytest.mark.parametrize("gate,message", [
    ({"min": 1, "max": 0}, "above max"),
    ({"min": 0.1, "max": 0.9}, "which way is better"),
    ({"max_regression": 0.1}, "goal"),
    ({"min": 0.1, "max_regression": -1}, "negative"),
])
def test_ambiguous_gates_are_refused(gate, message):
    with pytest.raises(ValidationError, match=message):
        MetricGate.model_validate(gate)


@pytest.mark.parametrize("text,seconds", [("10m", 600), ("1h30m", 5400), ("45s", 45), (90, 90)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_canary_must_end_at_full_traffic():
    with pytest.raises(ValidationError, match="must be 100"):
        Rollout(canary=[10, 50])


def test_deployment_runtime_needs_an_image():
    with pytest.raises(ValidationError, match="needs `image`"):
        manifest(serving={"runtime": "deployment"})


def test_json_schema_accepts_the_examples_and_rejects_typos(tmp_path):
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    good = {"apiVersion": "modelherd.dev/v1", "kind": "ModelDeployment", "metadata": {"name": "m"},
            "spec": {"model": {"name": "m", "version": 1}, "serving": {"runtime": "kserve", "format": "onnx"},
                     "environments": {"staging": {"cluster": "c", "namespace": "n"}}}}
    jsonschema.validate(good, schema)
    bad = json.loads(json.dumps(good))
    bad["spec"]["serving"]["replica"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_schema_command_prints_the_schema():
    out = subprocess.run([sys.executable, "-m", "modelherd", "schema"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["title"] == "modelherd ModelDeployment"
