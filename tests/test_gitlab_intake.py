"""GitLab webhook intake: the token, the size limit, de-duplication, every documented payload replayed,
and the translation of each hook into the event shape the handlers read."""

from __future__ import annotations

import copy
import json

import pytest
from modelherd import gitlab_intake
from modelherd.app import ConfigurationError, create_app
from modelherd.queue import JobQueue
from modelherd.router import Router
from modelherd.settings import GitLabSettings, Settings
from modelherd.store import EventState, Store
from modelherd.worker import Dispatcher, Handlers, skip_reason

from tests.gitlab_app import gitlab_fixture
from tests.contracts import contract_path

SECRET = "gitlab webhook secret token"
FIXTURES = sorted(contract_path("gitlab", "webhooks").glob("*.json"))
#: X-Gitlab-Event of each documented payload (see the fixtures' SOURCE.md).
EVENT_HEADERS = {"merge_request": "Merge Request Hook", "note": "Note Hook", "push": "Push Hook",
                 "pipeline": "Pipeline Hook"}


def settings(secret: str | None = SECRET) -> Settings:
    return Settings(gitlab=GitLabSettings(url="https://gitlab.example.com", token="glpat-x", webhook_secret=secret))


@pytest.fixture
def client(sqlite_store: Store, sqlite_queue: JobQueue):
    return create_app(settings(), sqlite_store, sqlite_queue).test_client()


def post(client, hook: dict | bytes, *, token: str | None = SECRET, uuid: str | None = "e1b1-0001",
         kind: str = "Merge Request Hook", **headers: str):
    body = hook if isinstance(hook, bytes) else json.dumps(hook).encode()
    sent = {"X-Gitlab-Event": kind, "Content-Type": "application/json", **headers}
    if token is not None:
        sent["X-Gitlab-Token"] = token
    if uuid is not None:
        sent["X-Gitlab-Event-UUID"] = uuid
    return client.post("/webhooks/gitlab", data=body, headers=sent)


def mr_hook(action: str, **attrs) -> dict:
    """The documented Merge Request Hook with ``action`` (its draft → ready change left out)."""
    hook = copy.deepcopy(gitlab_fixture("merge_request.json"))
    hook["changes"].pop("draft", None)
    hook["object_attributes"].update(action=action, **attrs)
    if "oldrev" not in attrs:
        hook["object_attributes"].pop("oldrev", None)
    return hook


# -- starting and the token -----------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, ""])
def test_refuses_to_start_when_gitlab_has_no_webhook_secret(secret, sqlite_store, sqlite_queue):
    with pytest.raises(ConfigurationError, match="MODELHERD_GITLAB__WEBHOOK_SECRET"):
        create_app(settings(secret), sqlite_store, sqlite_queue)


def test_without_gitlab_the_endpoint_is_not_found(sqlite_store, sqlite_queue):
    client = create_app(Settings(), sqlite_store, sqlite_queue).test_client()
    assert post(client, mr_hook("open")).status_code == 404


def test_good_token_is_accepted_and_persisted(client, sqlite_store):
    response = post(client, mr_hook("open"), uuid="uuid-good")
    assert response.status_code == 202 and response.json["result"] == "queued"
    event = sqlite_store.find_event("gitlab", "uuid-good")
    assert (event.event, event.action, event.repo, event.installation_id) == (
        "pull_request", "opened", "gitlabhq/gitlab-test", None)
    assert "x-gitlab-token" not in {k.lower() for k in event.headers}       # the secret is never kept


@pytest.mark.parametrize("token", [None, "", "wrong", SECRET + "x", "gitlab webhook secret toke\u00f1"])
def test_missing_or_bad_token_is_401_and_nothing_is_stored(client, sqlite_store, token):
    response = post(client, mr_hook("open"), token=token, uuid="uuid-bad")
    assert response.status_code == 401
    assert sqlite_store.find_event("gitlab", "uuid-bad") is None


def test_token_is_compared_in_constant_time(monkeypatch):
    seen = []
    real = gitlab_intake.hmac.compare_digest
    monkeypatch.setattr(gitlab_intake.hmac, "compare_digest", lambda a, b: seen.append((a, b)) or real(a, b))
    gitlab_intake.check_token({"X-Gitlab-Token": SECRET}, SECRET)
    assert seen == [(SECRET.encode(), SECRET.encode())]


def test_over_the_size_limit_is_413(client, monkeypatch):
    monkeypatch.setattr(gitlab_intake, "MAX_BODY_BYTES", 1024)
    hook = mr_hook("open", description="x" * 2048)
    assert post(client, hook).status_code == 413


def test_size_is_checked_only_after_the_token(client, monkeypatch):
    monkeypatch.setattr(gitlab_intake, "MAX_BODY_BYTES", 1024)
    assert post(client, mr_hook("open", description="x" * 2048), token="wrong").status_code == 401


def test_invalid_json_under_a_good_token_is_400(client):
    assert post(client, b"{not json").status_code == 400
    assert post(client, b"[1, 2]", uuid="uuid-list").status_code == 400


# -- de-duplication ---------------------------------------------------------------------------------------


def test_duplicate_event_uuid_is_recorded_once(client, sqlite_store, sqlite_queue):
    first = post(client, mr_hook("open"), uuid="uuid-dup")
    second = post(client, mr_hook("open"), uuid="uuid-dup")
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json["result"] == "duplicate"
    assert sqlite_queue.pending_count() == 1


