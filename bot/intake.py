"""Webhook intake: verify, parse, de-duplicate, persist, enqueue.  Nothing else happens in the request.

The functions here know HTTP only as headers + bytes, so they run in unit tests without a server.
Every authentic event is accepted; whether it leads to work is the worker's decision.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

from gidgethub import BadRequest, ValidationFailure
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
    """Check ``X-Hub-Signature-256`` and parse the body with gidgethub (401/400/415 on failure).

    Only the SHA-256 signature counts: ``X-Hub-Signature`` (SHA-1) is ignored, so a request signed with
    SHA-1 alone is refused as unsigned.
    """
    if not secret:
        raise ValueError("an empty webhook secret would accept anything")
    h = {k: headers.get(k) for k in ("content-type", "x-github-event", "x-github-delivery",
                                      "x-hub-signature-256")}
    if not h["x-hub-signature-256"]:
        raise IntakeError(HTTPStatus.UNAUTHORIZED, "missing X-Hub-Signature-256")
    if not _fits(h["x-github-event"], 64) or not _fits(h["x-github-delivery"], 128):
        # Verify first, so that an unsigned probe learns nothing about the headers it lacks.
        _verify_signature(body, h["x-hub-signature-256"], secret)
        raise IntakeError(HTTPStatus.BAD_REQUEST, "missing or oversized X-GitHub-Event or X-GitHub-Delivery")
    try:
        return Event.from_http({k: v for k, v in h.items() if v is not None}, body, secret=secret)
    except ValidationFailure as exc:
        raise IntakeError(HTTPStatus.UNAUTHORIZED, "bad signature") from exc
    except BadRequest as exc:
        raise IntakeError(HTTPStatus(exc.status_code), "unsupported content type") from exc
    except ValueError as exc:  # invalid JSON under a good signature
        raise IntakeError(HTTPStatus.BAD_REQUEST, "body is not valid JSON") from exc


def _verify_signature(body: bytes, signature: str, secret: str) -> None:
    from gidgethub.sansio import validate_event
    try:
        validate_event(body, signature=signature, secret=secret)
    except ValidationFailure as exc:
        raise IntakeError(HTTPStatus.UNAUTHORIZED, "bad signature") from exc


def _raw(event: Event, body: bytes | None) -> Any:
    """The payload to store: the verified body's own JSON text when there is one (no second encoding
    of a 25 MB payload on the hot path), else the parsed data."""
    if body is not None and isinstance(event.data, dict):
        try:
            return RawJSON(body.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    return event.data


def to_new_event(event: Event, headers: Mapping[str, str], body: bytes | None = None) -> NewEvent:
    """The forge-neutral record of a verified GitHub event."""
    data = event.data if isinstance(event.data, dict) else {}
    installation = data.get("installation")
    repository = data.get("repository")
    action = data.get("action")
    return NewEvent(
        forge=FORGE, delivery_id=event.delivery_id, event=event.event, payload=_raw(event, body),
        action=action[:64] if isinstance(action, str) else None,
        installation_id=_int_or_none(installation.get("id")) if isinstance(installation, dict) else None,
        repo=_str_or_none(repository.get("full_name"), 255) if isinstance(repository, dict) else None,
        headers={k: headers[k] for k in KEPT_HEADERS if headers.get(k) is not None},
    )


def accept(new: NewEvent, store: EventSink, queue: Enqueuer) -> Outcome:
    """Record the event (insert-or-ignore on the delivery id) and enqueue it once.

    ``ping`` is recorded as skipped and answered ``pong`` without a job.  If the enqueue fails the
    event stays recorded as queued and the reclaim sweep enqueues it later, so the answer is still 202.
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
    except Exception:
        log.exception("delivery %s recorded as event %s but not enqueued; the sweep will retry",
                      new.delivery_id, event_id)
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
