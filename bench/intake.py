"""Webhook intake: sustained requests/s and p50/p99 latency for signed ``pull_request.opened`` deliveries.

Two servers, one after the other, in the same run and on the same class (:class:`WebhookServer`
as ``modelherd serve`` runs it: gunicorn, 2 worker processes of uvicorn, each request run on a thread
once its body has arrived; 127.0.0.1 only):

* **intake** — the real app (:func:`modelherd.app.create_app`): verify ``X-Hub-Signature-256``, parse,
  insert-or-ignore the delivery into the SQLite store, enqueue on the SQLite queue, answer 202.  No
  worker consumes the queue.
* **bare** (the baseline) — a Flask app that reads the body and answers 202, served the same way
  through ``WebhookServer(app_factory=…)``.

Load: ``wrk`` when it is on PATH (Lua script: the same signed 24 KB body, a unique ``X-GitHub-Delivery``
per request, non-2xx counted), else a built-in asyncio HTTP/1.1 client over raw sockets (16
connections, keep-alive when the server offers it, as uvicorn does).

Each server runs in its own process group on a socket the bench binds and hands over (``fd://N``), so
there is no race for the port; the servers are stopped, and the temporary directory removed, when the
bench ends for any reason (a server also stops itself when the bench process disappears).

``python -m bench.intake`` runs this benchmark alone.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import REPO_ROOT, emit, percentile, ratio
from tests.contracts import contract_path

SECRET = "bench-webhook-secret"
BODY_BYTES = 24 * 1024
PATH = "/webhooks/github"
HOST = "127.0.0.1"
FIXTURE = ("github", "webhooks", "pull_request", "opened.json")
REQUEST_TIMEOUT = 10.0
START_TIMEOUT = 60.0


# -- the request ------------------------------------------------------------------------------------


def webhook_body(size: int = BODY_BYTES) -> tuple[bytes, str]:
    """A ``pull_request.opened`` body of ``size`` bytes and where it came from.

    GitHub's published example (``tests/contracts/github/webhooks/``) serialised as GitHub sends it
    (``json.dumps``: exactly 24 KB today), its PR description padded when it is shorter than ``size``.
    """
    payload = json.loads(contract_path(*FIXTURE).read_text(encoding="utf-8"))
    source = "octokit/webhooks example " + "/".join(FIXTURE[-2:])
    body = json.dumps(payload).encode()
    if len(body) < size:
        text = payload["pull_request"].get("body") or ""
        payload["pull_request"]["body"] = text
        missing = size - len(json.dumps(payload).encode())
        payload["pull_request"]["body"] = text + "x" * max(0, missing)  # one byte of JSON per "x"
        body = json.dumps(payload).encode()
        source += f", description padded to {len(body)} bytes"
    return body, source


def signature(body: bytes, secret: str = SECRET) -> str:
    import hashlib
    import hmac

    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def request_head(port: int, body: bytes) -> bytes:
    """Every header of the request except ``X-GitHub-Delivery`` and the blank line."""
    return (f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: GitHub-Hookshot/bench\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nX-GitHub-Event: pull_request\r\n"
            f"X-GitHub-Hook-ID: 1\r\nX-Hub-Signature-256: {signature(body)}\r\n").encode()


# -- the servers ------------------------------------------------------------------------------------


def server_settings(workdir: Path):
    from modelherd.settings import GitHubSettings, Settings

    return Settings(github=GitHubSettings(webhook_secret=SECRET),
                    database_url=f"sqlite:///{workdir / 'modelherd.db'}",
                    queue_url=f"sqlite:///{workdir / 'queue.db'}")


def bare_app():
    """The baseline: a Flask handler that reads the body and answers 202."""
    from flask import Flask, jsonify, request

    app = Flask("bare")

    @app.post(PATH)
    def webhook():
        request.get_data()
        return jsonify({"result": "accepted"}), 202

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"}), 200

    return app


def _exit_with_parent(parent: int) -> None:
    """Stop this server (SIGTERM to itself: gunicorn's graceful stop) once the bench process is gone."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(app: str, fd: int, workdir: Path, workers: int, parent: int) -> None:
    """Run one server in this process (the child side of :func:`running_server`)."""
    from modelherd.server_cli import WebhookServer

    _exit_with_parent(parent)
    settings = server_settings(workdir)
    options = {"bind": f"fd://{fd}", "workers": workers, "loglevel": "warning", "graceful_timeout": 5,
               "timeout": 30}   # the worker class, threads and body timeout of `modelherd serve`
    if app == "intake":
        from modelherd.store import Store

        store = Store.from_url(settings.database_url)  # migrate once before forking, as `modelherd serve` does
        store.upgrade()
        store.dispose()
        WebhookServer(settings, options).run()
    elif app == "bare":
        WebhookServer(settings, options, app_factory=bare_app).run()
    else:
        raise SystemExit(f"unknown app {app!r}")


@dataclass
class Server:
    app: str
    port: int
    process: subprocess.Popen
    workdir: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{PATH}"


@contextmanager
def running_server(app: str, workdir: Path, *, workers: int = 2) -> Iterator[Server]:
    """Start ``app`` ("intake" or "bare") under ``WebhookServer`` on a free port of 127.0.0.1; stop it after."""
    workdir.mkdir(parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    log = workdir / f"{app}-server.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    env = {k: v for k, v in env.items() if not k.startswith("MODELHERD_")}  # only the settings given here
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.intake", "serve", "--app", app, "--fd", str(fd), "--dir", str(workdir),
             "--workers", str(workers), "--parent", str(os.getpid())],
            pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            cwd=REPO_ROOT, env=env, start_new_session=True)
    listener.close()  # the server holds its own copy
    server = Server(app, port, process, workdir, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        stop(process)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.app} server exited with {server.process.returncode}:\n{_tail(server.log)}")
        try:
            with socket.create_connection((HOST, server.port), timeout=2) as sock:
                sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.app} server not ready after {START_TIMEOUT:.0f} s:\n{_tail(server.log)}")


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM (gunicorn stops its workers gracefully), then SIGKILL to the whole process group."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # leftovers of the group (a worker that outlived its arbiter)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait(timeout)


