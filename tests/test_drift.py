"""Drift detection: the pure comparison and Markdown, and scans of a real git repository against fake
clusters driven through the real ``kubernetes`` client (and the ``mlflow-alias`` target over an
in-memory registry).

The world: ``examples/repo`` on ``main`` (three models, six model/environments) served by three
:class:`FakeKube` clusters (``onprem-a``, ``aws-eu-1``, ``onprem-gpu``) and, for churn-model's production
on ``gcp-us-1``, the ``mlflow-alias`` target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from modelherd.drift import (
    DRIFT_CHECK,
    DriftItem,
    DriftReport,
    Skipped,
    compare,
    drift_check,
    drift_markdown,
    drift_to_dict,
)
from modelherd.drift_cli import command
from modelherd.drift_scan import (
    manifest_folders,
    read_desired,
    rollout_healer,
    scan_repo,
    store_pins,
    store_rolling,
)
from modelherd.forges.localgit import LocalGit
from modelherd.manifest import Deployment
from modelherd.registry import ModelVersionInfo
from modelherd.registry.memory import InMemoryRegistry
from modelherd.render import render
from modelherd.repoconfig import RepoConfig
from modelherd.settings import ClusterConfig, Settings
from modelherd.targets.factory import Targets

from tests.fakes.kube import FakeKube, write_kubeconfig
from tests.gitrepo import example_repo, git

KUBE_CLUSTERS = ("onprem-a", "aws-eu-1", "onprem-gpu")
ALIAS_CLUSTER = "gcp-us-1"
REPO = "acme/models"
NOW = "2026-03-01T12:00:00Z"


# ----------------------------------------------------------------------------------------- world

@dataclass
class World:
    repo: Path
    registry: InMemoryRegistry
    settings: Settings
    fakes: dict[str, FakeKube]
    targets: Targets = field(init=False)

    def __post_init__(self) -> None:
        self.targets = Targets(self.settings, {"mlflow": self.registry})

    def deployments(self) -> list[Deployment]:
        return read_desired(LocalGit(self.repo), "main").deployments

    def dep(self, model: str, environment: str) -> Deployment:
        return next(d for d in self.deployments() if d.key == (model, environment))

    def version(self, dep: Deployment) -> ModelVersionInfo:
        return self.registry.resolve(dep.model.name, version=dep.model.version, alias=dep.model.alias)

    def apply(self, dep: Deployment, version: ModelVersionInfo | None = None) -> None:
        """Deploy through the target itself, as a rollout would."""
        target = self.targets(self.targets.kind_of(dep.cluster), dep.cluster)
        target.apply(dep, version or self.version(dep))

    def deploy_all(self) -> None:
        for dep in self.deployments():
            self.apply(dep)

    def scan(self, **kwargs: Any) -> DriftReport:
        return scan_repo(LocalGit(self.repo), "main", registries={"mlflow": self.registry}, targets=self.targets,
                         clusters=self.settings.clusters, now=NOW, repo=REPO, **kwargs)

    def settings_file(self, path: Path) -> Path:
        data = {"clusters": {n: c.model_dump(mode="json", exclude_defaults=True)
                             for n, c in self.settings.clusters.items()}}
        path.write_text(yaml.safe_dump(data))
        return path


@pytest.fixture
def world(tmp_path: Path, fake_kube_factory) -> World:
    fakes = {name: fake_kube_factory(name) for name in KUBE_CLUSTERS}
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fakes)
    clusters = {name: ClusterConfig(kubeconfig=str(kubeconfig), context=name) for name in KUBE_CLUSTERS}
    clusters[ALIAS_CLUSTER] = ClusterConfig(target="mlflow-alias")
    registry = InMemoryRegistry()
    for name, version in (("churn-model", 2), ("churn-model", 3), ("fraud-detector", 1), ("fraud-detector", 2),
                          ("search-reranker", 2)):
        registry.add(name, version)
    return World(example_repo(tmp_path / "repo"), registry, Settings(clusters=clusters), fakes)


def by_key(report: DriftReport) -> dict[tuple[str, str], DriftItem]:
    return {(i.model, i.environment): i for i in report.items}


def commit(repo: Path, rel: str, text: str) -> None:
    (repo / rel).write_text(text)
    git(repo, "commit", "-qam", f"change {rel}")


SELF_HEAL_STAGING = """\
version: 1
manifests: ["models/**/*.yaml"]
environments:
  - name: staging
    self_heal: true
  - name: production
    protected: true
