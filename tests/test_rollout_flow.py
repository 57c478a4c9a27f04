"""Rollouts end to end: merge → staged rollout; a failing canary rolls back; /deploy and its refusals;
/rollback with a revert pull request — through the fake GitHub (OpenAPI-validated), two fake
Kubernetes API servers driven by the real `kubernetes` client, and the rollout engine on the queue."""

from __future__ import annotations

import pytest

from modelherd.comment import MARKER
from modelherd.registry.memory import InMemoryRegistry
from modelherd.settings import ClusterConfig, Provider
from tests.github_app import GitHubApp, example_files

PASSED = {"validation_status": "passed"}


@pytest.fixture
def registry() -> InMemoryRegistry:
    reg = InMemoryRegistry()
    for v, auc in ((1, 0.931), (2, 0.947), (3, 0.95)):
        reg.add("fraud-detector", v, metrics={"auc": auc, "latency_p99_ms": 30}, tags=PASSED)
    reg.add("churn-model", 3, metrics={"f1": 0.78, "accuracy": 0.88}, tags=PASSED)
    reg.add("churn-model", 4, metrics={"f1": 0.71, "accuracy": 0.84}, tags=PASSED)
    return reg


@pytest.fixture
def clusters(fake_kube_factory, tmp_path):
    onprem, aws = fake_kube_factory("onprem-a"), fake_kube_factory("aws-eu-1")
    config = {}
    for name, fake, provider in (("onprem-a", onprem, Provider.ONPREM), ("aws-eu-1", aws, Provider.AWS)):
        path = fake.write_kubeconfig(tmp_path / f"{name}.kubeconfig", context=name)
        config[name] = ClusterConfig(provider=provider, kubeconfig=str(path), context=name)
    config["gcp-us-1"] = ClusterConfig(provider=Provider.GCP, target="mlflow-alias")
    config["onprem-gpu"] = ClusterConfig(provider=Provider.ONPREM, gpus=True, target="mlflow-alias")
    return {"onprem-a": onprem, "aws-eu-1": aws}, config


@pytest.fixture
def app(fake_github, tmp_path, registry, clusters):
    files = example_files()
    files["models/fraud-detector.yaml"] = files["models/fraud-detector.yaml"].replace("verify_for: 10m", "verify_for: 0s")
    harness = GitHubApp(fake_github, tmp_path, registry, clusters=clusters[1], files=files)
    fake_github.add_team_member("acme", "risk-ml", "bob")
    for user in ("alice", "bob"):
        fake_github.set_permission(harness.repo, user, "write")
    fake_github.set_permission(harness.repo, "mallory", "read")
    harness.kube = clusters[0]
    yield harness
    harness.close()


def approved_pr(app, old=1, new=2):
    number = app.pull_request(app.bump("fraud-detector", old, new), author="alice")
    app.deliver("pull_request", app.pull_request_payload("opened", number))
    app.work()
    app.fake.add_review(app.repo, number, "bob", "APPROVED")
    app.deliver("pull_request_review", app.review_payload("submitted", number, "bob", "APPROVED"))
    app.work()
    return number


def live_version(fake, namespace="risk", name="fraud-detector"):
    obj = fake.get("InferenceService", namespace, name)
    return obj["metadata"]["labels"]["modelherd.dev/version"] if obj else None


def test_merge_rolls_out_staging_then_production(app, registry):
    number = approved_pr(app)
    merge_sha = app.merge(number)
    app.run_rollouts()
    rollouts = {r.environment: r for r in app.store.list_rollouts(repo=app.repo)}
    assert {env: r.state for env, r in rollouts.items()} == {"staging": "succeeded", "production": "succeeded"}
    assert rollouts["production"].started_at >= rollouts["staging"].finished_at       # promotion order
    assert live_version(app.kube["onprem-a"], "risk-staging") == "2" and live_version(app.kube["aws-eu-1"]) == "2"
    assert registry.resolve("fraud-detector", alias="production").version == "2"    # the registry learns
    assert "modelherd.deployed.production" in registry.resolve("fraud-detector", version=2).tags
    check = app.check(merge_sha, "modelherd/rollout")
    assert (check.status, check.conclusion) == ("completed", "success")
    deployments = {d.environment: d for d in app.fake.deployments(app.repo)}
    assert set(deployments) == {"staging/fraud-detector", "production/fraud-detector"}
    assert [s["state"] for s in deployments["production/fraud-detector"].statuses][-1] == "success"
    comments = app.comments(number)
    assert any("merged, rolling out" in c.body for c in comments)
    plan_comment = comments[0]
    assert "#### Rollouts" in plan_comment.body and "✅" in plan_comment.body.split("#### Rollouts")[1]


