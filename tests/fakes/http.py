"""HTTP plumbing the in-test fake servers share: a quiet request handler, body decoding, ``Link``
headers for paginated answers, and checking an answer against the OpenAPI description."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from werkzeug.datastructures import MultiDict
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Request


class QuietHandler(WSGIRequestHandler):
    """No access log on stderr: each fake's ``calls`` is the record."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


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