"""


# ------------------------------------------------------------------------------- scans (end to end)

def test_no_drift_right_after_applying_what_git_says(world: World) -> None:
    world.deploy_all()
    before = {name: len(f.calls) for name, f in world.fakes.items()}
    report = world.scan()
    assert report.items == [] and report.errors == [] and report.skipped == []
    assert report.checked == 6 and report.in_sync == 6 and report.exit_code() == 0
    assert "No drift: 6 model/environment(s) match Git" in drift_markdown(report)
    # the fakes answered GETs only: a scan never writes
    assert all(c.method == "GET" for name, f in world.fakes.items() for c in f.calls[before[name]:])


def test_replicas_changed_by_hand_is_drift_with_a_diff(world: World) -> None:
    world.deploy_all()
    world.fakes["onprem-gpu"].edit("Deployment", "search-staging", "search-reranker", {"spec": {"replicas": 5}})
    world.fakes["onprem-a"].edit("InferenceService", "risk-staging", "fraud-detector",
                                 {"spec": {"predictor": {"minReplicas": 3}}})
    report = world.scan()
    items = by_key(report)
    assert set(items) == {("search-reranker", "staging"), ("fraud-detector", "staging")}
    search = items[("search-reranker", "staging")]
    assert search.kind == "changed" and search.cluster == "onprem-gpu" and search.target == "kubernetes"
    assert "spec.replicas is 5 (Git: 2)" in search.summary
    assert "-  replicas: 5\n" in search.diff and "+  replicas: 2\n" in search.diff
    assert "status" not in search.diff and "resourceVersion" not in search.diff
    assert "spec.predictor.minReplicas is 3 (Git: 2)" in items[("fraud-detector", "staging")].summary
    assert report.checked == 6 and report.exit_code() == 1
    check = drift_check(report)
    assert check.name == DRIFT_CHECK and check.conclusion == "failure"
    assert check.title == "2 model/environment(s) drifted from Git"


def test_another_version_set_by_hand_is_drift(world: World) -> None:
    world.deploy_all()
    world.fakes["aws-eu-1"].edit("InferenceService", "risk", "fraud-detector", {
        "metadata": {"labels": {"modelherd.dev/version": "2"}},
        "spec": {"predictor": {"model": {"storageUri": "s3://models/fraud-detector/2"}}}})
    item = by_key(world.scan())[("fraud-detector", "production")]
    assert item.kind == "changed" and item.live_version == "2" and item.desired_version == "1"
    assert item.summary.startswith("serves version 2, Git says 1")
    assert "-      storageUri: s3://models/fraud-detector/2" in item.diff
    assert "+      storageUri: s3://models/fraud-detector/1" in item.diff


def test_a_canary_left_at_10_percent_is_drift(world: World) -> None:
    world.deploy_all()
    world.fakes["onprem-a"].edit("InferenceService", "growth-staging", "churn-model",
                                 {"spec": {"predictor": {"canaryTrafficPercent": 10}}})
    item = by_key(world.scan())[("churn-model", "staging")]
    assert "spec.predictor.canaryTrafficPercent is 10 (Git: absent)" in item.summary
    assert "-    canaryTrafficPercent: 10" in item.diff


def test_labels_and_annotations_others_add_are_not_drift(world: World) -> None:
    world.deploy_all()
    world.fakes["onprem-gpu"].edit("Deployment", "search", "search-reranker", {
        "metadata": {"labels": {"team": "search"}, "annotations": {"deployment.kubernetes.io/revision": "4"}},
        "spec": {"progressDeadlineSeconds": 600}})
    assert world.scan().items == []


def test_deleted_objects_are_missing(world: World) -> None:
    world.deploy_all()
    fake = world.fakes["onprem-gpu"]
    with fake.lock:
        del fake.objects[("services", "search", "search-reranker")]
    dep = world.dep("churn-model", "staging")
    world.targets("kubernetes", dep.cluster).remove(dep)
    items = by_key(world.scan())
    search = items[("search-reranker", "production")]
    assert search.kind == "missing" and search.summary == "Service search/search-reranker is missing"
    assert "+kind: Service" in search.diff
    churn = items[("churn-model", "staging")]
    assert churn.kind == "missing" and churn.live_version is None
    assert "InferenceService growth-staging/churn-model is missing" in churn.summary


def test_mlflow_alias_target_drifts_when_the_alias_points_elsewhere(world: World) -> None:
    world.deploy_all()
    world.registry.set_alias("churn-model", "production", "2")
    item = by_key(world.scan())[("churn-model", "production")]
    assert (item.kind, item.target, item.cluster) == ("changed", "mlflow-alias", ALIAS_CLUSTER)
    assert item.summary == "serves version 2, Git says 3"
    assert "-version: '2'" in item.diff and "+version: '3'" in item.diff
    world.registry.delete_alias("churn-model", "production")
    item = by_key(world.scan())[("churn-model", "production")]
    assert item.kind == "missing" and item.summary == "alias production of churn-model is missing"


def test_pinned_environments_are_compared_never_healed_and_not_counted(world: World) -> None:
    commit(world.repo, ".modelherd.yaml", SELF_HEAL_STAGING)
    world.deploy_all()
    world.fakes["onprem-a"].edit("InferenceService", "risk-staging", "fraud-detector",
                                 {"metadata": {"labels": {"modelherd.dev/version": "2"}}})
    healed: list[tuple[str, str]] = []
    report = world.scan(is_pinned=lambda repo, model, env: (repo, model, env) == (REPO, "fraud-detector", "staging"),
                        heal=lambda dep, version: healed.append(dep.key))
    item = by_key(report)[("fraud-detector", "staging")]
    assert item.pinned and not item.healing and not item.drifted
    assert healed == [] and report.pinned == [("fraud-detector", "staging")]
    assert report.exit_code() == 0 and drift_check(report).conclusion == "neutral"
    assert "pinned (a rollback waits for its revert PR; not healed)" in drift_markdown(report)


def test_when_pins_cannot_be_read_nothing_is_healed(world: World) -> None:
    commit(world.repo, ".modelherd.yaml", SELF_HEAL_STAGING)
    world.deploy_all()
    world.fakes["onprem-gpu"].edit("Deployment", "search-staging", "search-reranker", {"spec": {"replicas": 7}})
    healed: list[Any] = []

    def is_pinned(repo: str, model: str, environment: str) -> bool:
        raise ConnectionError("store unreachable")

    report = world.scan(is_pinned=is_pinned, heal=lambda dep, version: healed.append(dep))
    assert healed == [] and len(report.unknown) == 6 and report.exit_code() == 2
    assert report.items[0].summary == "cannot tell whether it is pinned: store unreachable"


def test_self_heal_only_where_enabled_and_it_restores_git(world: World) -> None:
    commit(world.repo, ".modelherd.yaml", SELF_HEAL_STAGING)
    world.deploy_all()
    for cluster, ns, name in (("onprem-gpu", "search-staging", "search-reranker"),
                              ("onprem-gpu", "search", "search-reranker")):
        world.fakes[cluster].edit("Deployment", ns, name, {"spec": {"replicas": 7}})
    world.registry.set_alias("churn-model", "production", "2")
    calls: list[tuple[tuple[str, str], str]] = []

    def heal(dep: Deployment, version: ModelVersionInfo) -> None:
        calls.append((dep.key, version.version))
        world.apply(dep, version)

    report = world.scan(heal=heal)
    assert calls == [(("search-reranker", "staging"), "2")]
    items = by_key(report)
    assert items[("search-reranker", "staging")].healing
    assert not items[("search-reranker", "production")].healing
    assert not items[("churn-model", "production")].healing
    assert "changed · self-heal started" in drift_markdown(report)
    after = by_key(world.scan(heal=heal))
    assert set(after) == {("search-reranker", "production"), ("churn-model", "production")}


def test_self_heal_that_cannot_start_is_reported(world: World) -> None:
    commit(world.repo, ".modelherd.yaml", SELF_HEAL_STAGING)
    world.deploy_all()
    world.fakes["onprem-gpu"].edit("Deployment", "search-staging", "search-reranker", {"spec": {"replicas": 7}})

    def heal(dep: Deployment, version: ModelVersionInfo) -> None:
        raise RuntimeError("store is read-only")

    report = world.scan(heal=heal)
    assert not report.items[0].healing
    assert report.errors == ["search-reranker/staging: self-heal could not start: store is read-only"]


def test_a_rollout_in_progress_is_not_compared(world: World) -> None:
    world.deploy_all()
    world.fakes["onprem-gpu"].edit("Deployment", "search", "search-reranker", {"spec": {"replicas": 7}})
    report = world.scan(rolling={("search-reranker", "production")})
    assert report.items == [] and report.checked == 5
    assert report.skipped == [Skipped("search-reranker", "production", "onprem-gpu", "a rollout is in progress")]
    assert "a rollout is in progress" in drift_markdown(report)


def test_an_unreachable_cluster_is_unknown_and_asked_once(world: World) -> None:
    world.deploy_all()
    world.fakes["onprem-a"].stop()
    world.fakes["onprem-gpu"].edit("Deployment", "search", "search-reranker", {"spec": {"replicas": 7}})
    report = world.scan()
    items = by_key(report)
    unknown = {k: i for k, i in items.items() if i.kind == "unknown"}
    assert set(unknown) == {("churn-model", "staging"), ("fraud-detector", "staging")}
    for item in unknown.values():
        assert "cluster onprem-a" in item.summary and "API server unreachable" in item.summary
    assert items[("search-reranker", "production")].kind == "changed"
    assert report.checked == 4 and report.exit_code() == 1
    world.fakes["onprem-gpu"].edit("Deployment", "search", "search-reranker", {"spec": {"replicas": 2}})
    report = world.scan()
    assert len(report.unknown) == 2 and not report.drifted and report.exit_code() == 2
    check = drift_check(report)
    assert check.conclusion == "neutral" and check.title == "No drift found, but 2 could not be checked"


def test_registry_down_and_unconfigured_cluster_are_unknown(world: World) -> None:
    world.deploy_all()
    world.registry.down = "registry unreachable: connection refused"
    report = world.scan()
    assert len(report.unknown) == 6 and report.checked == 0 and report.exit_code() == 2
    assert all("connection refused" in i.summary for i in report.items)
    world.registry.down = None
    del world.settings.clusters["aws-eu-1"]
    item = by_key(world.scan())[("fraud-detector", "production")]
    assert item.kind == "unknown" and item.summary == "cluster 'aws-eu-1' is not configured on this server"


def test_a_broken_manifest_is_an_error_and_the_others_are_compared(world: World) -> None:
    world.deploy_all()
    commit(world.repo, "models/fraud-detector.yaml", "apiVersion: modelherd.dev/v1\nkind: ModelDeployment\n")
    report = world.scan()
    assert report.checked == 4 and report.items == [] and report.exit_code() == 2
    assert report.errors and report.errors[0].startswith("models/fraud-detector.yaml")


def test_store_pins_rollouts_and_the_self_heal_rollout(world: World, sqlite_store) -> None:
    commit(world.repo, ".modelherd.yaml", SELF_HEAL_STAGING)
    world.deploy_all()
    for ns in ("search-staging", "search"):
        world.fakes["onprem-gpu"].edit("Deployment", ns, "search-reranker", {"spec": {"replicas": 7}})
    world.fakes["onprem-a"].edit("InferenceService", "risk-staging", "fraud-detector",
                                 {"spec": {"predictor": {"maxReplicas": 1}}})
    sqlite_store.pin(REPO, "fraud-detector", "staging", version="1", reason="bad canary", actor="alice")
    enqueued: list[int] = []
    heal = rollout_healer(sqlite_store, repo=REPO, kind_of=world.targets.kind_of, enqueue=enqueued.append,
                          clock=sqlite_store.now)
    report = world.scan(is_pinned=store_pins(sqlite_store), heal=heal, rolling=store_rolling(sqlite_store, REPO))
    assert by_key(report)[("fraud-detector", "staging")].pinned
    assert [i.healing for i in report.items if i.model == "search-reranker"] == [True, False]
    rollout = sqlite_store.get_rollout(enqueued[0])
    assert (rollout.trigger, rollout.model, rollout.environment, rollout.to_version, rollout.target) == \
        ("self-heal", "search-reranker", "staging", "2", "kubernetes")
    assert store_rolling(sqlite_store, REPO) == {("search-reranker", "staging")}
    again = world.scan(is_pinned=store_pins(sqlite_store), heal=heal, rolling=store_rolling(sqlite_store, REPO))
    assert [s.model for s in again.skipped] == ["search-reranker"] and len(enqueued) == 1


# --------------------------------------------------------------------------------------------- CLI

def run_cli(world: World, tmp_path: Path, *args: str) -> Any:
    settings = world.settings_file(tmp_path / "settings.yaml")
    return CliRunner().invoke(command, ["--repo", str(world.repo), "--settings", str(settings), *args],
                              obj={"registries": {"mlflow": world.registry}})


def test_cli_exit_codes_markdown_and_json(world: World, tmp_path: Path) -> None:
    world.deploy_all()
    done = run_cli(world, tmp_path)
    assert done.exit_code == 0, done.output
    assert "### modelherd drift at HEAD (" in done.output and "No drift: 6" in done.output

    world.fakes["onprem-gpu"].edit("Deployment", "search", "search-reranker", {"spec": {"replicas": 7}})
    done = run_cli(world, tmp_path)
    assert done.exit_code == 1
    assert "| search-reranker | production | onprem-gpu | changed |" in done.output
    assert "<details><summary>search-reranker · production (onprem-gpu): changed</summary>" in done.output
    assert "```diff\n--- live (onprem-gpu)\n+++ git\n" in done.output

    data = json.loads(run_cli(world, tmp_path, "--format", "json").output)
    assert data["exit_code"] == 1 and data["drifted"] == 1 and data["checked"] == 6
    assert data["items"][0]["kind"] == "changed" and "replicas: 7" in data["items"][0]["diff"]

    done = run_cli(world, tmp_path, "--pinned", "search-reranker/production", "--format", "json")
    assert done.exit_code == 0 and json.loads(done.output)["items"][0]["pinned"] is True

    world.fakes["aws-eu-1"].stop()
    world.fakes["onprem-gpu"].edit("Deployment", "search", "search-reranker", {"spec": {"replicas": 2}})
    done = run_cli(world, tmp_path, "--format", "json")
    assert done.exit_code == 2
    assert json.loads(done.output)["items"][0]["summary"].startswith("cluster aws-eu-1: read InferenceService")


def test_cli_refuses_a_bad_ref_and_bad_pins(world: World, tmp_path: Path) -> None:
    done = run_cli(world, tmp_path, "--ref", "no-such-branch")
    assert done.exit_code == 2 and "no-such-branch" in done.output
    done = run_cli(world, tmp_path, "--pinned", "fraud-detector")
    assert done.exit_code == 2 and "MODEL/ENVIRONMENT" in done.output


def test_cli_reads_pins_and_rollouts_from_the_store(world: World, tmp_path: Path, sqlite_store) -> None:
    world.deploy_all()
    world.fakes["onprem-gpu"].edit("Deployment", "search", "search-reranker", {"spec": {"replicas": 7}})
    sqlite_store.pin(REPO, "search-reranker", "production", version="2", reason="rollback", actor="bob")
    settings = world.settings_file(tmp_path / "settings.yaml")
    data = yaml.safe_load(settings.read_text())
    data["database_url"] = str(sqlite_store.engine.url)
    settings.write_text(yaml.safe_dump(data))
    done = CliRunner().invoke(command, ["--repo", str(world.repo), "--settings", str(settings), "--format", "json",
                                        "--forge-repo", REPO], obj={"registries": {"mlflow": world.registry}})
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["pinned"] == [{"model": "search-reranker", "environment": "production"}]


# -------------------------------------------------------------------------------- pure comparison

def _dep_objects() -> list[dict[str, Any]]:
    from modelherd.manifest import ModelDeployment, effective

    manifest = ModelDeployment.model_validate({
        "apiVersion": "modelherd.dev/v1", "kind": "ModelDeployment", "metadata": {"name": "ranker"},
        "spec": {"model": {"name": "ranker", "version": 4},
                 "serving": {"runtime": "deployment", "image": "ghcr.io/acme/ranker:1", "env": {"A": "1"}},
                 "environments": {"prod": {"cluster": "c", "namespace": "ml"}}}})
    version = ModelVersionInfo(name="ranker", version="4", status="READY", storage_uri="s3://m/ranker/4")
    return render(effective(manifest, "prod"), version)


def _as_served(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects as an API server returns them: server metadata, defaults, status, others' fields."""
    served = yaml.safe_load(yaml.safe_dump(objects))
    for obj in served:
        obj["metadata"].update({"uid": "u-1", "resourceVersion": "77", "generation": 3,
                                "creationTimestamp": "2026-01-01T00:00:00Z",
                                "managedFields": [{"manager": "modelherd", "operation": "Apply"}]})
        obj["metadata"]["labels"]["pod-template-hash"] = "abc"
        obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "2"
        obj["status"] = {"observedGeneration": 3}
        if obj["kind"] == "Deployment":
            container = obj["spec"]["template"]["spec"]["containers"][0]
            container.update({"imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"})
            container["env"].append({"name": "INJECTED", "value": "by-someone-else"})
            obj["spec"]["template"]["spec"]["containers"].append({"name": "istio-proxy", "image": "istio"})
            obj["spec"]["strategy"] = {"type": "RollingUpdate"}
        else:
            obj["spec"].update({"clusterIP": "10.0.0.7", "sessionAffinity": "None"})
    return served


