"""The ``mlflow-alias`` target against the suite's real MLflow server, alone and driven by the engine."""

from __future__ import annotations

from datetime import timedelta

import pytest
from modelherd.clock import rfc3339
from modelherd.manifest import Deployment, ModelDeployment, effective
from modelherd.registry.mlflow import MlflowRegistry, register_version
from modelherd.rollout import (
    DEPLOYED_TAG,
    REJECTED_TAG,
    advance,
    history,
    rollback_to,
    start_rollout,
)
from modelherd.settings import MlflowRegistryConfig
from modelherd.store import Store
from modelherd.targets import Readiness, TargetError
from modelherd.targets.mlflow_alias import MlflowAliasTarget

from tests.clock import FIXED, Clock
from tests.mlflow_server import free_port

pytestmark = pytest.mark.mlflow


def deployment(model: str, env: str = "staging", canary: list[int] | None = None) -> Deployment:
    rollout = {"canary": canary} if canary else {}
    manifest = ModelDeployment.model_validate({
        "apiVersion": "modelherd.dev/v1", "kind": "ModelDeployment", "metadata": {"name": "churn"},
        "spec": {"model": {"name": model, "version": 2}, "serving": {"runtime": "kserve", "format": "sklearn"},
                 "environments": {env: {"cluster": "registry", "namespace": "ml", "rollout": rollout}}}})
    return effective(manifest, env)


@pytest.fixture
def registry(mlflow_server: str) -> MlflowRegistry:
    return MlflowRegistry(MlflowRegistryConfig(tracking_uri=mlflow_server))


@pytest.fixture
def versions(mlflow_client, unique_name: str, registry: MlflowRegistry):
    """Two registered versions of a fresh model, resolved."""
    for auc in (0.90, 0.91):
        register_version(mlflow_client, unique_name, metrics={"auc": auc})
    return [registry.resolve(unique_name, version=n) for n in (1, 2)]


def test_apply_health_live_remove(registry: MlflowRegistry, versions, unique_name: str) -> None:
    v1, v2 = versions
    dep = deployment(unique_name)
    target = MlflowAliasTarget(registry)
    assert target.live(dep) is None
    assert target.health(dep, v1).state is Readiness.PROGRESSING      # alias not set yet
    target.remove(dep)                                                # nothing to remove: no error
    target.apply(dep, v1)
    target.apply(dep, v1)                                             # idempotent
    assert target.health(dep, v1).state is Readiness.READY
    assert target.live(dep) == [{"kind": "MlflowAlias", "model": unique_name, "alias": "staging", "version": "1"}]
    target.apply(dep, v2)
    health = target.health(dep, v1)
    assert health.state is Readiness.PROGRESSING and "not v1" in health.message
    assert registry.resolve(unique_name, alias="staging").version == "2"
    target.remove(dep)
    assert target.live(dep) is None


def test_alias_name_is_configurable(registry: MlflowRegistry, versions, unique_name: str) -> None:
    target = MlflowAliasTarget(registry, alias=lambda dep: f"serving-{dep.environment}")
    target.apply(deployment(unique_name), versions[1])
    assert registry.resolve(unique_name, alias="serving-staging").version == "2"


def test_canary_percent_is_refused(registry: MlflowRegistry, versions, unique_name: str) -> None:
    with pytest.raises(ValueError, match="no traffic split"):
        MlflowAliasTarget(registry).apply(deployment(unique_name), versions[1], canary_percent=10,
                                          stable=versions[0])


def test_unreachable_registry_is_a_target_error() -> None:
    down = MlflowRegistry(MlflowRegistryConfig(tracking_uri=f"http://127.0.0.1:{free_port()}", timeout_seconds=1,
                                               retries=0))
    target = MlflowAliasTarget(down)
    with pytest.raises(TargetError, match="connection refused"):
        target.live(deployment("any"))


def drive(store: Store, rollout_id: int, registry: MlflowRegistry, clock: Clock) -> str:
    target = MlflowAliasTarget(registry)
    for _ in range(50):
        decision = advance(rollout_id, store=store, targets=lambda kind, cluster: target,
                           registry={"mlflow": registry}, clock=clock)
        if decision.next_check_in is None:
            return store.get_rollout(rollout_id).state
        clock.now += timedelta(seconds=decision.next_check_in)
    raise AssertionError("rollout did not finish")


def test_engine_deploys_through_the_alias_and_rolls_back(store: Store, registry: MlflowRegistry, versions,
                                                         unique_name: str) -> None:
    v1, v2 = versions
    clock = Clock(FIXED)
    registry.set_alias(unique_name, "staging", "1")
    dep = deployment(unique_name, canary=[10, 50, 100])
    rid = start_rollout(store, repo="octo/models", dep=dep, candidate=v2, stable=v1, trigger="merge", actor="alice",
                        pr=3, sha="f00d", target="mlflow-alias", clock=clock)
    record = store.get_rollout(rid)
    assert record.steps == [100] and "no traffic split" in record.notes[0]
    assert drive(store, rid, registry, clock) == "succeeded"
    live = registry.resolve(unique_name, alias="staging")
    assert live.version == "2"
    assert live.tags[DEPLOYED_TAG.format(environment="staging")] == rfc3339(FIXED)

    back = rollback_to(store, repo="octo/models", dep=dep, version=v1, current=v2, actor="bob",
                       reason="p99 latency doubled", target="mlflow-alias", clock=clock)
    assert drive(store, back, registry, clock) == "succeeded"
    assert registry.resolve(unique_name, alias="staging").version == "1"
    assert registry.resolve(unique_name, version=2).tags[REJECTED_TAG] == "p99 latency doubled"
    assert [(h.trigger, h.from_version, h.to_version, h.outcome) for h in history(store, model="churn")] == [
        ("rollback", "2", "1", "succeeded"), ("merge", "1", "2", "succeeded")]
