"""Malformed and odd webhooks through the app, on SQLite and PostgreSQL: a 4xx with a one-line reason,
never a 5xx; GitHub's form encoding is understood; and no stored row can make a claim or a sweep raise."""

from __future__ import annotations

import copy
import json
from urllib.parse import urlencode

import pytest
from sqlalchemy import text

from modelherd.app import create_app
from modelherd.queue import JobQueue
from modelherd.router import Router
from modelherd.settings import GitHubSettings, GitLabSettings, Settings
from modelherd.store import EventState, Store
from modelherd.worker import Dispatcher, Handlers, Outcome
from tests.fixtures_store import WEBHOOK_SECRET, webhook_headers
from tests.gitlab_app import gitlab_fixture

GITLAB_SECRET = "gitlab-secret"
PUSH = {"ref": "refs/heads/main", "before": "a" * 40, "after": "b" * 40, "installation": {"id": 42},
        "repository": {"full_name": "octo/models", "default_branch": "main"}}


def settings() -> Settings:
    return Settings(github=GitHubSettings(webhook_secret=WEBHOOK_SECRET),
                    gitlab=GitLabSettings(url="https://gitlab.example.com", token="glpat-x",
                                          webhook_secret=GITLAB_SECRET))


@pytest.fixture
def client(store: Store, sqlite_queue: JobQueue):
    return create_app(settings(), store, sqlite_queue).test_client()


def github(client, body: bytes, *, event: str = "push", **headers: str):
    return client.post("/webhooks/github", data=body, headers={**webhook_headers(event, body), **headers})


def gitlab(client, body: bytes | dict, *, kind: str = "Merge Request Hook"):
    body = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/webhooks/gitlab", data=body, headers={
        "X-Gitlab-Event": kind, "X-Gitlab-Token": GITLAB_SECRET, "Content-Type": "application/json"})


def assert_refused(response, status: int | None = None) -> None:
    """A 4xx (``status`` when given) whose JSON ``error`` is one line."""
    assert 400 <= response.status_code < 500, (response.status_code, response.data[:300])
    if status is not None:
        assert response.status_code == status, response.json
    reason = response.json["error"]
    assert reason and "\n" not in reason and "Traceback" not in reason


def head_of(payload) -> str | None:
    return payload.get("after") if payload.get("ref") == "refs/heads/main" else None


# -- item 4: GitHub's form encoding, and rows that cannot be decoded --------------------------------------


def test_form_encoded_delivery_is_stored_as_its_payload(client, store, sqlite_queue) -> None:
    body = urlencode({"payload": json.dumps(PUSH)}).encode()
    response = github(client, body, **{"Content-Type": "application/x-www-form-urlencoded",
                                       "X-GitHub-Delivery": "form-1"})
    assert response.status_code == 202, response.json
    event = store.find_event("github", "form-1")
    assert event.payload == PUSH and event.installation_id == 42 and event.repo == "octo/models"

    seen = []
    router = Router()
    router.add(lambda event, **_: seen.append(event.payload["after"]), "push")
    assert Dispatcher(store, sqlite_queue, Handlers(router)).run(event.id) is Outcome.DONE
    assert seen == ["b" * 40]
    assert store.last_pushes("github", head_of) == [("octo/models", 42, "b" * 40)]


def _insert_raw_push(store: Store, delivery: str, repo: str, payload_text: str) -> int:
    cast = "CAST(:payload AS jsonb)" if store.backend == "postgresql" else ":payload"
    with store.engine.begin() as conn:
        return conn.execute(text(
            "INSERT INTO events (forge, delivery_id, event, installation_id, repo, headers, payload, received_at,"
            " state, attempts, lease_until) VALUES ('github', :delivery, 'push', 42, :repo, '{}', "
            f"{cast}, :now, 'queued', 0, :now) RETURNING id"),
            {"delivery": delivery, "repo": repo, "payload": payload_text,
             "now": store.now().replace(tzinfo=None)}).scalar_one()


def undecodable_payloads(store: Store) -> list[str]:
    """Stored texts no JSON reader of this process can decode: nesting deeper than Python recurses
    (both backends), and on SQLite (a text column) the raw form body that intake used to store."""
    deep = "[" * 5000 + "]" * 5000
    if store.backend == "postgresql":
        return [deep]
    return [deep, urlencode({"payload": json.dumps(PUSH)})]