def test_server_populated_fields_and_others_fields_are_not_drift() -> None:
    desired = _dep_objects()
    assert compare(desired, _as_served(desired)).kind is None


def test_a_changed_named_list_item_is_drift_by_name() -> None:
    desired = _dep_objects()
    served = _as_served(desired)
    env = served[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    next(e for e in env if e["name"] == "A")["value"] = "2"
    found = compare(desired, served)
    assert found.kind == "changed"
    assert [(c.path, c.live, c.desired) for c in found.changes] == \
        [("spec.template.spec.containers[model].env[A].value", "2", "1")]


def test_a_leftover_object_of_ours_is_drift_and_foreign_ones_are_not() -> None:
    desired = _dep_objects()
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "ranker", "namespace": "ml", "uid": "x",
                        "labels": {"app.kubernetes.io/managed-by": "modelherd"}},
           "spec": {"maxReplicas": 4}, "status": {"currentReplicas": 1}}
    found = compare(desired, [*_as_served(desired), hpa])
    assert found.kind == "changed" and found.extra == ("HorizontalPodAutoscaler ml/ranker",)
    assert "HorizontalPodAutoscaler ml/ranker is live but not in Git" in found.summary
    assert "-  maxReplicas: 4" in found.diff and "uid" not in found.diff and "currentReplicas" not in found.diff
    foreign = {**hpa, "metadata": {"name": "ranker", "namespace": "ml"}}
    assert compare(desired, [*_as_served(desired), foreign]).kind is None


