"""``modelherd serve`` as a real process: slow clients cannot starve intake; a dead database is one line.

The server runs exactly as the README says (``modelherd serve --host … --port …``, settings from
``MODELHERD_*``), in its own process group, on the embedded SQLite store and queue of a temporary
directory, and is stopped after each test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures_store import sign

SECRET = "serve-test-secret"
HOST = "127.0.0.1"
START_TIMEOUT = 60.0
#: A legitimate delivery must be answered within this (GitHub gives up after 10 s).  Generous on
#: purpose: the property is "answered or not", not a latency bound; the figures are printed.
ANSWER_TIMEOUT = 5.0



def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELHERD_")}
    env.update({"MODELHERD_GITHUB__WEBHOOK_SECRET": SECRET,
                "MODELHERD_DATABASE_URL": f"sqlite:///{tmp_path / 'modelherd.db'}",
                "MODELHERD_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}", **extra})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    log: Path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """``modelherd serve --host 127.0.0.1 --port N`` with its defaults, until the test ends."""
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "modelherd", "serve", "--host", HOST, "--port", str(port)],
                                   cwd=tmp_path, env=server_env(tmp_path), stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(port, process, log)
    try:
        _wait_ready(srv)
        yield srv
    finally:
        _stop(process)


def _wait_ready(srv: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if srv.process.poll() is not None:
            raise AssertionError(f"serve exited with {srv.process.returncode}:\n{srv.log.read_text()[-3000:]}")
        try:
            status, _ = http_request(srv.port, "GET", "/healthz", b"", {}, timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"serve not ready after {START_TIMEOUT:.0f} s:\n{srv.log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(process.pid, signal.SIGKILL)  # a worker that outlived its arbiter
    except ProcessLookupError:
        pass


def http_request(port: int, method: str, path: str, body: bytes, headers: dict[str, str],
                 timeout: float) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a fresh connection; (status, body).  Raises on timeout."""
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def signed_delivery(n: int) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"action": "opened", "number": n, "installation": {"id": 42},
                       "repository": {"full_name": "octo/models"}}).encode()
    return body, {"Content-Type": "application/json", "X-GitHub-Event": "pull_request",
                  "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": sign(body, SECRET),
                  "User-Agent": "GitHub-Hookshot/test"}


class SlowClient(threading.Thread):
    """Sends a webhook's headers, then its body at one byte a second, until stopped."""

    def __init__(self, port: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.connected = threading.Event()
        self.sent = 0
        self.hung_up = False

    def run(self) -> None:
        body_length = 100_000
        try:
            with socket.create_connection((HOST, self.port), timeout=5) as sock:
                sock.sendall((f"POST /webhooks/github HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                              f"X-GitHub-Event: push\r\nX-GitHub-Delivery: {uuid.uuid4()}\r\n"
                              f"X-Hub-Signature-256: sha256={'0' * 64}\r\n"
                              f"Content-Length: {body_length}\r\n\r\n").encode())
                self.connected.set()
                while not self.stop.wait(1.0) and self.sent < body_length:
                    sock.sendall(b"{" if self.sent == 0 else b" ")
                    self.sent += 1
        except OSError:
            self.hung_up = True
            self.connected.set()


def test_slow_clients_do_not_starve_legitimate_deliveries(server: Server) -> None:
    stop = threading.Event()
    slow = [SlowClient(server.port, stop) for _ in range(8)]
    for client in slow:
        client.start()
    try:
        for client in slow:
            assert client.connected.wait(10)
        time.sleep(1.5)  # every slow client is now well into its body

        def deliver(n: int) -> tuple[int | None, float]:
            body, headers = signed_delivery(n)
            started = time.monotonic()
            try:
                status, _ = http_request(server.port, "POST", "/webhooks/github", body, headers, ANSWER_TIMEOUT)
            except OSError:   # timed out (or refused): not answered
                status = None
            return status, time.monotonic() - started

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(deliver, range(12)))
        # the slow clients were connected and sending throughout (the server did not just drop them)
        assert not any(c.hung_up for c in slow) and min(c.sent for c in slow) >= 1
    finally:
        stop.set()
    answered = [seconds for status, seconds in results if status == 202]
    print(f"\nslow clients: 8; legitimate deliveries answered 202: {len(answered)}/12; "
          f"slowest answer {max(answered, default=float('nan')):.3f} s")
    assert [status for status, _ in results] == [202] * 12, results


@pytest.mark.parametrize("command", [["serve", "--host", HOST, "--port", "0"], ["worker"], ["db", "upgrade"]],
                         ids=lambda c: c[0])
def test_an_unreachable_database_is_one_line_and_exit_1(tmp_path: Path, command: list[str]) -> None:
    env = server_env(tmp_path, MODELHERD_DATABASE_URL=f"postgresql://modelherd:pw@{HOST}:{free_port()}/modelherd")
    done = subprocess.run([sys.executable, "-m", "modelherd", *command],
                          cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "database" in lines[0] and "Connection refused" in lines[0] and "pw" not in lines[0]
