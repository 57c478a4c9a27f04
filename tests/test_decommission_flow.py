"""Decommission end to end: a merged pull request that deletes a manifest removes the model from its
clusters — through the fake GitHub (OpenAPI-validated), two fake Kubernetes API servers driven by the real
`kubernetes` client, and the rollout engine on the queue.  Also: the opt-out (``prune: false``), a
protected environment's approvals, ``/rollback`` afterwards, and drift leaving the environment alone."""

from __future__ import annotations

import pytest

from tests.test_rollout_flow import app, approved_pr, clusters, live_version, registry, reply  # noqa: F401

MANIFEST = "models/fraud-detector.yaml"
NO_PRUNE_IN_PRODUCTION = """\
environments:
  - name: staging
  - name: production
    protected: true
    approvals: {count: 1, owners: true}
    prune: false
"""
SELF_HEALING = """\
environments:
  - name: staging
    self_heal: true
  - name: production
    protected: true
    approvals: {count: 1, owners: true}
"""


def deployed(app) -> None:
    """fraud-detector v2 serves in staging (onprem-a) and production (aws-eu-1), rolled out by a merge."""
    app.merge(approved_pr(app))
    app.run_rollouts()
    assert live_version(app.kube["onprem-a"], "risk-staging") == "2" and live_version(app.kube["aws-eu-1"]) == "2"


def deletion_pr(app, *, approve: bool = True) -> int:
    number = app.pull_request({MANIFEST: None}, author="alice")
    app.deliver("pull_request", app.pull_request_payload("opened", number))
    app.work()
    if approve:
        app.fake.add_review(app.repo, number, "bob", "APPROVED")
        app.deliver("pull_request_review", app.review_payload("submitted", number, "bob", "APPROVED"))
        app.work()
    return number


def decommissions(app) -> dict[str, object]:
    return {r.environment: r for r in app.store.list_rollouts(repo=app.repo) if r.action == "decommission"}


def test_merged_deletion_removes_the_model_from_its_clusters(app, registry):
    deployed(app)
    number = deletion_pr(app)
    plan = app.comments(number)[0].body
    assert "will be removed from cluster `onprem-a` namespace `risk-staging` (`staging`)" in plan
    assert "will be removed from cluster `aws-eu-1` namespace `risk` (`production`)" in plan
    merge_sha = app.merge(number)
    app.run_rollouts()

    gone = decommissions(app)
    assert {env: r.state for env, r in gone.items()} == {"staging": "succeeded", "production": "succeeded"}
    assert gone["production"].started_at >= gone["staging"].finished_at                 # promotion order
    assert gone["staging"].from_version == "2"
    assert app.kube["onprem-a"].get("InferenceService", "risk-staging", "fraud-detector") is None
    assert app.kube["aws-eu-1"].get("InferenceService", "risk", "fraud-detector") is None
    with pytest.raises(Exception):
        registry.resolve("fraud-detector", alias="production")                          # the registry forgets
    for fake in app.kube.values():
        fake.assert_clean()

    check = app.check(merge_sha, "modelherd/rollout")
    assert (check.status, check.conclusion) == ("completed", "success")
    assert "decommissioned" in check.output["title"]
    assert "v2 → removed" in check.output["summary"]
    statuses = {d.environment: [s["state"] for s in d.statuses] for d in app.fake.deployments(app.repo)
                if d.payload.get("action") == "decommission"}
    assert statuses["staging/fraud-detector"][-1] == "inactive"
    assert statuses["production/fraud-detector"][-1] == "inactive"
    comments = app.comments(number)
    merged_note = next(c.body for c in comments if "merged, rolling out" in c.body)
    assert "will be removed from `staging`: cluster `onprem-a` namespace `risk-staging`" in merged_note
    rollouts = comments[0].body.split("#### Rollouts")[1]
    assert rollouts.count("decommissioned: removed from cluster") == 2

    history = app.store.list_rollouts(repo=app.repo, model="fraud-detector", environment="production")[0]
    assert history.action == "decommission" and history.pr_number == number