def test_quantities_compare_by_amount() -> None:
    desired = _dep_objects()
    container = desired[0]["spec"]["template"]["spec"]["containers"][0]
    container["resources"] = {"requests": {"cpu": "0.5", "memory": "1Gi"}}
    served = _as_served(desired)
    served[0]["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "500m",
                                                                                        "memory": "1024Mi"}}
    assert compare(desired, served).kind is None
    served[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "2"
    assert [c.path for c in compare(desired, served).changes] == \
        ["spec.template.spec.containers[model].resources.requests.cpu"]


def test_full_traffic_canary_percent_is_no_drift() -> None:
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "m", "namespace": "ns"}, "spec": {"predictor": {"minReplicas": 1}}}
    live = {**isvc, "spec": {"predictor": {"minReplicas": 1, "canaryTrafficPercent": 100}}}
    assert compare([isvc], [live]).kind is None
    standard = {**isvc, "spec": {"predictor": {"minReplicas": 1}, "canary": [{"trafficPercent": 10}]}}
    found = compare([isvc], [standard])
    assert found.kind == "changed" and [c.path for c in found.changes] == ["spec.canary"]


def test_manifest_folders_come_from_the_globs() -> None:
    config = RepoConfig(manifests=["models/**/*.yaml", "deploy/ml/*.yml", "*.yaml", "teams/*/models/*.yaml"])
    assert manifest_folders(config) == ["", "deploy/ml", "models", "teams"]