def _die_with_parent() -> None:
    """``preexec_fn`` (Linux): the child gets SIGTERM when the bench process dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere wrk ends on its own after its fixed duration


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- load -------------------------------------------------------------------------------------------


@dataclass
class Load:
    generator: str
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, when the generator gives each one
    p50_ms: float | None = None
    p99_ms: float | None = None
    statuses: Counter = field(default_factory=Counter)
    non_2xx: int = 0
    transport_errors: Counter = field(default_factory=Counter)
    connects: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def finish(self) -> Load:
        if self.latencies:
            self.p50_ms = round(percentile(self.latencies, 50) * 1000, 2)
            self.p99_ms = round(percentile(self.latencies, 99) * 1000, 2)
        return self


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response; return (status, connection reusable)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    version, status = lines[0].split(b" ", 2)[:2]
    keep, length, chunked = version == b"HTTP/1.1", None, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            keep = b"close" not in value and (keep or b"keep-alive" in value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length is not None:
        await reader.readexactly(length)
    else:
        await reader.read()  # until the server closes
        keep = False
    return int(status), keep


async def _asyncio_load(port: int, body: bytes, seconds: float, connections: int, run: str,
                        timeout: float = REQUEST_TIMEOUT) -> Load:
    load = Load(f"built-in asyncio HTTP/1.1 client, {connections} connections")
    head, numbers = request_head(port, body), itertools.count(1)
    started = time.perf_counter()
    deadline = started + seconds

    async def connection() -> None:
        reader = writer = None
        try:
            while time.perf_counter() < deadline:
                request = b"".join((head, f"X-GitHub-Delivery: {run}-{next(numbers)}\r\n\r\n".encode(), body))
                sent = time.perf_counter()
                try:
                    if writer is None:
                        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
                        load.connects += 1
                    writer.write(request)
                    status, keep = await asyncio.wait_for(_read_response(reader), timeout)
                except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                        ValueError, IndexError) as exc:
                    load.transport_errors[type(exc).__name__] += 1
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    await asyncio.sleep(0.01)  # no hot loop against a server that is gone
                    continue
                load.latencies.append(time.perf_counter() - sent)
                load.requests += 1
                load.statuses[status] += 1
                if not 200 <= status < 300:
                    load.non_2xx += 1
                if not keep:
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    load.seconds = time.perf_counter() - started
    return load.finish()


def asyncio_load(port: int, body: bytes, seconds: float, connections: int, run: str) -> Load:
    return asyncio.run(_asyncio_load(port, body, seconds, connections, run))


WRK_SCRIPT = r"""
-- modelherd bench: the same signed body, a unique X-GitHub-Delivery per request, non-2xx counted.
local f = assert(io.open("%(body_path)s", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "GitHub-Hookshot/bench"
wrk.headers["X-GitHub-Event"] = "pull_request"
wrk.headers["X-GitHub-Hook-ID"] = "1"
wrk.headers["X-Hub-Signature-256"] = "%(signature)s"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  sent = 0
  non2xx = 0
end

function request()
  sent = sent + 1
  wrk.headers["X-GitHub-Delivery"] = "%(run)s-" .. tid .. "-" .. sent
  return wrk.format()
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "duration_us": %%d, "non_2xx": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "timeout": %%d, "p50_us": %%d, "p99_us": %%d}\n',
    summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_load(wrk: str, port: int, body: bytes, seconds: float, connections: int, run: str, workdir: Path,
             threads: int = 2) -> Load:
    body_path, script = workdir / "body.json", workdir / "webhook.lua"
    body_path.write_bytes(body)
    script.write_text(WRK_SCRIPT % {"body_path": str(body_path).replace("\\", "/"), "signature": signature(body),
                                    "run": run})
    threads = max(1, min(threads, connections))
    duration = max(1, round(seconds))
    out = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s",
                          f"--timeout={REQUEST_TIMEOUT:.0f}s", "-s", str(script), f"http://{HOST}:{port}{PATH}"],
                         capture_output=True, text=True, timeout=duration + REQUEST_TIMEOUT + 30, check=True,
                         preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    load = Load(f"wrk, {threads} threads, {connections} connections", requests=data["requests"],
                seconds=data["duration_us"] / 1e6, p50_ms=round(data["p50_us"] / 1000, 2),
                p99_ms=round(data["p99_us"] / 1000, 2), non_2xx=data["non_2xx"])
    load.transport_errors.update({k: data[k] for k in ("connect", "read", "write", "timeout") if data[k]})
    return load


