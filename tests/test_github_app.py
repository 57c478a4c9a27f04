"""The GitHub App end to end: signed real payloads in, a plan comment and check runs out, through the
fake GitHub that holds every request to the official OpenAPI description (github.com and GHES 3.19)."""

from __future__ import annotations

import pytest

from modelherd.comment import MARKER
from modelherd.registry.memory import InMemoryRegistry
from modelherd.store import EventState
from tests.github_app import GitHubApp

pytestmark = pytest.mark.parametrize("fake_github", ["github.com", "ghes-3.19"], indirect=True)
PASSED = {"validation_status": "passed"}


@pytest.fixture
def registry() -> InMemoryRegistry:
    reg = InMemoryRegistry()
    reg.add("fraud-detector", 1, metrics={"auc": 0.931, "latency_p99_ms": 31}, tags=PASSED)
    reg.add("fraud-detector", 2, metrics={"auc": 0.947, "latency_p99_ms": 29.5}, tags=PASSED)
    reg.add("fraud-detector", 3, metrics={"auc": 0.951, "latency_p99_ms": 28}, tags=PASSED)
    reg.add("churn-model", 3, metrics={"f1": 0.78, "accuracy": 0.88}, tags=PASSED)
    reg.add("churn-model", 4, metrics={"f1": 0.71, "accuracy": 0.84}, tags=PASSED)
    return reg


@pytest.fixture
def app(fake_github, tmp_path, registry):
    harness = GitHubApp(fake_github, tmp_path, registry)
    yield harness
    harness.close()


def test_opened_pull_request_gets_one_comment_and_a_check(app):
    number = app.pull_request({**app.bump("fraud-detector", 1, 2), **app.bump("churn-model", 3, 4)})
    response = app.deliver("pull_request", app.pull_request_payload("opened", number))
    assert response.status_code == 202
    assert app.work() == 1
    [comment] = app.comments(number)
    assert comment.body.startswith(MARKER) and "v1 → v2" in comment.body and "v3 → v4" in comment.body
    head = app.fake.pull(app.repo, number).head_sha
    check = app.check(head)
    assert (check.status, check.conclusion) == ("completed", "failure")
    assert check.output["title"] == "4 change(s): 2 blocked"
    [f1] = [a for a in check.annotations if "f1 fell" in a["message"]]
    assert (f1["path"], f1["start_line"], f1["annotation_level"]) == ("models/churn-model.yaml", 17, "failure")


def test_writes_per_event_do_not_grow_with_the_number_of_manifests(app):
    number = app.pull_request(app.bump("fraud-detector", 1, 2))
    app.fake.reset_calls()
    app.deliver("pull_request", app.pull_request_payload("opened", number))
    app.work()
    one = len([c for c in app.fake.writes() if "access_tokens" not in c.template])
    many = {f"models/team-{i:02d}/fraud-{i:02d}.yaml":
            app.file("models/fraud-detector.yaml").replace("name: fraud-detector\n", f"name: fraud-{i:02d}\n", 1)
            for i in range(50)}
    second = app.pull_request(many)
    app.fake.reset_calls()
    app.deliver("pull_request", app.pull_request_payload("opened", second))
    app.work()
    writes = [(c.method, c.template) for c in app.fake.writes() if "access_tokens" not in c.template]
    assert len(writes) == one == 3, writes           # one comment, the plan and the approvals checks
    assert writes[0][1].endswith("/issues/{issue_number}/comments")  # the comment is the first write


def test_new_commit_edits_the_same_comment(app):
    number = app.pull_request(app.bump("fraud-detector", 1, 2))
    app.deliver("pull_request", app.pull_request_payload("opened", number))
    app.work()
    head = app.fake.push_to_pull(app.repo, number, app.bump("fraud-detector", 1, 3))
    app.deliver("pull_request", app.pull_request_payload("synchronize", number))
    app.work()
    [comment] = app.comments(number)
    assert "v1 → v3" in comment.body and "v1 → v2" not in comment.body
    assert app.check(head).conclusion == "success"


