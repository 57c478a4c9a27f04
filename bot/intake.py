"""Webhook intake: verify, parse, de-duplicate, persist, enqueue.  Nothing else happens in the request.

The functions here know HTTP only as headers + bytes, so they run in unit tests without a server.
Every authentic event is accepted; whether it leads to work is the worker's decision.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs

from gidgethub.sansio import Event

from modelherd.store.db import RawJSON
from modelherd.store import EventState, NewEvent

log = logging.getLogger(__name__)

FORGE = "github"
#: Headers kept with the event (the body is stored as parsed JSON; the signature is not kept).
KEPT_HEADERS = ("x-github-event", "x-github-delivery", "x-github-hook-id",
                "x-github-hook-installation-target-type", "x-github-hook-installation-target-id",
                "user-agent")


class IntakeError(Exception):
    """A request refused at intake, with the HTTP status to answer."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class EventSink(Protocol):
    def record_event(self, new: NewEvent, *, state: EventState = ..., note: str | None = ...) -> int | None: ...

    def unqueued(self, event_id: int, *, after: float = ...) -> bool: ...


class Enqueuer(Protocol):
    def enqueue_event(self, event_id: int, delay: float | None = None) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What intake did with a delivery, and what to answer."""

    status: HTTPStatus
    result: str  # "queued" | "duplicate" | "pong"
    delivery_id: str
    event_id: int | None = None

    def body(self) -> dict[str, Any]:
        return {"result": self.result, "delivery": self.delivery_id}


def check_size(content_length: int | None, limit: int) -> None:
    """413 before reading when the declared length is over ``limit``."""
    if content_length is not None and content_length > limit:
        raise IntakeError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {limit} bytes")


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> Event:
    """Check ``X-Hub-Signature-256`` and parse the body (401/400/415 on failure, with the reason).

    Only the SHA-256 signature counts: ``X-Hub-Signature`` (SHA-1) is ignored, so a request signed with
    SHA-1 alone is refused as unsigned.  The signature is checked first, so that an unsigned probe
    learns nothing about the headers or the body it sent.  Both of GitHub's content types are read:
    ``application/json`` and ``application/x-www-form-urlencoded`` (the JSON in its ``payload`` field).
    """
    if not secret:
        raise ValueError("an empty webhook secret would accept anything")
    signature = headers.get("x-hub-signature-256")
    if not signature:
        raise IntakeError(HTTPStatus.UNAUTHORIZED, "missing X-Hub-Signature-256")
    _verify_signature(body, signature, secret)
    event, delivery = headers.get("x-github-event"), headers.get("x-github-delivery")
    if not _fits(event, 64) or not _fits(delivery, 128):
        raise IntakeError(HTTPStatus.BAD_REQUEST, "missing or oversized X-GitHub-Event or X-GitHub-Delivery")
    check_header_text(headers, KEPT_HEADERS)
    return Event(parse_body(headers.get("content-type"), body), event=event, delivery_id=delivery)


def _verify_signature(body: bytes, signature: str, secret: str) -> None:
    """401 unless ``signature`` is ``sha256=<hex>`` of ``body`` under ``secret`` (constant-time)."""
    if not signature.isascii() or not signature.startswith("sha256="):
        raise IntakeError(HTTPStatus.UNAUTHORIZED, "malformed X-Hub-Signature-256 (expected sha256=<hex digest>)")
    expected = "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, expected):
        raise IntakeError(HTTPStatus.UNAUTHORIZED, "bad signature")


def check_header_text(headers: Mapping[str, str], names: tuple[str, ...]) -> None:
    """400 when a header intake keeps holds a control character (no database column stores NUL)."""
    for name in names:
        value = headers.get(name)
        if value is not None and _CONTROL.search(value):
            raise IntakeError(HTTPStatus.BAD_REQUEST, f"header {name} contains control characters")


def parse_body(content_type: str | None, body: bytes) -> dict[str, Any]:
    """The delivery's JSON object from a body in one of GitHub's content types (415 for others)."""
    media, params = _media_type(content_type)
    charset = params.get("charset", "utf-8").lower()
    if media == "application/json":
        if charset not in ("utf-8", "utf8"):
            raise IntakeError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"unsupported charset {charset[:40]!r} (JSON is UTF-8)")
        return parse_json_object(_utf8(body, "body"))
    if media == "application/x-www-form-urlencoded":
        return parse_json_object(form_payload(body))
    raise IntakeError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                      "expected a content type of application/json or application/x-www-form-urlencoded")


def form_payload(body: bytes) -> str:
    """The JSON text in the ``payload`` field of a form-encoded delivery (400 unless exactly one)."""
    try:
        fields = parse_qs(_ascii(body), keep_blank_values=True, strict_parsing=False, encoding="utf-8",
                          errors="strict", max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntakeError(HTTPStatus.BAD_REQUEST, "form body is not valid URL-encoded UTF-8") from exc
    payload = fields.get("payload", [])
    if len(payload) != 1:
        raise IntakeError(HTTPStatus.BAD_REQUEST, "form body needs exactly one payload field")
    return payload[0]


def parse_json_object(text: str) -> dict[str, Any]:
    """``text`` as a JSON object, strictly: 400 with the reason for anything no store could keep.

    Refused besides invalid JSON: nesting deeper than :data:`MAX_DEPTH` (GitHub's and GitLab's payloads
    nest 7 levels; Python's reader would overflow its stack near 1,000), ``NaN``/``Infinity`` and numbers
    out of a double's range (not JSON; PostgreSQL refuses them), ``\u0000`` and unpaired surrogate
    escapes (PostgreSQL's ``jsonb`` and every UTF-8 text refuse them).
    """
    if _nesting_exceeds(text, MAX_DEPTH):
        raise IntakeError(HTTPStatus.BAD_REQUEST, f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _Unstorable as exc:
        raise IntakeError(HTTPStatus.BAD_REQUEST, str(exc)) from exc
    except json.JSONDecodeError as exc:
        raise IntakeError(HTTPStatus.BAD_REQUEST,
                          f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except (ValueError, RecursionError) as exc:   # an integer over 4,300 digits; a stack the pre-check missed
        raise IntakeError(HTTPStatus.BAD_REQUEST, "body is not valid JSON: a value is out of range") from exc
    if not isinstance(data, dict):
        raise IntakeError(HTTPStatus.BAD_REQUEST, "body is not a JSON object")
    problem = _unstorable_escape(text)
    if problem:
        raise IntakeError(HTTPStatus.BAD_REQUEST, f"JSON holds {problem}, which no store can keep")
    return data


MAX_DEPTH = 100
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")   # HTAB is allowed in HTTP field values
#: A string's escapes of NUL, of a high surrogate (with the low one that may pair it) or of a low one;
#: the backslash run tells an escape (odd) from an escaped backslash followed by "u" (even).
_ESCAPE = re.compile(r"(\\+)u(0000|[dD][89abAB][0-9a-fA-F]{2}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?|[dD][c-fC-F][0-9a-fA-F]{2})")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")


class _Unstorable(ValueError):
    """A JSON value Python reads but no store keeps (raised from the parser's hooks)."""


def _refuse_constant(name: str) -> Any:
    raise _Unstorable(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    mantissa = text.lower().partition("e")[0]
    if not math.isfinite(value) or (value == 0.0 and mantissa.strip("-+0.")):
        raise _Unstorable(f"number {text[:40]} is out of range")
    return value


def _nesting_exceeds(text: str, limit: int) -> bool:
    """Whether the brackets of ``text`` (outside strings) nest deeper than ``limit``: innermost pairs
    are removed one level per pass, in C, so a usual payload costs a few passes."""
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(limit):
        brackets, removed = _INNERMOST.subn("", brackets)
        if not brackets or not removed:
            return False            # balanced within the limit, or unbalanced (the parser says so)
    return bool(brackets)


def _unstorable_escape(text: str) -> str | None:
    if "\\u" not in text:
        return None
    for match in _ESCAPE.finditer(text):
        if len(match.group(1)) % 2 == 0:
            continue                # an escaped backslash, then a plain "u"
        code = match.group(2)
        if code == "0000":
            return "a \\u0000 (NUL) escape"
        if len(code) == 4:
            return f"an unpaired surrogate escape \\u{code}"
    return None


def _media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    media, *params = (content_type or "").split(";")
    pairs = (p.partition("=") for p in params)
    return media.strip().lower(), {k.strip().lower(): v.strip().strip('"') for k, _, v in pairs}


def _utf8(body: bytes, what: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IntakeError(HTTPStatus.BAD_REQUEST, f"{what} is not UTF-8") from exc


def _ascii(body: bytes) -> str:
    try:
        return body.decode("ascii")
    except UnicodeDecodeError as exc:
        raise IntakeError(HTTPStatus.BAD_REQUEST, "form body is not URL-encoded ASCII") from exc


def _raw(event: Event, headers: Mapping[str, str], body: bytes | None) -> Any:
    """The payload to store: a JSON body's own text (verified by :func:`parse_json_object`; no second
    encoding of a 25 MB payload on the hot path), else the parsed data (a form's payload field)."""
    if body is not None and _media_type(headers.get("content-type"))[0] == "application/json":
        return RawJSON(body.decode("utf-8"))
    return event.data


def to_new_event(event: Event, headers: Mapping[str, str], body: bytes | None = None) -> NewEvent:
    """The forge-neutral record of a verified GitHub event."""
    data = event.data if isinstance(event.data, dict) else {}
    installation = data.get("installation")
    repository = data.get("repository")
    action = data.get("action")
    return NewEvent(
        forge=FORGE, delivery_id=event.delivery_id, event=event.event, payload=_raw(event, headers, body),
        action=action[:64] if isinstance(action, str) else None,
        installation_id=_int_or_none(installation.get("id")) if isinstance(installation, dict) else None,
        repo=_str_or_none(repository.get("full_name"), 255) if isinstance(repository, dict) else None,
        headers={k: headers[k] for k in KEPT_HEADERS if headers.get(k) is not None},
    )


def accept(new: NewEvent, store: EventSink, queue: Enqueuer) -> Outcome:
    """Record the event (insert-or-ignore on the delivery id) and enqueue it once.

    ``ping`` is recorded as skipped and answered ``pong`` without a job.  If the enqueue fails (the
    queue is down) the event stays recorded as queued, its queue lease is expired at once, and the
    periodic sweep enqueues it within a minute of the queue answering again; the answer is still 202.
    """
    if new.event == "ping":
        event_id = store.record_event(new, state=EventState.SKIPPED, note="ping")
        return Outcome(HTTPStatus.OK, "pong", new.delivery_id, event_id)
    event_id = store.record_event(new)
    if event_id is None:
        log.info("duplicate delivery %s (%s) ignored", new.delivery_id, new.event)
        return Outcome(HTTPStatus.OK, "duplicate", new.delivery_id)
    try:
        queue.enqueue_event(event_id)
    except Exception as exc:
        log.error("delivery %s recorded as event %s but not enqueued (%s: %s); the sweep will enqueue it",
                  new.delivery_id, event_id, type(exc).__name__, exc)
        try:
            store.unqueued(event_id)
        except Exception:   # the store just took the row; if it fails now the lease still runs out later
            log.exception("event %s: could not expire its queue lease", event_id)
    log.info("delivery %s (%s.%s) queued as event %s", new.delivery_id, new.event, new.action, event_id)
    return Outcome(HTTPStatus.ACCEPTED, "queued", new.delivery_id, event_id)


def _int_or_none(value: Any) -> int | None:
    """An id that fits a BIGINT column, else ``None``."""
    ok = isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    return value if ok else None


def _str_or_none(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _fits(value: str | None, limit: int) -> bool:
    return bool(value) and len(value) <= limit
