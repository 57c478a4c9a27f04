"""The Flask app through its test client: signatures, sizes, ping, dedupe, replay, health, readiness."""

from __future__ import annotations

import io
import json
import logging

import pytest
from click.testing import CliRunner

from modelherd.app import ConfigurationError, create_app
from modelherd.queue import JobQueue
from modelherd.router import Router
from modelherd.settings import GitHubSettings, Settings
from modelherd.store import EventState, Store
from modelherd.worker import Dispatcher, Handlers
from tests.contracts import contract_path


PAYLOADS = sorted(contract_path("github", "webhooks").glob("*/*.json"))
BODY = json.dumps({"action": "opened", "number": 7, "installation": {"id": 42},
                   "repository": {"full_name": "octo/models"}}).encode()


def make_settings(secret: str | None, **github) -> Settings:
    return Settings(github=GitHubSettings(webhook_secret=secret, **github))


@pytest.fixture
def client(sqlite_store: Store, sqlite_queue: JobQueue, webhooks):
    app = create_app(make_settings(webhooks.secret, max_body_bytes=64 * 1024), sqlite_store, sqlite_queue)
    return app.test_client()


def post(client, headers: dict[str, str], body: bytes = BODY, **kw):
    return client.post("/webhooks/github", data=body, headers=headers, **kw)


# -- refusal to start ----------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, ""])
def test_refuses_to_start_without_a_webhook_secret(secret, sqlite_store, sqlite_queue) -> None:
    with pytest.raises(ConfigurationError, match="MODELHERD_GITHUB__WEBHOOK_SECRET"):
        create_app(make_settings(secret, app_id=1), sqlite_store, sqlite_queue)


def test_serve_command_refuses_without_a_secret(monkeypatch, tmp_path) -> None:
    from modelherd.server_cli import serve

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELHERD_GITHUB__APP_ID", "1")
    monkeypatch.delenv("MODELHERD_GITHUB__WEBHOOK_SECRET", raising=False)
    result = CliRunner().invoke(serve, [])
    assert result.exit_code == 1
    assert "no webhook secret" in result.output
    assert not (tmp_path / "modelherd.db").exists()  # refused before touching anything


def test_without_github_the_endpoint_is_absent(sqlite_store, sqlite_queue) -> None:
    client = create_app(Settings(), sqlite_store, sqlite_queue).test_client()
    assert client.post("/webhooks/github", data=b"{}").status_code == 404


# -- intake --------------------------------------------------------------------------------------------


def test_signature_good_bad_missing(client, webhooks, sqlite_queue) -> None:
    good = post(client, webhooks.headers("pull_request", BODY))
    assert good.status_code == 202 and good.json["result"] == "queued"
    assert post(client, webhooks.headers("pull_request", BODY, secret="wrong")).status_code == 401
    assert post(client, webhooks.headers("pull_request", BODY, secret=None)).status_code == 401
    assert sqlite_queue.pending_count() == 1


def test_ping_is_answered_without_a_job(client, webhooks, sqlite_store, sqlite_queue) -> None:
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    resp = post(client, webhooks.headers("ping", body, delivery="ping-1"), body)
    assert (resp.status_code, resp.json["result"]) == (200, "pong")
    assert sqlite_queue.pending_count() == 0
    assert sqlite_store.find_event("github", "ping-1").state is EventState.SKIPPED


def test_too_large_by_content_length_and_by_body(client, webhooks) -> None:
    big = json.dumps({"pad": "x" * 70_000}).encode()
    assert post(client, webhooks.headers("push", big), big).status_code == 413
    chunked = client.post("/webhooks/github", input_stream=io.BytesIO(big),
                          headers={**webhooks.headers("push", big), "Transfer-Encoding": "chunked"},
                          environ_overrides={"wsgi.input_terminated": True})
    assert chunked.status_code == 413


