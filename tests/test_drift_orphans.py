"""Orphans in the drift report: live objects this repository deployed that Git no longer declares.

Scans of a real git repository (``examples/repo``, the world of :mod:`tests.test_drift`) against
:class:`FakeKube` clusters driven by the real ``kubernetes`` client; objects are deployed through the
target as the rollout engine does, carrying the repository they were deployed from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from modelherd.drift import DriftReport, drift_check, drift_markdown, drift_to_dict
from modelherd.drift_cli import command
from modelherd.manifest import Deployment
from modelherd.orphans import Orphan, OrphanReport, declared_keys, find_orphans, orphans_markdown
from modelherd.registry import ModelVersionInfo
from modelherd.render import ANNOTATION_REPOSITORY

from tests.gitrepo import git
from tests.test_drift import NOW, REPO, SELF_HEAL_STAGING, World, commit, world  # noqa: F401  (fixture)

FRAUD = (Path(__file__).parents[1] / "examples/repo/models/fraud-detector.yaml").read_text()


def deploy(world: World, dep: Deployment, repository: str | None = REPO) -> None:
    """Apply ``dep`` as a rollout of ``repository`` would (None: as before repositories were recorded)."""
    world.apply(dep.model_copy(update={"repository": repository}))


def deploy_all(world: World) -> None:
    for dep in world.deployments():
        deploy(world, dep)


def add_model(world: World, name: str) -> None:
    """A manifest for ``name``: fraud-detector's, in the same namespaces (risk-staging, risk)."""
    (world.repo / f"models/{name}.yaml").write_text(FRAUD.replace("  name: fraud-detector\n", f"  name: {name}\n", 1))
    git(world.repo, "add", "-A")
    git(world.repo, "commit", "-qm", f"add {name}")


def remove_model(world: World, name: str) -> None:
    git(world.repo, "rm", "-q", f"models/{name}.yaml")
    git(world.repo, "commit", "-qm", f"remove {name}")


def orphans(world: World, **kwargs) -> list[tuple[str, str, str, str]]:
    report = world.scan(**kwargs)
    return [(o.cluster, o.kind, o.namespace, o.name) for o in report.orphans.orphans]


# ---------------------------------------------------------------------------------- end to end

def test_a_model_whose_manifest_was_removed_shows_as_orphaned(world: World) -> None:
    add_model(world, "fraud-shadow")
    deploy_all(world)
    assert world.scan().orphans.orphans == []
    remove_model(world, "fraud-shadow")

    report = world.scan()

    assert report.orphans.orphans == [
        Orphan("aws-eu-1", "InferenceService", "risk", "fraud-shadow", "fraud-detector", "production", "1"),
        Orphan("onprem-a", "InferenceService", "risk-staging", "fraud-shadow", "fraud-detector", "staging", "1"),
    ]
    text = drift_markdown(report)
    assert "#### Orphaned: 2 live object(s) of this repository that Git no longer declares" in text
    assert "| InferenceService | risk/fraud-shadow | aws-eu-1 | fraud-detector | production | 1 |" in text
    assert drift_check(report).title == "No drift: 6 model/environment(s) match Git; 2 orphaned object(s) not in Git"
    data = drift_to_dict(report)
    assert data["orphans"][0] == {"cluster": "aws-eu-1", "kind": "InferenceService", "namespace": "risk",
                                  "name": "fraud-shadow", "model": "fraud-detector", "environment": "production",
                                  "version": "1"}


def test_a_model_removed_with_its_own_namespace_is_found_where_the_store_says_it_was(world: World) -> None:
    """No manifest uses the namespace any more; the store's rollouts say modelherd deployed there."""
    manifest = FRAUD.replace("  name: fraud-detector\n", "  name: fraud-alone\n", 1)
    manifest = manifest.replace("namespace: risk-staging", "namespace: alone-staging").replace(
        "namespace: risk", "namespace: alone")
    (world.repo / "models/fraud-alone.yaml").write_text(manifest)
    git(world.repo, "add", "-A")
    git(world.repo, "commit", "-qm", "add fraud-alone")
    deploy_all(world)
    remove_model(world, "fraud-alone")
    assert orphans(world) == []                               # its namespaces are in no manifest now
    assert orphans(world, deployed=[("aws-eu-1", "alone"), ("onprem-a", "alone-staging")]) == [
        ("aws-eu-1", "InferenceService", "alone", "fraud-alone"),
        ("onprem-a", "InferenceService", "alone-staging", "fraud-alone")]