def test_drift_neither_reports_nor_heals_a_decommissioned_environment(app):
    app.fake.add_commit(app.repo, {".modelherd.yaml": SELF_HEALING}, branch="main")
    deployed(app)
    number = deletion_pr(app)
    merge_sha = app.merge(number)
    app.run_rollouts()
    before = len(app.store.list_rollouts(repo=app.repo, model="fraud-detector"))
    app.deliver("push", app.push_payload(merge_sha))
    app.run_rollouts()
    assert len(app.store.list_rollouts(repo=app.repo, model="fraud-detector")) == before   # no self-heal
    healed = app.store.list_rollouts(repo=app.repo, model="churn-model")
    assert [(r.environment, r.trigger) for r in healed] == [("staging", "self-heal")]  # healing is on
    drift = app.check(merge_sha, "modelherd/drift")
    assert "churn-model" in drift.output["summary"]
    assert "fraud-detector" not in drift.output["summary"]
    assert app.kube["aws-eu-1"].get("InferenceService", "risk", "fraud-detector") is None


def test_prune_off_keeps_the_old_remove_by_hand_message(app):
    app.fake.add_commit(app.repo, {".modelherd.yaml": NO_PRUNE_IN_PRODUCTION}, branch="main")
    deployed(app)
    number = deletion_pr(app)
    plan = app.comments(number)[0].body
    assert "prune is off for `production` in `.modelherd.yaml`: after merge, remove `fraud-detector` from " \
           "cluster `aws-eu-1` namespace `risk` by hand" in plan
    merge_sha = app.merge(number)
    app.run_rollouts()
    assert set(decommissions(app)) == {"staging"}
    assert live_version(app.kube["aws-eu-1"]) == "2"                                      # left alone
    assert app.kube["onprem-a"].get("InferenceService", "risk-staging", "fraud-detector") is None
    note = next(c.body for c in app.comments(number) if "merged, rolling out" in c.body)
    assert "prune is off for production: deleting a deployment is not rolled out automatically: remove it " \
           "from the cluster by hand" in note
    # ...and drift keeps reminding: no manifest uses namespace risk any more, but modelherd deployed there
    app.deliver("push", app.push_payload(merge_sha))
    app.work()
    summary = app.check(merge_sha, "modelherd/drift").output["summary"]
    assert "| InferenceService | risk/fraud-detector | aws-eu-1 | fraud-detector | production | 2 |" in summary


def test_deletion_in_a_protected_environment_needs_its_approval(app):
    deployed(app)
    number = deletion_pr(app, approve=False)
    plan = app.comments(number)[0].body
    assert "is deleted from protected production" in plan
    app.merge(number)                                               # an administrator merged past the rule
    app.run_rollouts()
    assert set(decommissions(app)) == {"staging"}
    assert live_version(app.kube["aws-eu-1"]) == "2"
    note = next(c.body for c in app.comments(number) if "merged, rolling out" in c.body)
    assert "`fraud-detector` in `production` not deployed: its approval rules were not satisfied" in note


def test_rollback_after_a_decommission_recreates_the_last_good_version(app):
    deployed(app)
    number = deletion_pr(app)
    app.merge(number)
    app.run_rollouts()
    answer = reply(app, number, "bob", "/rollback production")
    assert "`fraud-detector` in `production`: re-create v2 (decommissioned by this pull request" in answer
    assert "pinned until" in answer
    app.run_rollouts()
    assert live_version(app.kube["aws-eu-1"]) == "2"                                      # re-created
    [back] = [r for r in app.store.list_rollouts(repo=app.repo, environment="production") if r.trigger == "rollback"]
    assert (back.state, back.from_version, back.to_version) == ("succeeded", None, "2")
    pin = app.store.pinned(app.repo, "fraud-detector", "production")
    revert = app.fake.pull(app.repo, pin.revert_pr)
    assert "version: 2}" in app.fake.read_file(app.repo, revert.head_sha, MANIFEST)       # the manifest comes back