def generate_load(mode: str, port: int, body: bytes, seconds: float, connections: int, workdir: Path) -> Load:
    run = uuid.uuid4().hex[:12]
    wrk = shutil.which("wrk") if mode in ("auto", "wrk") else None
    if mode == "wrk" and wrk is None:
        raise RuntimeError("wrk is not on PATH")
    if wrk:
        return wrk_load(wrk, port, body, seconds, connections, run, workdir)
    return asyncio_load(port, body, seconds, connections, run)


# -- the benchmark ------------------------------------------------------------------------------------


def measure(app: str, root: Path, body: bytes, *, seconds: float, warmup: float, connections: int, workers: int,
            load: str) -> tuple[Load, dict[str, Any]]:
    """Load one server (a warm-up, then the measured run); for the intake, check what it stored."""
    workdir = root / app
    with running_server(app, workdir, workers=workers) as server:
        runs = [generate_load(load, server.port, body, warmup, connections, workdir)] if warmup > 0 else []
        result = generate_load(load, server.port, body, seconds, connections, workdir)
    runs.append(result)
    checked: dict[str, Any] = {}
    if app == "intake":  # every 2xx (warm-up included) promised a stored event and a queued job
        from modelherd.queue import JobQueue
        from modelherd.store import Store

        settings = server_settings(workdir)
        store, queue = Store.from_url(settings.database_url), JobQueue.from_url(settings.queue_url, "modelherd")
        try:
            accepted = sum(r.requests - r.non_2xx for r in runs)
            stored, queued = store.count_events(), queue.pending_count()
            # wrk stops with requests in flight: the server stores them, wrk does not count them
            in_flight = connections * len(runs) if result.generator.startswith("wrk") else 0
            complete = accepted <= stored == queued <= accepted + in_flight
            checked = {"accepted_incl_warmup": accepted, "events_stored": stored, "jobs_queued": queued,
                       "every_accepted_delivery_stored_and_queued": complete}
        finally:
            queue.close()
            store.dispose()
    return result, checked


