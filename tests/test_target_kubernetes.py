"""The ``kubernetes`` target driven through the real ``kubernetes`` client against :class:`FakeKube`.

Every test reaches the fake over HTTP with a kubeconfig it writes, through
:func:`clients_from_settings`; every body the client sends is validated by the fake (KServe CRD,
kubernetes-validate schemas, apply content type / field manager / force), and the fixture's
teardown fails the test on any violation.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from modelherd.manifest import Deployment, ModelDeployment, effective
from modelherd.registry import ModelVersionInfo
from modelherd.render import LABEL_MANAGED_BY, LABEL_VERSION
from modelherd.settings import ClusterConfig, Settings
from modelherd.targets import Health, Readiness, TargetError
from modelherd.targets.kubernetes import (
    APPLY_PATCH,
    KubernetesApiError,
    KubernetesTarget,
    clients_from_settings,
    deployment_health,
    inference_service_health,
)

pytest.register_assert_rewrite("tests.fakes.kube")  # before the import: it is also a pytest plugin here

from tests.fakes.kube import FakeKube, write_kubeconfig
from tests.kube_schemas import validate_builtin, validate_inferenceservice


V6 = ModelVersionInfo(name="fraud-detector", version="6", status="READY", storage_uri="s3://models/fraud/6")
V7 = ModelVersionInfo(name="fraud-detector", version="7", status="READY", storage_uri="s3://models/fraud/7")
NS, NAME = "ml", "fraud"


def make(*, runtime: str = "kserve", mode: str = "Standard", replicas: dict[str, int] | None = None,
         cluster: str = "east") -> Deployment:
    """The ``prod`` deployment of ``fraud`` in namespace ``ml`` on ``cluster``."""
    serving: dict[str, Any] = ({"runtime": "kserve", "format": "sklearn", "deployment_mode": mode}
                               if runtime == "kserve" else
                               {"runtime": "deployment", "image": "ghcr.io/acme/fraud:1.0", "port": 8000})
    if replicas:
        serving["replicas"] = replicas
    manifest = ModelDeployment.model_validate({
        "apiVersion": "modelherd.dev/v1", "kind": "ModelDeployment", "metadata": {"name": NAME},
        "spec": {"model": {"name": "fraud-detector", "version": 7}, "serving": serving,
                 "environments": {"prod": {"cluster": cluster, "namespace": NS}}},
    })
    return effective(manifest, "prod")


def target_for(fake: FakeKube, tmp_path: Path, **kwargs: Any) -> KubernetesTarget:
    """The target ``clients_from_settings`` builds for a kubeconfig pointing at ``fake``."""
    kubeconfig = fake.write_kubeconfig(tmp_path / f"kubeconfig-{fake.name}")
    settings = Settings(clusters={fake.name: ClusterConfig(kubeconfig=str(kubeconfig), context=fake.name)})
    return clients_from_settings(settings, **kwargs)[fake.name]


def poll(target: KubernetesTarget, dep: Deployment, version: ModelVersionInfo, *, canary: int | None = None,
         limit: int = 8) -> list[Health]:
    """Health until it is no longer PROGRESSING (at most ``limit`` polls)."""
    seen = []
    for _ in range(limit):
        seen.append(target.health(dep, version, canary_percent=canary))
        if seen[-1].state is not Readiness.PROGRESSING:
            break
    return seen


def states(healths: list[Health]) -> list[str]:
    return [str(h.state) for h in healths]


def deploy_ready(target: KubernetesTarget, dep: Deployment, version: ModelVersionInfo) -> None:
    """Fully roll out ``version`` (the fake's default scenario: ready after one poll)."""
    target.apply(dep, version)
    assert poll(target, dep, version)[-1].state is Readiness.READY


@pytest.fixture
def east(fake_kube_factory) -> FakeKube:
    return fake_kube_factory("east")


# ------------------------------------------------------------------------------ apply and readiness

def test_apply_is_a_server_side_apply_and_becomes_ready(east: FakeKube, tmp_path: Path) -> None:
    target, dep = target_for(east, tmp_path), make()
    east.behave(NS, NAME, "ready", after=2)
    target.apply(dep, V7)

    [call] = east.applies()
    assert call.path == f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/{NAME}"
    assert call.content_type == APPLY_PATCH
    assert call.query == {"fieldManager": "modelherd", "force": "true"}
    assert validate_inferenceservice(call.body) == []
    assert call.body["spec"]["predictor"]["model"]["storageUri"] == V7.storage_uri

    seen = poll(target, dep, V7)
    assert states(seen) == ["progressing", "progressing", "ready"]
    assert "status" in seen[0].message
    assert seen[-1].details["transitionStatus"] == "UpToDate"
    json.dumps([h.details for h in seen])          # plain data only: nothing from the client leaks


def test_an_upgrade_is_not_ready_while_kserve_shows_the_previous_generation(east: FakeKube, tmp_path: Path) -> None:
    target, dep = target_for(east, tmp_path), make()
    deploy_ready(target, dep, V6)
    target.apply(dep, V7)
    seen = poll(target, dep, V7)
    # first poll: the previous status (Ready, UpToDate) for generation 1 while the object is at 2
    assert states(seen) == ["progressing", "ready"]
    assert "observe generation 2" in seen[0].message
    assert east.get("InferenceService", NS, NAME)["metadata"]["labels"][LABEL_VERSION] == "7"


def test_apply_twice_keeps_one_object_and_its_generation(east: FakeKube, tmp_path: Path) -> None:
    target, dep = target_for(east, tmp_path), make()
    target.apply(dep, V7)
    first = east.get("InferenceService", NS, NAME)["metadata"]
    target.apply(dep, V7)
    again = east.get("InferenceService", NS, NAME)["metadata"]
    assert len(east.objects) == 1 and len(east.applies()) == 2
    assert again["generation"] == first["generation"] == 1
    assert again["resourceVersion"] == first["resourceVersion"] and again["uid"] == first["uid"]
    target.apply(dep, V6)
    assert east.get("InferenceService", NS, NAME)["metadata"]["generation"] == 2


# -------------------------------------------------------------------------------------------- canary

def test_knative_canary_waits_for_the_traffic_split_then_promotes(east: FakeKube, tmp_path: Path) -> None:
    target, dep = target_for(east, tmp_path), make(mode="Knative")
    deploy_ready(target, dep, V6)
    east.behave(NS, NAME, "ready", after=2)
    target.apply(dep, V7, canary_percent=10)

    body = east.applies()[-1].body
    assert validate_inferenceservice(body) == []
    assert body["spec"]["predictor"]["canaryTrafficPercent"] == 10
    seen = poll(target, dep, V7, canary=10)
    assert states(seen) == ["progressing", "progressing", "progressing", "ready"]
    # third poll: the revision is Ready and UpToDate, but the route still sends it nothing
    assert seen[2].details["transitionStatus"] == "UpToDate"
    assert seen[2].message == "the latest revision takes 0% of traffic, waiting for 10%"
    traffic = {t["tag"]: t["percent"] for t in seen[-1].details["traffic"]}
    assert traffic == {"prev": 90, "latest": 10}

    target.apply(dep, V7)                            # promotion: no canaryTrafficPercent
    assert "canaryTrafficPercent" not in east.applies()[-1].body["spec"]["predictor"]
    seen = poll(target, dep, V7)
    assert seen[-2].message == "the latest revision takes 10% of traffic, waiting for 100%"
    assert seen[-1].state is Readiness.READY
    assert [t["percent"] for t in seen[-1].details["traffic"]] == [100]


def test_standard_canary_carries_both_versions_and_waits_for_the_canary(east: FakeKube, tmp_path: Path) -> None:
    target, dep = target_for(east, tmp_path), make(mode="Standard")
    deploy_ready(target, dep, V6)
    east.behave(NS, NAME, "ready", after=2)
    target.apply(dep, V7, canary_percent=10, stable=V6)

    body = east.applies()[-1].body
    assert validate_inferenceservice(body) == []
    assert body["spec"]["predictor"]["model"]["storageUri"] == V6.storage_uri
    [canary] = body["spec"]["canary"]
    assert canary["trafficPercent"] == 10 and canary["predictor"]["model"]["storageUri"] == V7.storage_uri
    seen = poll(target, dep, V7, canary=10)
    assert states(seen) == ["progressing", "progressing", "ready"]
    assert "canary" in seen[1].message
    assert seen[-1].details["canaryStatuses"] == [{"name": canary["predictor"]["name"], "ready": True,
                                                   "trafficPercent": 10}]


def test_a_canary_that_fails_to_load_is_failed(east: FakeKube, tmp_path: Path) -> None:
    target, dep = target_for(east, tmp_path), make(mode="Standard")
    deploy_ready(target, dep, V6)
    east.behave(NS, NAME, "fail-load", after=1)
    target.apply(dep, V7, canary_percent=10, stable=V6)
    seen = poll(target, dep, V7, canary=10)
    assert states(seen) == ["progressing", "failed"]
    assert "BlockedByFailedLoad: ModelLoadFailed" in seen[-1].message


# ------------------------------------------------------------------------------------------ failures

@pytest.mark.parametrize("mode", ["Standard", "Knative"])
def test_fail_load_is_failed_with_the_reason(east: FakeKube, tmp_path: Path, mode: str) -> None:
    target, dep = target_for(east, tmp_path), make(mode=mode)
    east.behave(NS, NAME, "fail-load", after=1)
    target.apply(dep, V7)
    seen = poll(target, dep, V7)
    assert seen[-1].state is Readiness.FAILED
    assert "BlockedByFailedLoad: ModelLoadFailed: storage initializer" in seen[-1].message
    assert seen[-1].details["lastFailureInfo"]["reason"] == "ModelLoadFailed"


def test_invalid_spec_is_failed(east: FakeKube, tmp_path: Path) -> None:
    target, dep = target_for(east, tmp_path), make()
    east.behave(NS, NAME, "invalid", after=0)
    target.apply(dep, V7)
    health = target.health(dep, V7)
    assert health.state is Readiness.FAILED and health.message.startswith("InvalidSpec: InvalidPredictorSpec")


def test_a_hanging_rollout_stays_progressing(east: FakeKube, tmp_path: Path) -> None:
    target, dep = target_for(east, tmp_path), make()
    deploy_ready(target, dep, V6)
    east.behave(NS, NAME, "hang", after=0)
    target.apply(dep, V7)
    seen = poll(target, dep, V7, limit=6)
    assert states(seen) == ["progressing"] * 6
    # the old pods keep serving (Ready) but the model transition never completes
    assert seen[-1].details["conditions"]["Ready"] == "True"
    assert seen[-1].message == "model transition is InProgress"


# ---------------------------------------------------------------------------------- runtime: deployment

def test_deployment_runtime_applies_deployment_service_and_hpa(east: FakeKube, tmp_path: Path) -> None:
    target = target_for(east, tmp_path)
    dep = make(runtime="deployment", replicas={"min": 2, "max": 5})
    east.behave(NS, NAME, "ready", after=2)
    target.apply(dep, V7)

    kinds = [c.body["kind"] for c in east.applies()]
    assert kinds == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    assert all(validate_builtin(c.body) == [] and c.content_type == APPLY_PATCH for c in east.applies())
    seen = poll(target, dep, V7)
    assert states(seen) == ["progressing", "progressing", "ready"]
    assert seen[-1].details["availableReplicas"] == 1         # the API server defaulted replicas to 1
    assert [o["kind"] for o in target.live(dep)] == ["Deployment", "Service", "HorizontalPodAutoscaler"]

    fixed = make(runtime="deployment", replicas={"min": 2})
    target.apply(fixed, V7)                                  # no HPA rendered: ours is deleted
    assert east.get("HorizontalPodAutoscaler", NS, NAME) is None
    assert east.get("Deployment", NS, NAME)["spec"]["replicas"] == 2
    assert poll(target, fixed, V7)[-1].state is Readiness.READY


def test_deployment_progress_deadline_exceeded_is_failed(east: FakeKube, tmp_path: Path) -> None:
    target, dep = target_for(east, tmp_path), make(runtime="deployment")
    east.behave(NS, NAME, "progress-deadline-exceeded", after=1, kind="Deployment")
    target.apply(dep, V7)
    seen = poll(target, dep, V7)
    assert states(seen) == ["progressing", "failed"]
    assert "progress deadline" in seen[-1].message and "timed out progressing" in seen[-1].message


def test_deployment_hang_stays_progressing(east: FakeKube, tmp_path: Path) -> None:
    target, dep = target_for(east, tmp_path), make(runtime="deployment", replicas={"min": 3})
    east.behave(NS, NAME, "hang", after=0, kind="Deployment")
    target.apply(dep, V7)
    seen = poll(target, dep, V7, limit=4)
    assert states(seen) == ["progressing"] * 4
    assert "new replicas have been updated" in seen[-1].message


# ------------------------------------------------------------------------------------- live / remove

def test_live_and_remove(east: FakeKube, tmp_path: Path) -> None:
    target, dep = target_for(east, tmp_path), make(runtime="deployment")
    assert target.live(dep) is None
    target.apply(dep, V7)
    live = target.live(dep)
    assert [o["kind"] for o in live] == ["Deployment", "Service"]
    assert all(isinstance(o, dict) and o["metadata"]["uid"] for o in live)

    target.remove(dep)
    assert target.live(dep) is None and east.objects == {}
    deletes = [c for c in east.calls if c.method == "DELETE"]
    assert {c.query.get("propagationPolicy") for c in deletes} == {"Background"}
    target.remove(dep)                                       # nothing left: still fine


def test_remove_leaves_objects_modelherd_does_not_manage(east: FakeKube, tmp_path: Path) -> None:
    target, dep = target_for(east, tmp_path), make()
    target.apply(dep, V7)
    east.edit("InferenceService", NS, NAME, {"metadata": {"labels": {LABEL_MANAGED_BY: "someone-else"}}})
    target.remove(dep)
    assert east.get("InferenceService", NS, NAME) is not None


def test_managed_lists_our_objects_of_every_kind_with_one_call_per_kind(east: FakeKube, tmp_path: Path) -> None:
    target = target_for(east, tmp_path)
    target.apply(make(), V7)
    target.apply(make(runtime="deployment", replicas={"min": 1, "max": 3}).model_copy(update={"name": "ranker"}), V7)
    east.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "by-hand", "namespace": NS},
                 "spec": {"ports": [{"port": 80}]}})
    other_ns = make().model_copy(update={"namespace": "elsewhere"})
    target.apply(other_ns, V7)
    before = len(east.calls)

    found = target.managed(NS)

    assert sorted((o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in found) == [
        ("apps/v1", "Deployment", "ranker"), ("autoscaling/v2", "HorizontalPodAutoscaler", "ranker"),
        ("serving.kserve.io/v1beta1", "InferenceService", "fraud"), ("v1", "Service", "ranker")]
    calls = east.calls[before:]
    assert len(calls) == 4 and all(c.method == "GET" for c in calls)
    assert {c.query["labelSelector"] for c in calls} == {f"{LABEL_MANAGED_BY}=modelherd"}


def test_managed_names_the_cluster_when_a_list_fails(east: FakeKube, tmp_path: Path) -> None:
    target = target_for(east, tmp_path)
    east.fail_next(403, "services is forbidden: User cannot list resource", method="GET")
    with pytest.raises(TargetError, match=r"cluster east: list InferenceService in ml: HTTP 403: services is forbidden"):
        target.managed(NS)


# ---------------------------------------------------------------------------------------- API errors

def test_unreachable_cluster_fails_fast_with_the_cluster_named(east: FakeKube, tmp_path: Path) -> None:
    target, dep = target_for(east, tmp_path), make()
    east.stop()
    with pytest.raises(TargetError, match=r"cluster east: read InferenceService ml/fraud: API server unreachable"):
        target.apply(dep, V7)


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)                                         # accepts connections, never answers
    try:
        fake = FakeKube("silent")
        fake.url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        target = target_for(fake, tmp_path, timeout=(1.0, 1.0))
        with pytest.raises(TargetError, match="cluster silent: read InferenceService ml/fraud: API server unreachable"):
            target.health(make(), V7)
    finally:
        silent.close()