def test_a_row_that_cannot_be_decoded_fails_with_the_reason_and_poisons_nothing(store, sqlite_queue) -> None:
    good = _insert_raw_push(store, "good", "octo/good", json.dumps(PUSH))
    bad = [_insert_raw_push(store, f"bad-{i}", f"octo/bad-{i}", payload)
           for i, payload in enumerate(undecodable_payloads(store))]
    dispatcher = Dispatcher(store, sqlite_queue, Handlers(Router()))
    for event_id in bad:
        assert dispatcher.run(event_id) is Outcome.NOT_CLAIMED      # the claim marks it failed instead
        row = store.get_event(event_id)
        assert row.state is EventState.FAILED and "payload cannot be decoded" in row.error
        assert row.payload is None
        assert dispatcher.run(event_id) is Outcome.NOT_CLAIMED      # and it is never claimed again
    assert store.last_pushes("github", head_of) == [("octo/good", 42, "b" * 40)]
    assert dispatcher.run(good) is Outcome.SKIPPED                  # no handler: the good one still runs
    dispatcher.sweep()


# -- item 5: malformed input is a 4xx with a reason, never a 5xx ------------------------------------------


def test_non_ascii_signature_is_401(client) -> None:
    body = json.dumps(PUSH).encode()
    assert_refused(github(client, body, **{"X-Hub-Signature-256": "sha256=" + "é" * 64}), 401)


DEEP = b"[" * 100_000 + b"]" * 100_000
#: Bodies that are JSON to Python's reader but no JSON a database keeps (or no JSON at all).
ODD_JSON = {
    "nul-escape": b'{"action": "opened", "title": "a\\u0000b"}',
    "nan": b'{"action": "opened", "score": NaN}',
    "infinity": b'{"action": "opened", "score": -Infinity}',
    "lone-surrogate": b'{"action": "opened", "title": "\\ud800"}',
    "lone-low-surrogate": b'{"action": "opened", "title": "x\\udc00"}',
    "overflow": b'{"action": "opened", "score": 1e400}',
    "deep": DEEP,
}


@pytest.mark.parametrize("case", sorted(ODD_JSON))
def test_signed_github_body_that_no_store_can_keep_is_400(client, store, case) -> None:
    body = ODD_JSON[case]
    assert_refused(github(client, body, event="pull_request"), 400)
    assert store.count_events() == 0


@pytest.mark.parametrize("case", sorted(ODD_JSON))
def test_authentic_gitlab_body_that_no_store_can_keep_is_400(client, store, case) -> None:
    body = ODD_JSON[case]
    if case != "deep":
        body = body.replace(b'{"action"', b'{"object_kind": "merge_request", "action"')
    assert_refused(gitlab(client, body), 400)
    assert store.count_events() == 0


def _mr(**changes) -> dict:
    hook = copy.deepcopy(gitlab_fixture("merge_request.json"))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = hook
        for key in parents:
            node = node[key]
        node[leaf] = value
    return hook


def _note(**changes) -> dict:
    hook = copy.deepcopy(gitlab_fixture("note_merge_request.json"))
    for key, value in changes.items():
        hook[key] = value
    return hook


WRONG_TYPES = {
    "object_kind-list": lambda: _mr(object_kind=["merge_request"]),
    "object_attributes-list": lambda: _mr(object_attributes=[1, 2]),
    "project-string": lambda: _mr(project="gitlabhq/gitlab-test"),
    "last_commit-string": lambda: _mr(object_attributes__last_commit="da15608"),
    "changes-draft-string": lambda: _mr(object_attributes__action="update", changes={"draft": "yes"}),
    "note-user-string": lambda: _note(user="root"),
    "note-attributes-list": lambda: _note(object_attributes=["MergeRequest"]),
    "push-project-list": lambda: {**gitlab_fixture("push.json"), "project": ["a"]},
}


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_authentic_gitlab_hook_with_fields_of_the_wrong_type_is_400(client, store, case) -> None:
    hook = WRONG_TYPES[case]()
    kind = {"note": "Note Hook", "push": "Push Hook"}.get(str(hook.get("object_kind")), "Merge Request Hook")
    assert_refused(gitlab(client, hook, kind=kind), 400)
    assert store.count_events() == 0


def test_control_characters_in_ids_are_400(client, store) -> None:
    body = json.dumps(PUSH).encode()
    assert_refused(github(client, body, **{"X-GitHub-Delivery": "d\x00e"}), 400)
    hook = gitlab_fixture("push.json")
    response = client.post("/webhooks/gitlab", data=json.dumps(hook).encode(), headers={
        "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": GITLAB_SECRET, "X-Gitlab-Event-UUID": "u\x00v"})
    assert_refused(response, 400)
    assert store.count_events() == 0