def test_plan_that_stops_changing_manifests_says_so_in_the_same_comment(app):
    number = app.pull_request(app.bump("fraud-detector", 1, 2))
    app.deliver("pull_request", app.pull_request_payload("opened", number))
    app.work()
    head = app.fake.push_to_pull(app.repo, number, {"models/fraud-detector.yaml": app.file("models/fraud-detector.yaml")})
    app.deliver("pull_request", app.pull_request_payload("synchronize", number))
    app.work()
    [comment] = app.comments(number)
    assert "no longer changes any model manifest" in comment.body
    assert app.check(head).conclusion == "neutral"


def test_pull_request_without_manifests_gets_a_neutral_check_and_no_comment(app):
    number = app.pull_request({"README.md": "# docs\n"})
    app.deliver("pull_request", app.pull_request_payload("opened", number))
    app.work()
    assert app.comments(number) == []
    assert app.check(app.fake.pull(app.repo, number).head_sha).conclusion == "neutral"


def test_bad_manifest_is_annotated_on_its_line(app):
    broken = app.file("models/churn-model.yaml").replace("replicas: {min: 1, max: 4}", "replicas: {min: 1, maxx: 4}")
    number = app.pull_request({"models/churn-model.yaml": broken})
    app.deliver("pull_request", app.pull_request_payload("opened", number))
    app.work()
    check = app.check(app.fake.pull(app.repo, number).head_sha)
    [note] = check.annotations
    assert (note["path"], note["start_line"], note["start_column"]) == ("models/churn-model.yaml", 14, 24)
    assert "unknown field `spec.serving.replicas.maxx`" in note["message"]


def test_registry_outage_is_a_check_error_then_rerun_succeeds(app, registry):
    registry.down = "http://mlflow.internal:5000: connection refused"
    number = app.pull_request(app.bump("fraud-detector", 1, 2))
    app.deliver("pull_request", app.pull_request_payload("opened", number))
    app.work()
    head = app.fake.pull(app.repo, number).head_sha
    check = app.check(head)
    assert check.conclusion == "failure" and "re-run" in check.output["title"]
    assert "connection refused" in check.output["summary"]
    registry.down = None
    app.deliver("check_run", app.check_rerun_payload(number, head))
    app.work()
    assert app.check(head).conclusion == "success"
    assert len(app.comments(number)) == 1


def test_same_delivery_twice_is_processed_once(app):
    number = app.pull_request(app.bump("fraud-detector", 1, 2))
    payload = app.pull_request_payload("opened", number)
    assert app.deliver("pull_request", payload, delivery="d-1").status_code == 202
    assert app.deliver("pull_request", payload, delivery="d-1").status_code == 200
    assert app.work() == 1
    assert len(app.comments(number)) == 1


def test_job_that_died_after_the_comment_completes_once_on_retry(app):
    number = app.pull_request(app.bump("fraud-detector", 1, 2))
    app.fake.fail_next(1, status=502, match=lambda method, path: method == "POST" and path.endswith("/check-runs"))
    app.deliver("pull_request", app.pull_request_payload("opened", number))
    app.work()                                          # comment posted, check creation failed: job retried
    [event] = [e for e in [app.store.get_event(i) for i in range(1, 5)] if e and e.event == "pull_request"]
    assert event.state is EventState.QUEUED or event.state == "queued"
    assert app.dispatcher.run(event.id).value == "done"  # the retry (the queue would run it after its delay)
    assert len(app.comments(number)) == 1
    head = app.fake.pull(app.repo, number).head_sha
    assert len([r for r in app.fake.check_runs(app.repo, head) if r.name == "modelherd/plan"]) == 1


def test_every_published_payload_replays_without_a_server_error(app):
    from tests.contracts import contract_path

    root = contract_path("github", "webhooks")
    for path in sorted(root.rglob("*.json")):
        event = path.parent.name
        response = app.deliver(event, __import__("json").loads(path.read_text()))
        assert response.status_code < 500, (path, response.status_code)
    app.work()                                          # events for unknown repos fail in the worker, not intake