def test_unauthorized_and_server_errors_carry_the_api_message(east: FakeKube, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "bad", {"east": east}, tokens={"east": "wrong-token"})
    bad = clients_from_settings(Settings(clusters={"east": ClusterConfig(kubeconfig=str(kubeconfig))}))["east"]
    with pytest.raises(KubernetesApiError, match="HTTP 401: Unauthorized") as caught:
        bad.apply(make(), V7)
    assert (caught.value.cluster, caught.value.kind, caught.value.name) == ("east", "InferenceService", NAME)

    target = target_for(east, tmp_path)
    east.fail_next(503, "etcdserver: leader changed")
    with pytest.raises(TargetError, match="HTTP 503: etcdserver: leader changed"):
        target.apply(make(), V7)
    target.apply(make(), V7)                                 # the next attempt goes through


def test_a_rejected_object_reports_the_causes(east: FakeKube, tmp_path: Path) -> None:
    target = target_for(east, tmp_path)
    east.behave(NS, NAME, "reject", message="spec.predictor: model format sklearn has no runtime")
    with pytest.raises(KubernetesApiError) as caught:
        target.apply(make(), V7)
    assert caught.value.status == 422
    assert caught.value.causes == ("spec: Invalid value: spec.predictor: model format sklearn has no runtime",)
    assert "is invalid" in str(caught.value) and "Traceback" not in str(caught.value)