def test_failed_canary_rolls_back_and_rejects_the_version(app, registry):
    number = approved_pr(app)
    app.kube["aws-eu-1"].behave("risk", "fraud-detector", "fail-load", message="model file is corrupt",
                                version="2")
    merge_sha = app.merge(number)
    app.run_rollouts()
    [prod] = [r for r in app.store.list_rollouts(repo=app.repo) if r.environment == "production"]
    assert prod.state == "rolled_back"
    assert live_version(app.kube["aws-eu-1"]) == "1"
    assert "modelherd.rejected" in registry.resolve("fraud-detector", version=2).tags
    assert app.check(merge_sha, "modelherd/rollout").conclusion == "failure"
    [deployment] = [d for d in app.fake.deployments(app.repo) if d.environment == "production/fraud-detector"]
    assert deployment.statuses[-1]["state"] == "failure"


def reply(app, number, user, body):
    app.comment(number, user, body)
    app.work()
    return app.comments(number)[-1].body


def test_deploy_to_staging_before_merge(app):
    number = approved_pr(app)
    answer = reply(app, number, "bob", "/deploy staging")
    assert "rollout #" in answer and "staging" in answer
    app.run_rollouts()
    assert live_version(app.kube["onprem-a"], "risk-staging") == "2"
    assert live_version(app.kube["aws-eu-1"]) is None                  # production waits for the merge


@pytest.mark.parametrize("case", ["protected", "head-moved", "checks", "permission", "not-changed"])
def test_deploy_refusals(app, case):
    number = approved_pr(app) if case != "checks" else None
    command, user = "/deploy staging", "bob"
    if case == "protected":
        command = "/deploy production"
    elif case == "head-moved":
        app.fake.push_to_pull(app.repo, number, app.bump("fraud-detector", 1, 3))   # no webhook yet
    elif case == "checks":
        number = app.pull_request({**app.bump("churn-model", 3, 4)})
        app.deliver("pull_request", app.pull_request_payload("opened", number))
        app.work()
    elif case == "permission":
        user = "mallory"
    elif case == "not-changed":
        command = "/deploy dev"
    answer = reply(app, number, user, command)
    expected = {"protected": "is protected", "head-moved": "head moved since the last plan",
                "checks": "checks do not pass", "permission": "refused", "not-changed": "not an environment"}[case]
    assert expected in answer, answer
    assert app.store.list_rollouts(repo=app.repo) == []


def test_rollback_after_merge_opens_a_revert_pull_request_and_pins(app, registry):
    number = approved_pr(app)
    app.merge(number)
    app.run_rollouts()
    answer = reply(app, number, "alice", "/rollback production")
    assert "v2 → v1" in answer
    app.run_rollouts()
    assert live_version(app.kube["aws-eu-1"]) == "1"
    pin = app.store.pinned(app.repo, "fraud-detector", "production")
    assert pin is not None and pin.version == "1" and pin.revert_pr
    revert = app.fake.pull(app.repo, pin.revert_pr)
    assert revert.title.startswith(f"Revert #{number}")
    assert "version: 1}" in app.fake.read_file(app.repo, revert.head_sha, "models/fraud-detector.yaml")
    assert "modelherd.rejected" in registry.resolve("fraud-detector", version=2).tags
    app.merge(pin.revert_pr)                                            # Git says v1 again: unpinned
    app.work()
    assert app.store.pinned(app.repo, "fraud-detector", "production") is None


