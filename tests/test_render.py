"""Rendering serving objects: every object validates against the real schemas, and diffs are clean."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modelherd.manifest import Deployment, ModelDeployment, Resources, effective
from modelherd.registry import ModelVersionInfo
from modelherd.render import (ANNOTATION_DEPLOYMENT_MODE, GPU_PRODUCT_LABEL, GPU_RESOURCE, LABEL_VERSION,
                              RenderError, deployable, labels, render, sanitize_label_key,
                              sanitize_label_value)
from modelherd.yamldiff import diff, to_yaml
from tests.kube_schemas import structural_to_jsonschema, validate_builtin, validate_inferenceservice

V7 = ModelVersionInfo(name="fraud-detector", version="7", status="READY",
                      storage_uri="s3://models/fraud/7/artifacts", source="models:/m-7", run_id="run7")
V6 = ModelVersionInfo(name="fraud-detector", version="6", status="READY",
                      storage_uri="s3://models/fraud/6/artifacts", source="models:/m-6", run_id="run6")


def make(serving: dict[str, Any] | None = None, *, kserve: bool = True, labels_: dict[str, str] | None = None,
         name: str = "fraud", model: str = "fraud-detector") -> Deployment:
    """A ``prod`` Deployment of a manifest whose serving block is the defaults updated by ``serving``."""
    base: dict[str, Any] = ({"runtime": "kserve", "format": "sklearn"} if kserve
                            else {"runtime": "deployment", "image": "ghcr.io/acme/server:1.2", "port": 8000})
    manifest = ModelDeployment.model_validate({
        "apiVersion": "modelherd.dev/v1", "kind": "ModelDeployment",
        "metadata": {"name": name, "labels": labels_ or {}},
        "spec": {"model": {"name": model, "version": 7}, "serving": {**base, **(serving or {})},
                 "environments": {"prod": {"cluster": "east", "namespace": "ml-prod"}}},
    })
    return effective(manifest, "prod")


def isvc(dep: Deployment, version: ModelVersionInfo | None = V7, **kw: Any) -> dict[str, Any]:
    """The single InferenceService rendered for ``dep``, asserted valid against the CRD."""
    [obj] = render(dep, version, **kw)
    assert obj["kind"] == "InferenceService"
    assert validate_inferenceservice(obj) == []
    return obj


def predictor(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["predictor"]


# ------------------------------------------------------------------------------------------ KServe

def test_sklearn_cpu() -> None:
    obj = isvc(make({"resources": {"cpu": "500m", "memory": "1Gi", "cpu_limit": 1, "memory_limit": "2Gi"}}))
    model = predictor(obj)["model"]
    assert obj["apiVersion"] == "serving.kserve.io/v1beta1"
    assert obj["metadata"]["name"] == "fraud" and obj["metadata"]["namespace"] == "ml-prod"
    assert model["modelFormat"] == {"name": "sklearn"}
    assert model["storageUri"] == V7.storage_uri
    assert model["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                  "limits": {"cpu": "1", "memory": "2Gi"}}
    assert obj["metadata"]["annotations"][ANNOTATION_DEPLOYMENT_MODE] == "Standard"
    assert predictor(obj)["minReplicas"] == 1 and predictor(obj)["maxReplicas"] == 1
    assert "nodeSelector" not in predictor(obj) and "canary" not in obj["spec"]


def test_gpu_with_type() -> None:
    obj = isvc(make({"format": "pytorch", "resources": {"gpu": 2, "gpu_type": "NVIDIA-A100-SXM4-80GB"}}))
    model = predictor(obj)["model"]
    assert model["resources"]["requests"][GPU_RESOURCE] == "2"
    assert model["resources"]["limits"][GPU_RESOURCE] == "2"
    assert predictor(obj)["nodeSelector"] == {GPU_PRODUCT_LABEL: "NVIDIA-A100-SXM4-80GB"}


def test_gpu_type_that_no_label_can_hold_is_refused() -> None:
    with pytest.raises(ValidationError, match="gpu_type"):       # by the manifest, at file:line:column
        make({"resources": {"gpu": 1, "gpu_type": "A100 80GB"}})
    dep = make({"resources": {"gpu": 1}})
    serving = dep.serving.model_copy(update={"resources": Resources.model_construct(gpu=1, gpu_type="A100 80GB")})
    with pytest.raises(RenderError, match="gpu_type"):          # and still by the renderer
        render(dep.model_copy(update={"serving": serving}), V7)


def test_autoscaling_and_timeout() -> None:
    obj = isvc(make({"replicas": {"min": 2, "max": 8, "scale_metric": "concurrency", "scale_target": 10},
                     "timeout_seconds": 120}))
    p = predictor(obj)
    assert (p["minReplicas"], p["maxReplicas"], p["scaleMetric"], p["scaleTarget"], p["timeout"]) == \
        (2, 8, "concurrency", 10, 120)


def test_knative_canary_ten_percent() -> None:
    obj = isvc(make({"deployment_mode": "Knative"}), canary_percent=10)
    assert obj["metadata"]["annotations"][ANNOTATION_DEPLOYMENT_MODE] == "Knative"
    assert predictor(obj)["canaryTrafficPercent"] == 10
    assert predictor(obj)["model"]["storageUri"] == V7.storage_uri
    assert "canary" not in obj["spec"]


@pytest.mark.parametrize("percent", [None, 100])
def test_full_rollout_has_no_canary_fields(percent: int | None) -> None:
    for mode in ("Knative", "Standard"):
        obj = isvc(make({"deployment_mode": mode}), canary_percent=percent, stable=V6)
        assert "canaryTrafficPercent" not in predictor(obj) and "canary" not in obj["spec"]
        assert predictor(obj)["model"]["storageUri"] == V7.storage_uri


def test_standard_canary_uses_spec_canary_with_the_stable_predictor() -> None:
    dep = make({"replicas": {"min": 2, "max": 4}})
    obj = isvc(dep, canary_percent=10, stable=V6)
    assert "canaryTrafficPercent" not in predictor(obj)
    assert predictor(obj)["model"]["storageUri"] == V6.storage_uri
    assert predictor(obj)["minReplicas"] == 2
    [canary] = obj["spec"]["canary"]
    assert canary["trafficPercent"] == 10
    assert canary["predictor"]["name"] == "v7"
    assert canary["predictor"]["model"]["name"] == "kserve-container"   # required by the CRD here
    assert canary["predictor"]["model"]["storageUri"] == V7.storage_uri
    assert "minReplicas" not in canary["predictor"]     # KServe sizes a canary from its traffic share
    assert obj["metadata"]["labels"][LABEL_VERSION] == "7"


def test_standard_canary_needs_the_stable_version() -> None:
    with pytest.raises(RenderError, match="stable"):
        render(make(), V7, canary_percent=10)


def test_standard_canary_deployment_name_limit() -> None:
    with pytest.raises(RenderError, match="63"):
        render(make(name="a" * 55), V7, canary_percent=10, stable=V6)


def test_protocol_v2_format_version_and_runtime() -> None:
    obj = isvc(make({"format": "xgboost", "format_version": "2", "protocol": "v2",
                     "serving_runtime": "kserve-xgbserver"}))
    model = predictor(obj)["model"]
    assert model["modelFormat"] == {"name": "xgboost", "version": "2"}
    assert model["protocolVersion"] == "v2" and model["runtime"] == "kserve-xgbserver"


def test_grpc_protocol() -> None:
    assert predictor(isvc(make({"protocol": "grpc-v2"})))["model"]["protocolVersion"] == "grpc-v2"


def test_scale_to_zero() -> None:
    obj = isvc(make({"deployment_mode": "Knative", "replicas": {"min": 0, "max": 3, "scale_metric": "rps",
                                                                "scale_target": 50}}))
    assert predictor(obj)["minReplicas"] == 0 and predictor(obj)["maxReplicas"] == 3


def test_unresolved_version_renders_without_storage() -> None:
    obj = isvc(make(), None)
    assert "storageUri" not in predictor(obj)["model"]
    assert obj["metadata"]["labels"][LABEL_VERSION] == "7"          # the manifest pins it
    assert "modelherd.dev/source" not in obj["metadata"]["annotations"]
    assert not deployable(None) and deployable(V7)
    assert not deployable(ModelVersionInfo(name="m", version="1", status="READY", storage_uri=None))


def test_registry_uri_is_refused() -> None:
    bad = ModelVersionInfo(name="m", version="1", status="READY", storage_uri="models:/m/1")
    with pytest.raises(RenderError, match="artifact location"):
        render(make(), bad)


def test_kserve_name_must_start_with_a_letter() -> None:
    with pytest.raises(ValidationError, match="metadata.name"):  # by the manifest, at file:line:column
        make(name="1fraud")
    with pytest.raises(RenderError, match="DNS-1035"):          # and still by the renderer
        render(make().model_copy(update={"name": "1fraud"}), V7)


@pytest.mark.parametrize("percent", [-1, 101, True, 10.5])
def test_canary_percent_range(percent: Any) -> None:
    with pytest.raises(RenderError, match="canary_percent"):
        render(make({"deployment_mode": "Knative"}), V7, canary_percent=percent)


# ------------------------------------------------------------------------ Deployment + Service + HPA

def plain(serving: dict[str, Any] | None = None, version: ModelVersionInfo | None = V7) -> dict[str, dict]:
    """The plain objects by kind, each asserted valid with kubernetes-validate."""
    objects = render(make(serving, kserve=False), version)
    for obj in objects:
        assert validate_builtin(obj) == [], obj["kind"]
    return {o["kind"]: o for o in objects}


def test_deployment_and_service() -> None:
    objs = plain({"args": ["--workers", "2"], "env": {"LOG_LEVEL": "info", "MODEL_URI": "ignored"},
                  "resources": {"cpu": 1, "memory": "2Gi", "gpu": 1, "gpu_type": "L4"}, "replicas": {"min": 2}})
    assert set(objs) == {"Deployment", "Service"}
    spec = objs["Deployment"]["spec"]
    [container] = spec["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"MODEL_URI": V7.storage_uri, "MODEL_NAME": "fraud-detector", "MODEL_VERSION": "7",
                   "LOG_LEVEL": "info"}
    assert spec["replicas"] == 2
    assert container["image"] == "ghcr.io/acme/server:1.2" and container["args"] == ["--workers", "2"]
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["readinessProbe"]["tcpSocket"]["port"] == "http"
    assert container["livenessProbe"]["tcpSocket"]["port"] == "http"
    assert container["resources"]["limits"] == {GPU_RESOURCE: "1"}
    assert spec["template"]["spec"]["nodeSelector"] == {GPU_PRODUCT_LABEL: "L4"}
    service = objs["Service"]["spec"]
    assert service["selector"] == spec["selector"]["matchLabels"]
    assert service["ports"][0]["targetPort"] == "http"


def test_hpa_when_max_above_min() -> None:
    objs = plain({"replicas": {"min": 2, "max": 6, "scale_metric": "memory", "scale_target": 70}})
    hpa = objs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"][0]["resource"] == {"name": "memory",
                                             "target": {"type": "Utilization", "averageUtilization": 70}}
    assert "replicas" not in objs["Deployment"]["spec"]        # the HPA owns the count


def test_hpa_refuses_kserve_only_metrics() -> None:
    with pytest.raises(RenderError, match="rps"):
        render(make({"replicas": {"min": 1, "max": 3, "scale_metric": "rps"}}, kserve=False), V7)


def test_plain_runtime_has_no_canary() -> None:
    with pytest.raises(RenderError, match="canary"):
        render(make(kserve=False), V7, canary_percent=10)
    assert len(render(make(kserve=False), V7, canary_percent=100)) == 2


def test_plain_unresolved_version_has_no_model_uri() -> None:
    objs = plain(version=None)
    env = {e["name"] for e in objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "MODEL_URI" not in env and "MODEL_VERSION" in env


# ------------------------------------------------------------------------- labels and annotations

def test_common_labels_and_lineage_on_every_object() -> None:
    for dep in (make(), make(kserve=False)):
        for obj in render(dep, V7):
            meta = obj["metadata"]
            assert meta["labels"]["app.kubernetes.io/name"] == "fraud"
            assert meta["labels"]["app.kubernetes.io/managed-by"] == "modelherd"
            assert meta["labels"]["modelherd.dev/model"] == "fraud-detector"
            assert meta["labels"]["modelherd.dev/environment"] == "prod"
            assert meta["labels"]["modelherd.dev/version"] == "7"
            assert meta["annotations"]["modelherd.dev/registry-model"] == "mlflow/fraud-detector"
            assert meta["annotations"]["modelherd.dev/source"] == "models:/m-7"


def test_labels_are_sanitised() -> None:
    dep = make(labels_={"data-class": "PII data!", "team": "-risk/ml-", "cost": "x" * 63,
                        "Acme.COM/tier": "gold", "app.kubernetes.io/managed-by": "someone"},
               model="Fraud Detector (EU)")
    got = labels(dep, V7)
    assert got["data-class"] == "PII-data"
    assert got["team"] == "risk-ml"
    assert got["acme.com/tier"] == "gold"
    assert got["app.kubernetes.io/managed-by"] == "modelherd"      # ours win
    assert got["modelherd.dev/model"] == "Fraud-Detector-EU"
    for obj in render(dep, V7):
        assert validate_inferenceservice(obj) == []


@pytest.mark.parametrize("text, clean", [("ok", "ok"), ("a b", "a-b"), ("--x--", "x"), ("!!!", ""),
                                         ("a" * 70, "a" * 63), ("a" * 62 + "-b", "a" * 62)])
def test_sanitize_label_value(text: str, clean: str) -> None:
    assert sanitize_label_value(text) == clean


def test_sanitize_label_key() -> None:
    assert sanitize_label_key("team") == "team"
    assert sanitize_label_key("Example.COM/Team") == "example.com/Team"
    assert sanitize_label_key("a/b/c") == "a-b/c"
    assert sanitize_label_key("---") is None


# -------------------------------------------------------------------------------------------- diff

def test_version_bump_diff() -> None:
    dep = make()
    text = diff(render(dep, V6), render(dep, V7), before_name="live/fraud", after_name="proposed/fraud")
    lines = text.splitlines()
    assert lines[0] == "--- live/fraud" and lines[1] == "+++ proposed/fraud"
    assert f"-      storageUri: {V6.storage_uri}" in lines
    assert f"+      storageUri: {V7.storage_uri}" in lines
    assert "-    modelherd.dev/version: '6'" in lines
    assert "+    modelherd.dev/version: '7'" in lines
    changed = [ln for ln in lines if ln[:1] in "+-" and not ln.startswith(("---", "+++"))]
    assert all(("storageUri" in ln or "version" in ln or "source" in ln or "run-id" in ln) for ln in changed)


def test_equal_objects_give_an_empty_diff() -> None:
    dep = make({"replicas": {"min": 1, "max": 3}}, kserve=False)
    before = render(dep, V7)
    after = list(reversed(copy.deepcopy(render(dep, V7))))        # order of objects does not matter
    assert diff(before, after, before_name="a", after_name="b") == ""


def test_new_objects_diff_as_all_added() -> None:
    text = diff([], render(make(), V7), before_name="a", after_name="b")
    body = text.splitlines()[3:]
    assert body and all(line.startswith("+") for line in body)


def test_yaml_is_canonical_and_round_trips() -> None:
    objects = render(make({"replicas": {"min": 1, "max": 3}}, kserve=False), V7)
    text = to_yaml(objects)
    assert text == to_yaml(render(make({"replicas": {"min": 1, "max": 3}}, kserve=False), V7))
    assert "&id" not in text and "*id" not in text and "{" not in text
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == ["Deployment", "HorizontalPodAutoscaler", "Service"]
    assert list(docs[0])[:4] == ["apiVersion", "kind", "metadata", "spec"]
    assert sorted(docs, key=lambda d: d["kind"]) == sorted(objects, key=lambda d: d["kind"])
    assert to_yaml([]) == ""


def test_yaml_multiline_strings_are_blocks() -> None:
    assert "note: |" in to_yaml([{"apiVersion": "v1", "kind": "ConfigMap", "note": "a\nb\n"}])


# ------------------------------------------------------------------- the validators really validate

def valid_isvc() -> dict[str, Any]:
    return copy.deepcopy(isvc(make({"resources": {"cpu": "1", "memory": "1Gi"}})))


def test_isvc_wrong_type_is_rejected() -> None:
    obj = valid_isvc()
    obj["spec"]["predictor"]["minReplicas"] = "two"
    assert any("spec.predictor.minReplicas" in e and "integer" in e for e in validate_inferenceservice(obj))


def test_isvc_unknown_field_is_rejected() -> None:
    obj = valid_isvc()
    obj["spec"]["predictor"]["model"]["storageURI"] = obj["spec"]["predictor"]["model"].pop("storageUri")
    assert any("storageURI" in e for e in validate_inferenceservice(obj))


def test_isvc_required_fields_and_kind() -> None:
    obj = valid_isvc()
    del obj["spec"]["predictor"]["model"]["modelFormat"]["name"]
    obj["kind"] = "InferenceServices"
    errors = validate_inferenceservice(obj)
    assert any("'name' is a required property" in e for e in errors)
    assert any(e.startswith("kind:") for e in errors)


def test_isvc_enum_and_bounds() -> None:
    obj = valid_isvc()
    obj["spec"]["predictor"]["scaleMetric"] = "gpu"
    obj["spec"]["predictor"]["minReplicas"] = 2**31
    errors = validate_inferenceservice(obj)
    assert any("scaleMetric" in e for e in errors) and any("minReplicas" in e for e in errors)


@pytest.mark.parametrize("quantity", [1, "1", "500m", "2Gi", 0.5])
def test_int_or_string_accepts_both(quantity: Any) -> None:
    obj = valid_isvc()
    obj["spec"]["predictor"]["model"]["resources"]["requests"]["cpu"] = quantity
    errors = validate_inferenceservice(obj)
    if isinstance(quantity, float):      # a quantity is an integer or a string, never a JSON float
        assert errors
    else:
        assert errors == []


@pytest.mark.parametrize("quantity", ["lots", [1], None, True])
def test_int_or_string_rejects_others(quantity: Any) -> None:
    obj = valid_isvc()
    obj["spec"]["predictor"]["model"]["resources"]["requests"]["cpu"] = quantity
    assert validate_inferenceservice(obj)


def test_preserve_unknown_fields_keeps_unknown_fields() -> None:
    obj = valid_isvc()
    obj["status"] = {"someFutureField": {"nested": [1, "x"]}, "url": "http://fraud.ml-prod"}
    assert validate_inferenceservice(obj) == []
    obj["status"]["url"] = 5                     # declared fields are still typed
    assert any(e.startswith("status.url") for e in validate_inferenceservice(obj))


def test_structural_conversion() -> None:
    schema = structural_to_jsonschema({
        "type": "object",
        "properties": {
            "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                     "properties": {"a": {"type": "string"}}},
            "maybe": {"type": "string", "nullable": True},
            "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        },
    })
    assert schema["additionalProperties"] is False
    assert "additionalProperties" not in schema["properties"]["free"]
    assert schema["properties"]["maybe"]["type"] == ["string", "null"]
    assert schema["properties"]["port"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert schema["properties"]["items"]["x-kubernetes-list-map-keys"] == ["name"]


def test_isvc_duplicate_list_map_keys_are_rejected() -> None:
    obj = valid_isvc()
    obj["spec"]["predictor"]["model"]["env"] = [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]
    assert any("duplicate" in e for e in validate_inferenceservice(obj))


def test_isvc_bad_metadata_is_rejected() -> None:
    obj = valid_isvc()
    obj["metadata"]["labels"]["bad"] = "not valid!"
    obj["metadata"]["name"] = "1fraud"
    errors = validate_inferenceservice(obj)
    assert any("metadata.labels.bad" in e for e in errors) and any("metadata.name" in e for e in errors)


def test_builtin_wrong_type_and_unknown_field_are_rejected() -> None:
    objs = plain()
    deployment = copy.deepcopy(objs["Deployment"])
    deployment["spec"]["replicas"] = "3"
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    errors = validate_builtin(deployment)
    assert any(e.startswith("spec.replicas") for e in errors)
    assert any("imagePullPolcy" in e for e in errors)


def test_builtin_selector_must_match_template() -> None:
    deployment = copy.deepcopy(plain()["Deployment"])
    deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "other"
    assert any("selector" in e for e in validate_builtin(deployment))


def test_builtin_service_and_hpa_are_checked() -> None:
    objs = plain({"replicas": {"min": 1, "max": 3}})
    service = copy.deepcopy(objs["Service"])
    service["spec"]["ports"][0]["port"] = "eighty"
    assert any("spec.ports[0].port" in e for e in validate_builtin(service))
    hpa = copy.deepcopy(objs["HorizontalPodAutoscaler"])
    hpa["spec"]["minReplicas"] = 5
    assert any("minReplicas" in e for e in validate_builtin(hpa))


def test_builtin_unknown_kind_and_versions() -> None:
    assert validate_builtin({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    deployment = plain()["Deployment"]
    assert validate_builtin(deployment, k8s_version="v1.30") == []
    assert validate_builtin(deployment, k8s_version="1.37.2") == []


def test_crd_requires_the_container_name_in_a_canary_model() -> None:
    obj = copy.deepcopy(isvc(make(), canary_percent=10, stable=V6))
    del obj["spec"]["canary"][0]["predictor"]["model"]["name"]
    assert any("spec.canary[0].predictor.model" in e and "'name'" in e for e in validate_inferenceservice(obj))
