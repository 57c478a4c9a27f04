"""How ``modelherd serve`` keeps answering while clients send slowly: bodies are read by an event loop.

gunicorn's sync (and gthread) workers read a request's body on the thread that runs the request, so
a few clients sending a body at one byte a second hold every worker, and GitHub, which gives up after
10 s and does not redeliver by itself, loses deliveries.  Here the connection is served by uvicorn
(inside gunicorn, which still manages the processes) and :class:`BufferedWSGI` hands a request to the
Flask app, on a small thread pool, only once its whole body has arrived: a slow client costs a
coroutine and its buffer, never a thread.  A body that has not arrived within ``body_timeout`` seconds
is answered 408; one declared over ``max_body_bytes`` is passed on unread, so the app answers 413 at
once.  The reverse proxy in front (deploy/README.md) should buffer requests too.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

#: The gunicorn worker class ``modelherd serve`` runs (see :class:`WebhookWorker`).
WORKER_CLASS = "modelherd.asgi.WebhookWorker"
DEFAULT_BODY_TIMEOUT = 10.0

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _ClientGone(Exception):
    """The client disconnected before its body arrived."""


class BufferedWSGI:
    """An ASGI app that runs a WSGI ``app`` on ``threads`` threads, each request once its body is in."""

    def __init__(self, app: WSGIApp, *, max_body_bytes: int, body_timeout: float = DEFAULT_BODY_TIMEOUT,
                 threads: int = 4):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.executor = ThreadPoolExecutor(max(1, threads), thread_name_prefix="modelherd-wsgi")

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":       # websockets: not served
            return
        try:
            body = await asyncio.wait_for(self._read_body(scope, receive), self.body_timeout)
        except asyncio.TimeoutError:
            await _send_json(send, 408, f"the request body did not arrive within {self.body_timeout:g} s")
            return
        except _ClientGone:
            return
        loop = asyncio.get_running_loop()
        try:
            status, headers, chunks = await loop.run_in_executor(self.executor, self._call, _environ(scope, body))
        except Exception:      # the app answers its own errors; this is the adapter failing
            log.exception("request %s %s failed outside the app", scope.get("method"), scope.get("path"))
            await _send_json(send, 500, "internal error")
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"".join(chunks)})

    async def _read_body(self, scope: dict[str, Any], receive: Callable[..., Any]) -> bytes:
        """The whole body; at most ``max_body_bytes + 1`` bytes of it (enough for the app to say 413),
        nothing when its declared length is already over the limit."""
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            return b""
        chunks, size, more = [], 0, True
        while more and size <= self.max_body_bytes:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _call(self, environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], list[bytes]]:
        """Run the WSGI app in a pool thread; its (status, headers, body chunks)."""
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started["status"] = int(status.split(" ", 1)[0])
            started["headers"] = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
            return chunks.append

        result = self.app(environ, start_response)
        try:
            for chunk in result:
                chunks.append(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return started["status"], started["headers"], chunks

    async def _lifespan(self, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.executor.shutdown(wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _environ(scope: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The PEP 3333 environ of an ASGI HTTP ``scope`` whose body is ``body``."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf-8").decode("latin-1"),
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] if server[1] is not None else 80),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope.get("headers", ()):
        name, value = raw_name.decode("latin-1").upper().replace("-", "_"), raw_value.decode("latin-1")
        if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = name
        else:
            key = "HTTP_" + name
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


async def _send_json(send: Callable[..., Any], status: int, error: str) -> None:
    import json

    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


try:
    from uvicorn_worker import UvicornWorker
except ImportError:  # pragma: no cover - a dependency of modelherd; only a broken install lacks it
    UvicornWorker = None  # type: ignore[assignment,misc]

if UvicornWorker is not None:
    class WebhookWorker(UvicornWorker):
        """uvicorn inside gunicorn: gunicorn's ``worker_connections`` (1,000) bounds the connections of a
        process (uvicorn answers 503 beyond it); asyncio and h11 unless uvloop/httptools are installed."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.config.limit_concurrency = self.cfg.worker_connections