def test_the_fake_refuses_a_patch_that_is_not_an_apply(east: FakeKube, tmp_path: Path) -> None:
    """The fake's own contract check: a merge patch (the client's default) is a violation."""
    from kubernetes import client, config

    api = client.CustomObjectsApi(config.new_client_from_config(
        str(east.write_kubeconfig(tmp_path / "raw")), persist_config=False))
    with pytest.raises(client.ApiException) as caught:
        api.patch_namespaced_custom_object("serving.kserve.io", "v1beta1", NS, "inferenceservices", NAME,
                                           {"metadata": {"name": NAME}}, field_manager="modelherd")
    assert caught.value.status == 422
    assert any("is not application/apply-patch+yaml" in v for v in east.take_violations())


# ------------------------------------------------------------------------------------------ clusters

def test_a_broken_kubeconfig_only_fails_its_own_cluster(east: FakeKube, tmp_path: Path) -> None:
    good = east.write_kubeconfig(tmp_path / "good")
    settings = Settings(clusters={"east": ClusterConfig(kubeconfig=str(good), context="east"),
                                  "west": ClusterConfig(kubeconfig=str(tmp_path / "missing"), context="west")})
    targets = clients_from_settings(settings)             # builds nothing yet
    targets["east"].apply(make(), V7)
    with pytest.raises(TargetError, match=r"cluster west: cannot load kubeconfig .*missing"):
        targets["west"].apply(make(cluster="west"), V7)