def bench_intake(*, seconds: float = 8.0, warmup: float = 1.0, connections: int = 16, workers: int = 2,
                 load: str = "auto") -> list[dict]:
    """Run both servers in turn; emit requests/s, p50 and p99 of the intake against the bare handler."""
    body, source = webhook_body()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="modelherd-bench-intake-") as tmp:
        bare, _ = measure("bare", Path(tmp), body, seconds=seconds, warmup=warmup, connections=connections,
                          workers=workers, load=load)
        intake, persisted = measure("intake", Path(tmp), body, seconds=seconds, warmup=warmup,
                                    connections=connections, workers=workers, load=load)
    context = {"server": f"WebhookServer (gunicorn + uvicorn, as modelherd serve), {workers} workers, 127.0.0.1",
               "intake": "HMAC verify + SQLite store (insert-or-ignore) + SQLite queue, no worker consuming",
               "load_generator": intake.generator, "seconds": round(intake.seconds, 2),
               "body": f"{len(body)} bytes, {source}, signed, unique X-GitHub-Delivery per request",
               "requests": intake.requests, "baseline_requests": bare.requests,
               "non_2xx": intake.non_2xx, "baseline_non_2xx": bare.non_2xx,
               "transport_errors": dict(intake.transport_errors),
               "baseline_transport_errors": dict(bare.transport_errors),
               "cpus": os.cpu_count(), "load_average_1m_before": round(load_before, 2),
               "load_average_1m_after": round(os.getloadavg()[0], 2)}
    if intake.statuses:
        context["statuses"] = {str(k): v for k, v in sorted(intake.statuses.items())}
    context.update(persisted)
    baseline = f"bare Flask handler (reads the body, answers 202) on the same WebhookServer, {workers} workers"
    figures = [
        emit(figure="webhook_intake_requests_per_s", value=round(intake.rps), baseline=baseline,
             baseline_value=round(bare.rps), ratio=ratio(intake.rps, bare.rps), **context),
        emit(figure="webhook_intake_p50_ms", value=intake.p50_ms, baseline=baseline, baseline_value=bare.p50_ms,
             ratio=ratio(intake.p50_ms, bare.p50_ms), load_generator=intake.generator,
             latency="request sent to response read" + ("" if intake.generator.startswith("wrk")
                                                        else ", including the connect when the server closes")),
        emit(figure="webhook_intake_p99_ms", value=intake.p99_ms, baseline=baseline, baseline_value=bare.p99_ms,
             ratio=ratio(intake.p99_ms, bare.p99_ms), load_generator=intake.generator,
             non_2xx=intake.non_2xx, baseline_non_2xx=bare.non_2xx),
    ]
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the benchmark (the default)")
    run.add_argument("--seconds", type=float, default=8.0)
    run.add_argument("--warmup", type=float, default=1.0)
    run.add_argument("--connections", type=int, default=16)
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--load", choices=["auto", "wrk", "asyncio"], default="auto")
    child = sub.add_parser("serve", help="(internal) one server, started by the benchmark")
    child.add_argument("--app", required=True, choices=["intake", "bare"])
    child.add_argument("--fd", required=True, type=int)
    child.add_argument("--dir", required=True, type=Path)
    child.add_argument("--workers", type=int, default=2)
    child.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.app, args.fd, args.dir, args.workers, args.parent)
        return
    from bench.__main__ import interruptible

    with interruptible():
        if args.command is None:
            bench_intake()
        else:
            bench_intake(seconds=args.seconds, warmup=args.warmup, connections=args.connections,
                         workers=args.workers, load=args.load)


if __name__ == "__main__":
    main()