def test_duplicate_delivery_makes_one_job(client, webhooks, sqlite_store, sqlite_queue) -> None:
    headers = webhooks.headers("pull_request", BODY, delivery="same")
    first, second = post(client, headers), post(client, headers)
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json == {"result": "duplicate", "delivery": "same"}
    assert sqlite_queue.pending_count() == 1
    assert sqlite_store.count_events() == 1


def test_secrets_and_bodies_stay_out_of_the_logs(client, webhooks, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    body = json.dumps({"action": "opened", "token": "very-private-token"}).encode()
    post(client, webhooks.headers("pull_request", body, delivery="log-1"), body)
    post(client, webhooks.headers("pull_request", body, secret="wrong"), body)
    text = caplog.text
    assert "log-1" in text
    assert webhooks.secret not in text and "very-private-token" not in text
    assert webhooks.secret not in repr(make_settings(webhooks.secret))


# -- replay of every published payload -----------------------------------------------------------------


@pytest.fixture(params=["embedded", "services"])
def backends(request, sqlite_store, sqlite_queue):
    """(store, queue): SQLite + SQLite, and PostgreSQL + Redis."""
    if request.param == "embedded":
        return sqlite_store, sqlite_queue
    store = request.getfixturevalue("store_for_replay")
    queue = request.getfixturevalue("queue_for_replay")
    return store, queue


@pytest.fixture
def store_for_replay(pg_database_url):
    from tests.fixtures_store import _empty_postgres
    store = Store.from_url(pg_database_url)
    yield store
    _empty_postgres(store)
    store.dispose()


@pytest.fixture
def queue_for_replay(redis_url):
    from tests.fixtures_store import unique_queue_name
    queue = JobQueue.from_url(redis_url, unique_queue_name())
    yield queue
    queue.flush()
    queue.close()


def test_replay_every_published_payload(backends, webhooks) -> None:
    assert PAYLOADS
    store, queue = backends
    client = create_app(make_settings(webhooks.secret), store, queue).test_client()
    for path in PAYLOADS:
        event, body = path.parent.name, path.read_bytes()
        delivery = f"{event}/{path.name}"
        resp = post(client, webhooks.headers(event, body, delivery=delivery), body)
        assert resp.status_code < 500, (path, resp.status_code, resp.data)
        assert resp.status_code == (200 if event == "ping" else 202), (path, resp.json)
        rec = store.find_event("github", delivery)
        assert rec is not None and rec.event == event and rec.payload == json.loads(body)
    assert store.count_events() == len(PAYLOADS)
    assert queue.pending_count() == len(PAYLOADS) - len([p for p in PAYLOADS if p.parent.name == "ping"])

    # With no handlers wired every job settles as skipped (no installation / no handler), none fails.
    Dispatcher(store, queue, Handlers(Router())).bind()
    queue.drain()
    assert store.count_events(EventState.SKIPPED) == len(PAYLOADS)


# -- health and readiness ------------------------------------------------------------------------------


def test_healthz_and_readyz(client) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json) == (200, {"status": "ok", "database": "ok", "queue": "ok"})


def test_readyz_names_the_failed_dependency(tmp_path, sqlite_store, sqlite_queue, webhooks) -> None:
    bad_db = Store.from_url(f"sqlite:///{tmp_path}/missing/dir/store.db")
    resp = create_app(make_settings(webhooks.secret), bad_db, sqlite_queue).test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.json["database"].startswith("error") and resp.json["queue"] == "ok"
    assert resp.get_data(as_text=True).count(str(tmp_path)) == 0  # no paths or URLs leak

    bad_queue = JobQueue.from_url("redis://127.0.0.1:1/0", "unreachable")
    resp = create_app(make_settings(webhooks.secret), sqlite_store, bad_queue).test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.json["database"] == "ok" and resp.json["queue"].startswith("error")
    assert client_healthz_still_ok(bad_db, bad_queue, webhooks)


def client_healthz_still_ok(store, queue, webhooks) -> bool:
    return create_app(make_settings(webhooks.secret), store, queue).test_client().get("/healthz").status_code == 200