def test_two_clusters_at_once(fake_kube_factory, tmp_path: Path) -> None:
    east, west = fake_kube_factory("east"), fake_kube_factory("west")
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"east": east, "west": west})
    settings = Settings(clusters={name: ClusterConfig(kubeconfig=str(kubeconfig), context=name)
                                  for name in ("east", "west")})
    targets = clients_from_settings(settings)
    west.behave(NS, NAME, "fail-load", after=0)
    results: dict[str, Health] = {}

    def roll(name: str, version: ModelVersionInfo) -> None:
        dep = make(cluster=name)
        targets[name].apply(dep, version)
        results[name] = poll(targets[name], dep, version)[-1]

    threads = [threading.Thread(target=roll, args=(n, v)) for n, v in (("east", V7), ("west", V6))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert results["east"].state is Readiness.READY and results["west"].state is Readiness.FAILED
    assert east.get("InferenceService", NS, NAME)["metadata"]["labels"][LABEL_VERSION] == "7"
    assert west.get("InferenceService", NS, NAME)["metadata"]["labels"][LABEL_VERSION] == "6"
    assert len(east.objects) == len(west.objects) == 1


# ------------------------------------------------------------------------------- readiness, pure

def _isvc(status: dict[str, Any], *, version: str = "7", generation: int = 1) -> dict[str, Any]:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": NAME, "namespace": NS, "generation": generation,
                         "labels": {LABEL_VERSION: version}},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": V7.storage_uri}}},
            "status": status}