def test_a_manifest_at_the_repository_root_is_read(tmp_path: Path) -> None:
    repo = example_repo(tmp_path / "repo")
    commit(repo, ".modelherd.yaml", 'version: 1\nmanifests: ["*.yaml", "models/**/*.yaml"]\n')
    (repo / "root-model.yaml").write_text((repo / "models" / "churn-model.yaml").read_text()
                                          .replace("name: churn-model\n", "name: root-model\n", 1))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "root manifest")
    names = {d.name for d in read_desired(LocalGit(repo), "main").deployments}
    assert names == {"churn-model", "fraud-detector", "search-reranker", "root-model"}


# ------------------------------------------------------------------------------- Markdown escaping

def test_markdown_escapes_every_untrusted_string() -> None:
    nasty = DriftItem(model="@evil-team <img src=x>", environment="prod|#12", cluster="c`1`",
                      kind="changed", summary="spec.args is `rm -rf` | :tada: @here [x](javascript:alert(1))",
                      diff="--- live\n+++ git\n-  a: ```\n+  a: <script>alert(1)</script>\n")
    report = DriftReport(items=[nasty], checked=1, errors=["registry @admin <b>down</b>"],
                         skipped=[Skipped("m_1", "e*2", "c", "a rollout is in progress")],
                         pinned=[("@x", "y")], ref="main <b>", checked_at=NOW)
    text = drift_markdown(report)
    row = next(line for line in text.splitlines() if line.startswith("| @"))
    assert row.count(" | ") == 4                               # no extra cell from the pipes
    assert "<img" not in text and "<b>" not in text and "<script>" not in text.split("```diff")[0]
    assert "@evil" not in text.replace("@\u200bevil", "")      # mentions are broken
    assert "#12" not in text.replace("#\u200b12", "")           # issue references are broken
    assert "[x](" not in text and "\\[x\\](javascript" in text   # brackets escaped: no link
    assert "````diff\n" in text                                  # the fence outgrows the backticks inside
    assert "<summary>@\u200bevil-team &lt;img src=x&gt; · prod|#\u200b12 (c`1`): changed</summary>" in text
    assert "m\\_1/e\\*2" in text
    json.dumps(drift_to_dict(report))


def test_markdown_leaves_out_diffs_beyond_the_limit() -> None:
    items = [DriftItem(model=f"m{i}", environment="prod", cluster="c", kind="changed", summary="x",
                       diff="-a\n" * 500 + "+b\n") for i in range(5)]
    text = drift_markdown(DriftReport(items=items, checked=5), limit=4000)
    assert len(text) < 4200 and "Further diffs are left out" in text
    assert text.count("<details>") == 2 and text.count("| m4 | prod |") == 1
