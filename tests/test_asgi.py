"""The body-buffering adapter of ``modelherd serve`` (:class:`modelherd.asgi.BufferedWSGI`), driven as
uvicorn drives it: the app sees a request only once its body is in; late bodies get 408; bodies over the
limit are not read; the WSGI environ is what Flask expects."""

from __future__ import annotations

import asyncio
import json

from flask import Flask, jsonify, request

from modelherd.app import create_app
from modelherd.asgi import BufferedWSGI
from modelherd.settings import GitHubSettings, Settings


def echo_app() -> Flask:
    app = Flask("echo")

    @app.post("/echo/<name>")
    def echo(name: str):
        return jsonify({"name": name, "query": request.args.to_dict(), "body": request.get_data(as_text=True),
                        "type": request.content_type, "agent": request.headers.get("X-Many"),
                        "remote": request.remote_addr}), 201

    return app


def scope(path: str = "/echo/x", headers: list[tuple[bytes, bytes]] = (), query: bytes = b"") -> dict:
    return {"type": "http", "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
            "raw_path": path.encode(), "query_string": query, "root_path": "", "headers": list(headers),
            "server": ("127.0.0.1", 8080), "client": ("10.0.0.9", 5555)}


def run(adapter: BufferedWSGI, scope_: dict, messages: list[dict | float]) -> tuple[int, dict, bytes, int]:
    """Drive ``adapter``; a float in ``messages`` is a pause (seconds) before the next one.
    (status, headers, body, messages the adapter received)."""
    sent: list[dict] = []
    pending = list(messages)
    taken = 0

    async def receive() -> dict:
        nonlocal taken
        while pending and isinstance(pending[0], float):
            await asyncio.sleep(pending.pop(0))
        taken += 1
        if not pending:
            await asyncio.sleep(3600)     # a client that never sends the rest
        return pending.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(adapter(scope_, receive, send))
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body, taken


def test_the_app_gets_the_whole_body_and_an_honest_environ() -> None:
    adapter = BufferedWSGI(echo_app(), max_body_bytes=1000)
    status, headers, body, _ = run(adapter, scope("/echo/caf%C3%A9".replace("%C3%A9", "é"), [
        (b"content-type", b"application/json"), (b"x-many", b"a"), (b"x-many", b"b")], b"q=1&r=%C3%A9"), [
        {"type": "http.request", "body": b'{"a":', "more_body": True}, 0.01,
        {"type": "http.request", "body": b' 1}', "more_body": False}])
    assert (status, headers["content-type"]) == (201, "application/json")
    assert json.loads(body) == {"name": "café", "query": {"q": "1", "r": "é"}, "body": '{"a": 1}',
                                "type": "application/json", "agent": "a,b", "remote": "10.0.0.9"}


def test_a_body_that_does_not_arrive_in_time_is_408_and_never_reaches_the_app() -> None:
    called = []
    app = echo_app()
    app.before_request(lambda: called.append(1))
    adapter = BufferedWSGI(app, max_body_bytes=1000, body_timeout=0.2)
    status, _, body, _ = run(adapter, scope(headers=[(b"content-length", b"100")]),
                             [{"type": "http.request", "body": b"{", "more_body": True}])
    assert status == 408 and "did not arrive" in json.loads(body)["error"] and called == []


def test_a_client_that_leaves_mid_body_is_dropped_quietly() -> None:
    adapter = BufferedWSGI(echo_app(), max_body_bytes=1000)
    sent = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(adapter(scope(), receive, send))
    assert sent == []


def webhook_adapter(tmp_path) -> BufferedWSGI:
    from modelherd.queue import JobQueue
    from modelherd.store import Store

    store = Store.from_url(f"sqlite:///{tmp_path / 's.db'}")
    store.upgrade()
    settings = Settings(github=GitHubSettings(webhook_secret="s", max_body_bytes=1000))
    return BufferedWSGI(create_app(settings, store, JobQueue.from_url(f"sqlite:///{tmp_path / 'q.db'}")),
                        max_body_bytes=1000)


def test_a_body_declared_over_the_limit_is_413_without_reading_it(tmp_path) -> None:
    status, _, body, taken = run(webhook_adapter(tmp_path), scope("/webhooks/github", [
        (b"content-length", b"5000000"), (b"content-type", b"application/json")]), [])
    assert (status, json.loads(body)["error"], taken) == (413, "body over 1000 bytes", 0)


def test_a_chunked_body_over_the_limit_is_413_after_limit_bytes(tmp_path) -> None:
    chunks = [{"type": "http.request", "body": b"x" * 400, "more_body": True} for _ in range(10)]
    status, _, _, taken = run(webhook_adapter(tmp_path), scope("/webhooks/github", [
        (b"transfer-encoding", b"chunked"), (b"content-type", b"application/json")]), chunks)
    assert status == 413 and taken == 3          # 1,200 bytes read of 4,000: enough to know


def test_lifespan_is_answered() -> None:
    adapter = BufferedWSGI(echo_app(), max_body_bytes=10)
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = []

    async def receive():
        return inbox.pop(0)

    async def send(message):
        sent.append(message["type"])

    asyncio.run(adapter({"type": "lifespan"}, receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