def test_without_uuid_the_idempotency_key_then_the_body_deduplicates(client, sqlite_queue):
    assert post(client, mr_hook("open"), uuid=None, **{"Idempotency-Key": "idem-1"}).status_code == 202
    assert post(client, mr_hook("open"), uuid=None, **{"Idempotency-Key": "idem-1"}).status_code == 200
    assert post(client, mr_hook("close"), uuid=None).status_code == 202
    assert post(client, mr_hook("close"), uuid=None).json["result"] == "duplicate"
    assert post(client, mr_hook("reopen"), uuid=None).status_code == 202          # another body
    assert sqlite_queue.pending_count() == 3


# -- every documented payload ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_every_documented_payload_is_accepted_and_persisted(client, sqlite_store, path):
    hook = json.loads(path.read_text())
    response = post(client, path.read_bytes(), uuid=f"uuid-{path.stem}", kind=EVENT_HEADERS[hook["object_kind"]])
    assert response.status_code == 202, response.json
    event = sqlite_store.find_event("gitlab", f"uuid-{path.stem}")
    assert event is not None and event.payload["gitlab"] == hook
    assert skip_reason(event) is None                     # GitLab events need no GitHub installation


def test_fixtures_are_all_there():
    assert {p.stem for p in FIXTURES} >= {"merge_request", "note_merge_request", "note_issue", "note_commit",
                                          "note_snippet", "push", "pipeline"}


# -- translation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("action, attrs, expected", [
    ("open", {}, ("pull_request", "opened", False)),
    ("reopen", {}, ("pull_request", "reopened", False)),
    ("update", {"oldrev": "a" * 40}, ("pull_request", "synchronize", False)),
    ("update", {}, ("pull_request", "edited", False)),
    ("close", {"state": "closed"}, ("pull_request", "closed", False)),
    ("merge", {"state": "merged"}, ("pull_request", "closed", True)),
    ("approved", {}, ("pull_request_review", "submitted", False)),
    ("approval", {}, ("pull_request_review", "submitted", False)),
    ("unapproved", {}, ("pull_request_review", "dismissed", False)),
    ("unapproval", {}, ("pull_request_review", "dismissed", False)),
])
def test_merge_request_hooks(action, attrs, expected):
    event, got, payload = gitlab_intake.translate(mr_hook(action, **attrs))
    assert (event, got, payload["pull_request"]["merged"]) == expected
    assert payload["pull_request"]["number"] == 1
    assert payload["repository"] == {"full_name": "gitlabhq/gitlab-test", "default_branch": "master"}
    assert payload["gitlab"]["object_attributes"]["action"] == action


def test_draft_to_ready_is_ready_for_review():
    hook = {**gitlab_fixture("merge_request.json")}          # the documented change: draft → ready
    hook["object_attributes"] = {**hook["object_attributes"], "action": "update"}
    assert gitlab_intake.translate(hook)[:2] == ("pull_request", "ready_for_review")


def test_note_on_a_merge_request_is_an_issue_comment():
    event, action, payload = gitlab_intake.translate(gitlab_fixture("note_merge_request.json"))
    assert (event, action) == ("issue_comment", "created")
    assert payload["issue"] == {"number": 1, "pull_request": {}}
    assert payload["comment"] == {"id": 1244, "body": "This MR needs work.", "user": {"login": "root", "type": "User"}}
    assert payload["repository"]["full_name"] == "gitlab-org/gitlab-test"


def test_edited_note_and_bot_notes():
    hook = gitlab_fixture("note_merge_request.json")
    hook["object_attributes"]["action"] = "update"
    assert gitlab_intake.translate(hook)[:2] == ("issue_comment", "edited")       # edits never run commands
    hook["object_attributes"]["action"] = "create"
    hook["user"] = {**hook["user"], "username": "project_42_bot_3f2a"}           # a project access token's bot
    assert gitlab_intake.translate(hook)[2]["comment"]["user"]["type"] == "Bot"


@pytest.mark.parametrize("name", ["note_issue.json", "note_commit.json", "note_snippet.json", "pipeline.json"])
def test_hooks_no_handler_reads_are_kept_apart(name):
    event, _, payload = gitlab_intake.translate(gitlab_fixture(name))
    assert event.startswith("gitlab:") and "issue" not in payload and "pull_request" not in payload


def test_push_hook():
    event, action, payload = gitlab_intake.translate(gitlab_fixture("push.json"))
    assert (event, action) == ("push", None)
    assert payload["ref"] == "refs/heads/master" and payload["after"] == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    assert payload["deleted"] is False and payload["repository"]["default_branch"] == "master"
    deleted = {**gitlab_fixture("push.json"), "after": "0" * 40}
    assert gitlab_intake.translate(deleted)[2]["deleted"] is True


def test_worker_runs_gitlab_events_and_skips_unhandled_ones(client, sqlite_store, sqlite_queue):
    seen = []
    router = Router()
    router.add(lambda event, **_: seen.append((event.forge, event.payload["pull_request"]["number"])),
               "pull_request", action="opened")
    Dispatcher(sqlite_store, sqlite_queue, Handlers(router=router)).bind()
    post(client, mr_hook("open"), uuid="uuid-run")
    post(client, gitlab_fixture("pipeline.json"), uuid="uuid-pipeline", kind="Pipeline Hook")
    sqlite_queue.drain()
    assert seen == [("gitlab", 1)]
    assert sqlite_store.find_event("gitlab", "uuid-run").state == EventState.DONE
    skipped = sqlite_store.find_event("gitlab", "uuid-pipeline")
    assert skipped.state == EventState.SKIPPED