def test_drift_after_a_hand_edit_is_reported_on_the_default_branch(app):
    number = approved_pr(app)
    merge_sha = app.merge(number)
    app.run_rollouts()
    app.deliver("push", app.push_payload(merge_sha))
    app.work()
    # only fraud-detector was ever deployed here: the others are (rightly) missing, fraud-detector is in sync
    assert "| fraud-detector |" not in app.check(merge_sha, "modelherd/drift").output["summary"]
    app.kube["aws-eu-1"].edit("InferenceService", "risk", "fraud-detector",
                              {"spec": {"predictor": {"minReplicas": 1}}})          # someone scaled it down by hand
    app.deliver("push", app.push_payload(merge_sha))
    app.work()
    check = app.check(merge_sha, "modelherd/drift")
    assert check.conclusion == "failure" and "| fraud-detector | production |" in check.output["summary"]


def test_pinned_environment_is_not_reported_as_drift(app):
    number = approved_pr(app)
    merge_sha = app.merge(number)
    app.run_rollouts()
    reply(app, number, "alice", "/rollback production")
    app.run_rollouts()                                                               # production serves v1, Git says v2
    app.deliver("push", app.push_payload(merge_sha))
    app.work()
    summary = app.check(merge_sha, "modelherd/drift").output["summary"]
    [row] = [line for line in summary.splitlines() if line.startswith("| fraud-detector | production |")]
    assert "pinned" in row and "not healed" in row                      # shown, but not counted as drift


def test_slack_gets_one_thread_for_the_pull_request(fake_github, fake_slack, tmp_path, registry, clusters):
    from modelherd.settings import SlackSettings

    files = example_files()
    files["models/fraud-detector.yaml"] = files["models/fraud-detector.yaml"].replace("verify_for: 10m", "verify_for: 0s")
    app = GitHubApp(fake_github, tmp_path, registry, clusters=clusters[1], files=files,
                    slack=SlackSettings(token=fake_slack.token, base_url=fake_slack.base_url,
                                        default_channel="#deploys"))
    try:
        fake_github.add_team_member("acme", "risk-ml", "bob")
        number = approved_pr(app)
        app.merge(number)
        app.run_rollouts()
        for _ in range(5):                                   # the Slack jobs run from the same queue
            app.step()
        [summary] = fake_slack.top_level()
        texts = [m.text or "" for m in fake_slack.replies(summary)]
        assert any("Plan ready" in t for t in texts), fake_slack.transcript()
        assert any("Approved by bob" in t for t in texts), fake_slack.transcript()
        assert any("production serves v2" in t for t in texts), fake_slack.transcript()
        assert summary.updates, "the summary is edited in place as the state changes"
    finally:
        app.close()


def test_the_plan_shows_the_objects_as_the_rollout_applies_them(app):
    number = approved_pr(app)
    [comment] = [c.body for c in app.comments(number) if c.body.startswith(MARKER)]
    assert f"modelherd.dev/repository: {app.repo}" in comment          # the annotation the rollout writes
    app.merge(number)
    app.run_rollouts()
    live = app.kube["aws-eu-1"].get("InferenceService", "risk", "fraud-detector")
    assert live["metadata"]["annotations"]["modelherd.dev/repository"] == app.repo


def test_a_renamed_model_leaves_orphans_on_the_drift_check(app):
    number = approved_pr(app)
    app.merge(number)
    app.run_rollouts()
    live = app.kube["aws-eu-1"].get("InferenceService", "risk", "fraud-detector")
    assert live["metadata"]["annotations"]["modelherd.dev/repository"] == app.repo     # rollouts record it
    renamed = app.file("models/fraud-detector.yaml").replace("  name: fraud-detector\n", "  name: fraud-scorer\n", 1)
    sha = app.fake.add_commit(app.repo, {"models/fraud-detector.yaml": None, "models/fraud-scorer.yaml": renamed},
                              message="Rename fraud-detector", branch="main")
    app.deliver("push", app.push_payload(sha))
    app.work()
    summary = app.check(sha, "modelherd/drift").output["summary"]
    assert "#### Orphaned: 2 live object(s)" in summary
    assert "| InferenceService | risk/fraud-detector | aws-eu-1 | fraud-detector | production | 2 |" in summary
    assert "| InferenceService | risk-staging/fraud-detector | onprem-a | fraud-detector | staging | 2 |" in summary
    assert app.kube["aws-eu-1"].get("InferenceService", "risk", "fraud-detector") is not None