READY = [{"type": "Ready", "status": "True"}, {"type": "Stopped", "status": "False", "severity": "Info"}]


def test_a_failure_left_from_an_earlier_revision_does_not_fail_a_healthy_service() -> None:
    status = {"observedGeneration": 1, "conditions": READY,
              "modelStatus": {"transitionStatus": "UpToDate",
                              "lastFailureInfo": {"reason": "ModelLoadFailed", "modelRevisionName": "fraud-1"}}}
    assert inference_service_health(_isvc(status), V7).state is Readiness.READY


def test_a_terminal_condition_is_failed_and_a_transient_one_is_not() -> None:
    terminal = {"conditions": [{"type": "Ready", "status": "False", "reason": "RevisionFailed",
                                "message": "Container failed"}],
                "modelStatus": {"transitionStatus": "InProgress"}}
    health = inference_service_health(_isvc(terminal), V7, mode="Knative")
    assert health.state is Readiness.FAILED and health.message == "Ready=False (RevisionFailed): Container failed"
    transient = {"conditions": [{"type": "Ready", "status": "False", "reason": "PredictorNotReady"}],
                 "modelStatus": {"transitionStatus": "InProgress"}}
    assert inference_service_health(_isvc(transient), V7).state is Readiness.PROGRESSING


def test_an_object_at_another_version_is_not_ready_but_not_failed() -> None:
    # After a crash the engine asks whether its apply arrived: "not there yet" must not read as a
    # failure (the step's timeout fails it if it never arrives).
    health = inference_service_health(_isvc({"conditions": READY}, version="5"), V7)
    assert health.state is Readiness.PROGRESSING and "'5'" in health.message
    assert inference_service_health(None, V7).state is Readiness.PROGRESSING
    assert deployment_health(None, V7).state is Readiness.PROGRESSING


