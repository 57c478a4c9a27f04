"""A Redis outage: webhooks are still answered and recorded, and their jobs run within a minute of Redis
coming back (the periodic sweep), not after the 10-minute queue lease.

Redis is reached through a TCP proxy the test can cut (``outage``): every connection is dropped and new
ones are refused, as when Redis restarts or the network fails; the store's clock is a test clock.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from modelherd.app import create_app
from modelherd.queue import JobQueue
from modelherd.router import Router
from modelherd.settings import GitHubSettings, Settings
from modelherd.store import EventState, Store
from modelherd.worker import Dispatcher, Handlers
from tests.clock import FIXED, Clock
from tests.fixtures_store import unique_queue_name


class TcpProxy(threading.Thread):
    """127.0.0.1:<port> → ``target``; ``up = False`` drops every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]):
        super().__init__(daemon=True)
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def run(self) -> None:
        self._sel.register(self.listener, selectors.EVENT_READ)
        while not self._stopped.is_set():
            for key, _ in self._sel.select(0.05):
                with self._lock:
                    if key.fileobj is self.listener:
                        self._accept()
                    elif key.fileobj in self._pairs:
                        self._pump(key.fileobj)

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        if not self.up:
            client.close()
            return
        upstream = socket.create_connection(self.target)
        self._pairs[client], self._pairs[upstream] = upstream, client
        self._sel.register(client, selectors.EVENT_READ)
        self._sel.register(upstream, selectors.EVENT_READ)

    def _pump(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if data:
            self._pairs[sock].sendall(data)
        else:
            self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        other = self._pairs.pop(sock, None)
        for s in (sock, other):
            if s is not None:
                self._pairs.pop(s, None)
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()

    @contextmanager
    def outage(self) -> Iterator[None]:
        with self._lock:
            self.up = False
            for sock in list(self._pairs):
                self._close(sock)
        try:
            yield
        finally:
            self.up = True

    def stop(self) -> None:
        self._stopped.set()
        self.join(5)
        for sock in list(self._pairs):
            self._close(sock)
        self.listener.close()


@pytest.fixture
def proxied_queue(redis_url: str) -> Iterator[tuple[TcpProxy, JobQueue]]:
    from urllib.parse import urlsplit

    parts = urlsplit(redis_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 6379))
    proxy.start()
    queue = JobQueue.from_url(f"redis://127.0.0.1:{proxy.port}{parts.path or '/0'}"
                              "?socket_timeout=2&socket_connect_timeout=2", unique_queue_name())
    yield proxy, queue
    queue.flush()
    queue.close()
    proxy.stop()


def test_deliveries_during_a_redis_outage_run_within_a_minute_of_its_return(store, proxied_queue, webhooks) -> None:
    proxy, queue = proxied_queue
    clock = Clock(FIXED)
    store = Store(store.engine, clock=clock)
    client = create_app(Settings(github=GitHubSettings(webhook_secret=webhooks.secret)), store, queue).test_client()
    ran: list[int] = []
    router = Router()
    router.add(lambda event, **_: ran.append(event.payload["number"]), "pull_request", action="opened")
    dispatcher = Dispatcher(store, queue, Handlers(router)).bind()

    with proxy.outage():
        for n in (1, 2):
            body = json.dumps({"action": "opened", "number": n, "installation": {"id": 42},
                               "repository": {"full_name": "octo/models"}}).encode()
            response = client.post("/webhooks/github", data=body,
                                   headers=webhooks.headers("pull_request", body, delivery=f"outage-{n}"))
            assert response.status_code == 202, response.json          # recorded, answered
        assert client.get("/readyz").json["queue"].startswith("error")
    assert queue.pending_count() == 0                                   # nothing reached the queue

    clock.advance(60)              # Redis is back; the periodic sweep runs at most a minute later
    dispatcher.sweep()
    queue.drain()
    assert sorted(ran) == [1, 2]
    assert store.count_events(EventState.DONE) == 2


def test_a_retry_or_a_sweep_during_the_outage_is_picked_up_by_the_next_sweep(store, proxied_queue) -> None:
    from modelherd.store import NewEvent

    proxy, queue = proxied_queue
    clock = Clock(FIXED)
    store = Store(store.engine, clock=clock)
    attempts: list[int] = []

    def flaky(event, **_):
        attempts.append(event.id)
        if len(attempts) == 1:
            raise ConnectionError("forge down")

    router = Router()
    router.add(flaky, "pull_request", action="opened")
    dispatcher = Dispatcher(store, queue, Handlers(router), lease_seconds=300).bind()
    new = NewEvent(forge="github", delivery_id="retry-1", event="pull_request", action="opened",
                   installation_id=42, repo="octo/models", payload={"action": "opened"})
    event_id = store.record_event(new)
    stale_id = store.record_event(NewEvent(**{**new.__dict__, "delivery_id": "stale-1"}))
    clock.advance(601)                                   # stale-1's message was lost: its lease ran out

    with proxy.outage():
        assert dispatcher.run(event_id).value == "retry"      # the retry could not be enqueued: no raise
        assert dispatcher.sweep() == []                        # nor could the sweep enqueue stale-1
    clock.advance(dispatcher.retry_base_seconds + 60)
    dispatcher.sweep()
    queue.drain()
    assert attempts.count(event_id) == 2 and attempts.count(stale_id) == 1
    assert store.count_events(EventState.DONE) == 2
