"""Intake without HTTP: signature verification, parsing, and the dedupe/enqueue decision."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest

from modelherd import intake
from modelherd.store import EventState, NewEvent


BODY = json.dumps({"action": "opened", "number": 7, "installation": {"id": 42},
                   "repository": {"full_name": "octo/models"}}).encode()


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


class FakeStore:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[NewEvent, EventState, str | None]] = {}

    def record_event(self, new: NewEvent, *, state: EventState = EventState.QUEUED, note: str | None = None):
        if new.delivery_id in self.rows:
            return None
        self.rows[new.delivery_id] = (new, state, note)
        return len(self.rows)

    def unqueued(self, event_id: int, *, after: float = 0.0) -> bool:
        self.unqueued_ids = [*getattr(self, "unqueued_ids", []), event_id]
        return True


class FakeQueue:
    def __init__(self, broken: bool = False) -> None:
        self.ids: list[int] = []
        self.broken = broken

    def enqueue_event(self, event_id: int, delay: float | None = None) -> None:
        if self.broken:
            raise ConnectionError("queue down")
        self.ids.append(event_id)


def test_good_signature_parses_the_event(webhooks) -> None:
    headers = lower(webhooks.headers("pull_request", BODY, delivery="d-1"))
    event = intake.verify(headers, BODY, webhooks.secret)
    new = intake.to_new_event(event, headers)
    assert (new.forge, new.delivery_id, new.event, new.action) == ("github", "d-1", "pull_request", "opened")
    assert (new.installation_id, new.repo) == (42, "octo/models")
    assert new.headers["x-github-event"] == "pull_request"
    assert "x-hub-signature-256" not in new.headers


REFUSALS = {
    "missing": (lambda w: w.headers("pull_request", BODY, secret=None), HTTPStatus.UNAUTHORIZED),
    "wrong-secret": (lambda w: w.headers("pull_request", BODY, secret="nope"), HTTPStatus.UNAUTHORIZED),
    "not-sha256": (lambda w: {**w.headers("pull_request", BODY), "X-Hub-Signature-256": "sha1=abc"},
                   HTTPStatus.UNAUTHORIZED),
    "content-type": (lambda w: {**w.headers("pull_request", BODY), "Content-Type": "text/plain"},
                     HTTPStatus.UNSUPPORTED_MEDIA_TYPE),
    "no-event-header": (lambda w: {k: v for k, v in w.headers("pull_request", BODY).items()
                                   if k != "X-GitHub-Event"}, HTTPStatus.BAD_REQUEST),
    "oversized-delivery": (lambda w: w.headers("pull_request", BODY, delivery="d" * 129),
                           HTTPStatus.BAD_REQUEST),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals(case: str, webhooks) -> None:
    make_headers, status = REFUSALS[case]
    with pytest.raises(intake.IntakeError) as err:
        intake.verify(lower(make_headers(webhooks)), BODY, webhooks.secret)
    assert err.value.status is status


def test_sha1_signature_alone_is_not_enough(webhooks) -> None:
    import hashlib
    import hmac
    headers = lower(webhooks.headers("pull_request", BODY, secret=None))
    headers["x-hub-signature"] = "sha1=" + hmac.new(webhooks.secret.encode(), BODY, hashlib.sha1).hexdigest()
    with pytest.raises(intake.IntakeError, match="missing X-Hub-Signature-256"):
        intake.verify(headers, BODY, webhooks.secret)


def test_tampered_body_is_refused(webhooks) -> None:
    headers = lower(webhooks.headers("pull_request", BODY))
    with pytest.raises(intake.IntakeError) as err:
        intake.verify(headers, BODY.replace(b"7", b"8"), webhooks.secret)
    assert err.value.status is HTTPStatus.UNAUTHORIZED


def test_empty_secret_is_a_programming_error(webhooks) -> None:
    with pytest.raises(ValueError):
        intake.verify(lower(webhooks.headers("ping", BODY, secret="")), BODY, "")


def test_size_check() -> None:
    intake.check_size(None, 10)
    intake.check_size(10, 10)
    with pytest.raises(intake.IntakeError) as err:
        intake.check_size(11, 10)
    assert err.value.status is HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def test_accept_queues_once_and_answers_duplicates() -> None:
    store, queue = FakeStore(), FakeQueue()
    new = NewEvent(forge="github", delivery_id="d-1", event="pull_request", payload={})
    first = intake.accept(new, store, queue)
    again = intake.accept(new, store, queue)
    assert (first.status, first.result, again.status, again.result) == (
        HTTPStatus.ACCEPTED, "queued", HTTPStatus.OK, "duplicate")
    assert queue.ids == [first.event_id]


def test_ping_is_recorded_skipped_without_a_job() -> None:
    store, queue = FakeStore(), FakeQueue()
    out = intake.accept(NewEvent(forge="github", delivery_id="p", event="ping", payload={}), store, queue)
    assert (out.status, out.result, queue.ids) == (HTTPStatus.OK, "pong", [])
    assert store.rows["p"][1:] == (EventState.SKIPPED, "ping")


def test_queue_down_still_accepts_the_recorded_event() -> None:
    store = FakeStore()
    out = intake.accept(NewEvent(forge="github", delivery_id="q", event="push", payload={}), store,
                        FakeQueue(broken=True))
    assert out.status is HTTPStatus.ACCEPTED and "q" in store.rows  # the sweep enqueues it later
    assert store.unqueued_ids == [out.event_id]                     # at the next sweep, not after the lease


def test_form_encoded_deliveries_are_understood(webhooks) -> None:
    from urllib.parse import urlencode
    body = urlencode({"payload": BODY.decode()}).encode()
    headers = lower(webhooks.headers("pull_request", body))
    headers["content-type"] = "application/x-www-form-urlencoded"
    assert intake.to_new_event(intake.verify(headers, body, webhooks.secret), headers).installation_id == 42


def test_signature_helper_matches_github_docs_example(webhooks) -> None:
    # From GitHub's "Validating webhook deliveries": secret "It's a Secret to Everybody".
    assert webhooks.sign(b"Hello, World!", "It's a Secret to Everybody") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")


def test_odd_but_authentic_payload_fields_are_bounded(webhooks) -> None:
    body = json.dumps({"action": "a" * 100, "installation": {"id": 2**70},
                       "repository": {"full_name": "r" * 300}}).encode()
    headers = lower(webhooks.headers("pull_request", body))
    new = intake.to_new_event(intake.verify(headers, body, webhooks.secret), headers)
    assert (len(new.action), new.installation_id, len(new.repo)) == (64, None, 255)
