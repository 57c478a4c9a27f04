"""HTTP plumbing the in-test fake servers share: serving on a free local port, a quiet request handler,
body decoding, ``Link`` headers for paginated answers, and checking an answer against the OpenAPI
description."""

from __future__ import annotations

import json
import threading
from typing import Any, Self
from urllib.parse import urlencode

from werkzeug.datastructures import MultiDict
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request


class QuietHandler(WSGIRequestHandler):
    """No access log on stderr: each fake's ``calls`` is the record."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class LocalServer:
    """``start()``/``stop()``/``with``: serve the subclass's ``_wsgi`` on 127.0.0.1 at a free port, in a
    daemon thread.  ``_serving(url)`` receives the server's root URL (default: ``self.url``)."""

    thread_name = "fake-server"
    _server: Any = None
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=QuietHandler)
        self._serving(f"http://127.0.0.1:{self._server.server_port}")
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serving(self, url: str) -> None:
        self.url = url

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:  # pragma: no cover
        raise NotImplementedError


def decode_body(raw: bytes, content_type: str | None) -> Any:
    """A request body as JSON when it says so (and is), else text; None when empty."""
    if not raw:
        return None
    if content_type and "json" in content_type:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw.decode("utf-8", errors="replace")


def link_header(base_url: str, request: Request, pages: dict[str, int], per_page: int) -> str:
    """GitHub/GitLab-style ``Link`` header: one URL per relation (next, last...) with page parameters."""
    links = []
    for rel, page in pages.items():
        query = MultiDict(request.args)
        query["page"], query["per_page"] = str(page), str(per_page)
        links.append(f'<{base_url}?{urlencode(list(query.items(multi=True)))}>; rel="{rel}"')
    return ", ".join(links)


def response_problems(validator: Any, method: str, path: str, status: int, body: Any, request: Request) -> list[str]:
    """What the description says is wrong with an answer (best effort: statuses it leaves out are
    not checked)."""
    route = validator.route(path)
    operation = validator.operation(method, route.template) if route else None
    if operation is None or str(status) not in operation.get("responses", {}):
        return []
    errors = validator.validate_response(method, path, status, body=body, query=request.args)
    return [f"{method} {path} → {status}: {e}" for e in errors]