def test_objects_of_another_repository_and_hand_made_ones_are_not_orphans(world: World) -> None:
    add_model(world, "fraud-other")
    other = world.dep("fraud-other", "staging")
    for dep in world.deployments():
        deploy(world, dep, repository="acme/other-models" if dep.key == other.key else REPO)
    remove_model(world, "fraud-other")                       # ours no more; staging's belongs to acme/other-models
    gpu = world.fakes["onprem-gpu"]
    gpu.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "debug", "namespace": "search",
                                                                   "labels": {"app": "search-reranker"}},
                "spec": {"ports": [{"port": 80}]}})
    gpu.create({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "canary-by-hand", "namespace": "search",
                             "labels": {"app.kubernetes.io/managed-by": "helm"}},
                "spec": {"selector": {"matchLabels": {"app": "x"}},
                         "template": {"metadata": {"labels": {"app": "x"}},
                                      "spec": {"containers": [{"name": "x", "image": "x:1"}]}}}})

    assert orphans(world) == [("aws-eu-1", "InferenceService", "risk", "fraud-other")]


def test_objects_without_a_repository_are_counted_not_reported(world: World) -> None:
    add_model(world, "fraud-legacy")
    for dep in world.deployments():
        deploy(world, dep, repository=None)                  # applied before modelherd recorded repositories
    remove_model(world, "fraud-legacy")

    report = world.scan()

    assert report.orphans.orphans == [] and report.orphans.unattributed == 2
    assert "2 object(s) labelled as managed by modelherd in these namespaces are not declared here" \
        in drift_markdown(report)


def test_orphans_warn_but_never_fail_the_check_or_the_exit_code(world: World) -> None:
    add_model(world, "fraud-shadow")
    deploy_all(world)
    remove_model(world, "fraud-shadow")
    report = world.scan()
    assert len(report.orphans.orphans) == 2
    assert drift_check(report).conclusion == "neutral" and report.exit_code() == 0

    world.fakes["onprem-gpu"].edit("Deployment", "search", "search-reranker", {"spec": {"replicas": 7}})
    report = world.scan()
    assert drift_check(report).conclusion == "failure" and report.exit_code() == 1
    assert drift_check(report).title.startswith("1 model/environment(s) drifted from Git; 2 orphaned")


def test_self_heal_never_deletes_orphans(world: World) -> None:
    commit(world.repo, ".modelherd.yaml", SELF_HEAL_STAGING)
    add_model(world, "fraud-shadow")
    deploy_all(world)
    remove_model(world, "fraud-shadow")
    world.fakes["onprem-a"].edit("InferenceService", "risk-staging", "fraud-detector",
                                 {"spec": {"predictor": {"maxReplicas": 1}}})
    healed: list[tuple[str, str]] = []

    def heal(dep: Deployment, version: ModelVersionInfo) -> None:
        healed.append(dep.key)
        deploy(world, dep)

    report = world.scan(heal=heal)

    assert healed == [("fraud-detector", "staging")]
    assert len(report.orphans.orphans) == 2
    assert world.fakes["onprem-a"].get("InferenceService", "risk-staging", "fraud-shadow") is not None
    assert not any(c.method == "DELETE" for fake in world.fakes.values() for c in fake.calls)
    assert len(world.scan(heal=heal).orphans.orphans) == 2


def test_list_calls_per_namespace_do_not_grow_with_the_models(world: World) -> None:
    def lists_in_one_scan() -> dict[str, int]:
        before = {name: len(fake.lists()) for name, fake in world.fakes.items()}
        world.scan()
        return {name: len(fake.lists()) - before[name] for name, fake in world.fakes.items()}

    deploy_all(world)
    one_model = lists_in_one_scan()
    for n in range(6):
        add_model(world, f"fraud-{n}")
    deploy_all(world)
    seven_models = lists_in_one_scan()

    # four kinds per namespace: onprem-a growth-staging + risk-staging, aws-eu-1 risk, onprem-gpu two
    assert one_model == seven_models == {"onprem-a": 8, "aws-eu-1": 4, "onprem-gpu": 8}
    selectors = {c.query.get("labelSelector") for fake in world.fakes.values() for c in fake.lists()}
    assert selectors == {"app.kubernetes.io/managed-by=modelherd"}