def test_in_cluster_config_outside_a_pod_names_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    targets = clients_from_settings(Settings(clusters={"inside": ClusterConfig(in_cluster=True)}))
    with pytest.raises(TargetError, match="cluster inside: cannot load in-cluster config"):
        targets["inside"].live(make(cluster="inside"))


def test_a_version_without_storage_is_never_applied(east: FakeKube, tmp_path: Path) -> None:
    target = target_for(east, tmp_path)
    unresolved = ModelVersionInfo(name="fraud-detector", version="8", status="READY", storage_uri=None)
    with pytest.raises(TargetError, match="no storage location"):
        target.apply(make(), unresolved)
    assert east.calls == []


# ------------------------------------------------------------------------------------------ takeovers

def _hand_made(name: str = NAME, labels: dict[str, str] | None = None,
               annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS, "labels": labels or {"app": "payments"},
                         "annotations": annotations or {}},
            "spec": {"selector": {"app": "payments"}, "ports": [{"port": 80, "targetPort": 8080}]}}


def test_an_object_modelherd_does_not_manage_is_never_taken_over(east: FakeKube, tmp_path: Path) -> None:
    """A hand-made Service named like the model: a forced apply would take it; the target refuses."""
    east.create(_hand_made())
    target = target_for(east, tmp_path)
    with pytest.raises(TargetError, match=r"cluster east: Service ml/fraud exists and is not managed by modelherd "
                                          r"\(no label app.kubernetes.io/managed-by=modelherd\): refusing to take"):
        target.apply(make(runtime="deployment"), V7)
    assert east.get("Service", NS, NAME)["spec"]["selector"] == {"app": "payments"}      # untouched
    assert [c for c in east.applies("services")] == []


def test_an_object_another_repository_deployed_is_never_taken_over(east: FakeKube, tmp_path: Path) -> None:
    east.create(_hand_made(labels={"app.kubernetes.io/managed-by": "modelherd"},
                           annotations={"modelherd.dev/repository": "payments/models"}))
    dep = make(runtime="deployment").model_copy(update={"repository": "acme/models"})
    with pytest.raises(TargetError, match=r"Service ml/fraud was deployed by the repository payments/models, "
                                          r"not acme/models: refusing to take it over"):
        target_for(east, tmp_path).apply(dep, V7)
    assert east.get("Service", NS, NAME)["spec"]["selector"] == {"app": "payments"}


def test_its_own_objects_are_applied_again(east: FakeKube, tmp_path: Path) -> None:
    dep = make(runtime="deployment").model_copy(update={"repository": "acme/models"})
    target = target_for(east, tmp_path)
    target.apply(dep, V7)
    target.apply(dep, V7)                                          # a retried step: its own objects
    assert east.get("Service", NS, NAME)["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelherd"