def test_what_cannot_be_listed_is_said_and_changes_nothing(world: World) -> None:
    deploy_all(world)
    world.fakes["aws-eu-1"].stop()
    report = world.scan()
    assert "cluster gcp-us-1: the mlflow-alias target cannot list what modelherd manages" in report.orphans.not_listed
    assert "cluster aws-eu-1: not asked: it did not answer in this scan" in report.orphans.not_listed
    assert ("onprem-a", "risk-staging") in report.orphans.listed and report.exit_code() == 2

    commit(world.repo, "models/fraud-detector.yaml", "apiVersion: modelherd.dev/v1\nkind: ModelDeployment\n")
    report = world.scan()
    assert report.orphans.listed == [] and "could not be read" in report.orphans.not_listed[0]
    assert "Orphans not listed:" in drift_markdown(report)


# --------------------------------------------------------------------------------------------- CLI

def test_cli_lists_orphans_of_the_forge_repo(world: World, tmp_path: Path, sqlite_store) -> None:
    add_model(world, "fraud-shadow")
    deploy_all(world)
    remove_model(world, "fraud-shadow")
    settings = world.settings_file(tmp_path / "settings.yaml")
    data = yaml.safe_load(settings.read_text())
    data["database_url"] = str(sqlite_store.engine.url)
    settings.write_text(yaml.safe_dump(data))

    def run(*args: str):
        return CliRunner().invoke(command, ["--repo", str(world.repo), "--settings", str(settings), *args],
                                  obj={"registries": {"mlflow": world.registry}})

    done = run("--forge-repo", REPO)
    assert done.exit_code == 0, done.output
    assert "| InferenceService | risk-staging/fraud-shadow | onprem-a | fraud-detector | staging | 1 |" in done.output
    data = json.loads(run("--forge-repo", REPO, "--format", "json").output)
    assert [(o["cluster"], o["name"]) for o in data["orphans"]] == [("aws-eu-1", "fraud-shadow"),
                                                                    ("onprem-a", "fraud-shadow")]
    done = run()
    assert done.exit_code == 0 and "no repository given" in done.output and "#### Orphaned" not in done.output


# ---------------------------------------------------------------------------------------- pure core

def _live(name: str, *, kind: str = "InferenceService", repository: str | None = REPO,
          managed: str = "modelherd", labels: dict[str, str] | None = None) -> dict:
    notes = {ANNOTATION_REPOSITORY: repository} if repository else {}
    return {"apiVersion": "v1", "kind": kind,
            "metadata": {"name": name, "namespace": "ml", "annotations": notes,
                         "labels": {"app.kubernetes.io/managed-by": managed, **(labels or {})}}}


def test_find_orphans_keeps_only_undeclared_objects_of_this_repository(world: World) -> None:
    deps = [d for d in world.deployments() if d.name == "search-reranker"]
    declared = declared_keys(d.model_copy(update={"namespace": "ml"}) for d in deps)
    live = {("onprem-gpu", "ml"): [
        _live("search-reranker", kind="HorizontalPodAutoscaler"),     # a declared model's (stale HPA: drift)
        _live("gone", kind="Service", labels={"modelherd.dev/model": "m"}),
        _live("theirs", repository="acme/other"),
        _live("unmarked", repository=None),
        _live("by-helm", managed="helm"),
    ]}
    found, unattributed = find_orphans(live, declared, REPO)
    assert found == [Orphan("onprem-gpu", "Service", "ml", "gone", "m")] and unattributed == 1


def test_orphan_markdown_escapes_what_the_cluster_says() -> None:
    nasty = Orphan("c|1", "Service", "ml", "@evil <img src=x> #12", "[x](javascript:alert(1))", "prod|x", "`1`")
    lines = orphans_markdown(OrphanReport(orphans=[nasty], not_listed=["cluster @ops: <b>denied</b>"]))
    text = "\n".join(lines)
    row = next(line for line in lines if line.startswith("| Service"))
    assert row.count(" | ") == 5                                        # no extra cells from the pipes
    assert "<img" not in text and "<b>" not in text and "[x](" not in text
    assert "@evil" not in text.replace("@\u200bevil", "") and "#12" not in text.replace("#\u200b12", "")
    assert "@ops" not in text.replace("@\u200bops", "")
    text = drift_markdown(DriftReport(checked=1, ref="main", checked_at=NOW,
                                      orphans=OrphanReport(orphans=[nasty] * 150)))
    assert text.count("| Service |") == 100 and "50 more orphaned object(s) are left out" in text


@pytest.mark.parametrize("repository", [None, "acme/models"])
def test_rendered_objects_carry_the_repository_only_when_known(world: World, repository: str | None) -> None:
    from modelherd.render import render

    dep = world.dep("fraud-detector", "staging").model_copy(update={"repository": repository})
    [obj] = render(dep, world.version(dep))
    assert obj["metadata"]["annotations"].get(ANNOTATION_REPOSITORY) == repository
