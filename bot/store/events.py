"""Event rows as a work ledger: record (insert-or-ignore), claim with a lease, finish, fail, reclaim.

The row is the source of truth; the queue only carries its id.  Every state change is a single
conditional UPDATE (compare-and-set), so exactly one worker wins a claim on any backend, and a worker
whose lease expired cannot finish an event that another worker has since claimed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, cast, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from modelherd.store.models import Event, EventState

log = logging.getLogger(__name__)

#: How long a queued event may wait for a worker before the sweep enqueues it again (a message lost
#: between commit and enqueue, or taken by a worker that died before claiming it).
DEFAULT_QUEUE_LEASE = 600.0


@dataclass(frozen=True)
class NewEvent:
    """An authentic event about to be recorded (built by intake, forge-neutral)."""

    forge: str
    delivery_id: str
    event: str
    payload: Any
    action: str | None = None
    installation_id: int | None = None
    repo: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EventRecord:
    """A snapshot of an event row, what handlers receive."""

    id: int
    forge: str
    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    repo: str | None
    payload: Any
    headers: dict[str, Any]
    received_at: datetime
    state: EventState
    attempts: int
    lease_until: datetime | None
    error: str | None

    @classmethod
    def of(cls, row: Event, *, payload: Any) -> EventRecord:
        """The snapshot of ``row`` with ``payload`` (decoded by the caller: see :func:`decode_payload`)."""
        return cls(id=row.id, forge=row.forge, delivery_id=row.delivery_id, event=row.event,
                   action=row.action, installation_id=row.installation_id, repo=row.repo,
                   payload=payload, headers=dict(row.headers or {}), received_at=row.received_at,
                   state=EventState(row.state), attempts=row.attempts, lease_until=row.lease_until,
                   error=row.error)


@dataclass(frozen=True)
class Claim:
    """A worker's exclusive hold on an event until ``lease_until``; ``attempt`` fences late writers."""

    event: EventRecord
    attempt: int
    lease_until: datetime

    @property
    def event_id(self) -> int:
        return self.event.id


class EventsRepo:
    """Event operations of :class:`~modelherd.store.Store` (needs ``_tx()`` and ``now()``)."""

    def record_event(self, new: NewEvent, *, state: EventState = EventState.QUEUED,
                     queue_lease: float = DEFAULT_QUEUE_LEASE, note: str | None = None) -> int | None:
        """Insert the event unless ``(forge, delivery_id)`` exists; its id, or ``None`` for a duplicate."""
        now = self.now()
        values = dict(forge=new.forge, delivery_id=new.delivery_id, event=new.event, action=new.action,
                      installation_id=new.installation_id, repo=new.repo, headers=dict(new.headers),
                      payload=new.payload, received_at=now, state=state.value, attempts=0, error=note,
                      lease_until=now + timedelta(seconds=queue_lease) if state is EventState.QUEUED else None,
                      finished_at=None if state is EventState.QUEUED else now)
        with self._conn() as conn:  # Core, one cached statement: this is the hot path of intake
            stmt = _insert_or_ignore(conn.dialect.name)
            if stmt is not None:
                return conn.execute(stmt, values).scalar_one_or_none()
        try:  # other backends: a plain insert, the unique constraint decides
            with self._conn() as conn:
                return conn.execute(insert(_EVENTS).returning(_EVENTS.c.id), values).scalar_one()
        except IntegrityError:
            return None

    def get_event(self, event_id: int) -> EventRecord | None:
        """The event, its payload ``None`` when the stored text cannot be decoded."""
        with self._tx() as s:
            record = _load(s, Event.id == event_id)
        return record[0] if record else None

    def find_event(self, forge: str, delivery_id: str) -> EventRecord | None:
        with self._tx() as s:
            record = _load(s, (Event.forge == forge) & (Event.delivery_id == delivery_id))
        return record[0] if record else None

    def installation_for(self, forge: str, repo: str) -> int | None:
        """The installation the newest delivery for ``repo`` came through (how background jobs such as
        rollouts find the credentials of a repository)."""
        with self._tx() as s:
            return s.execute(select(Event.installation_id)
                             .where(Event.forge == forge, Event.repo == repo, Event.installation_id.is_not(None))
                             .order_by(Event.id.desc()).limit(1)).scalar_one_or_none()

    def last_pushes(self, forge: str, head_of: Callable[[Any], str | None],
                    limit: int = 2000) -> list[tuple[str, int | None, str]]:
        """Per repository of ``forge``, (repo, installation, SHA) of the newest push for which
        ``head_of(payload)`` gives a SHA (e.g. pushes to the default branch).  GitHub pushes without an
        installation are left out (nothing could act on them); GitLab has no installations (None)."""
        query = select(Event.id, Event.repo, Event.installation_id, _PAYLOAD_TEXT).where(
            Event.forge == forge, Event.event == "push", Event.repo.is_not(None))
        if forge == "github":
            query = query.where(Event.installation_id.is_not(None))
        with self._tx() as s:
            rows = s.execute(query.order_by(Event.id.desc()).limit(limit)).all()
        found: dict[str, tuple[str, int, str]] = {}
        for event_id, repo, installation, text in rows:
            if repo in found:
                continue
            try:
                payload = decode_payload(text)
            except UndecodablePayload as exc:   # one bad row must not stop the sweep of every repository
                self._fail_undecodable(event_id, exc)
                continue
            sha = head_of(payload) if isinstance(payload, dict) else None
            if sha:
                found[repo] = (repo, installation, sha)
        return list(found.values())

    def repos_of_installation(self, forge: str, installation_id: int, limit: int = 5000) -> list[str]:
        """Repositories deliveries came from through ``installation_id`` (newest first, each once)."""
        with self._tx() as s:
            rows = s.execute(select(Event.repo).where(Event.forge == forge, Event.installation_id == installation_id,
                                                      Event.repo.is_not(None))
                             .order_by(Event.id.desc()).limit(limit)).scalars()
            return list(dict.fromkeys(rows))

    def count_events(self, state: EventState | None = None) -> int:
        with self._tx() as s:
            q = select(func.count()).select_from(Event)
            if state is not None:
                q = q.where(Event.state == state.value)
            return s.execute(q).scalar_one()

    def claim(self, event_id: int, lease_seconds: float) -> Claim | None:
        """Take the event for ``lease_seconds`` if it is queued or its running lease expired; else ``None``."""
        now = self.now()
        until = now + timedelta(seconds=lease_seconds)
        running_expired = (Event.state == EventState.RUNNING.value) & (Event.lease_until < now)
        with self._tx() as s:
            res = s.execute(update(Event)
                            .where(Event.id == event_id,
                                   or_(Event.state == EventState.QUEUED.value, running_expired))
                            .values(state=EventState.RUNNING.value, lease_until=until,
                                    attempts=Event.attempts + 1)
                            .execution_options(synchronize_session=False))
            if res.rowcount != 1:
                return None
            record, error = _load(s, Event.id == event_id)
            if error is None:
                return Claim(event=record, attempt=record.attempts, lease_until=until)
        self._fail_undecodable(event_id, error)
        return None

    def _fail_undecodable(self, event_id: int, error: UndecodablePayload) -> None:
        """Mark an event whose stored payload cannot be decoded ``failed`` with the reason, so that it is
        never claimed, queued or read again (it can only be the residue of an older intake or a hand edit)."""
        log.error("event %s marked failed: %s", event_id, error)
        with self._tx() as s:
            s.execute(update(Event).where(Event.id == event_id, Event.state != EventState.FAILED.value)
                      .values(state=EventState.FAILED.value, lease_until=None, finished_at=self.now(),
                              error=str(error)[:4000])
                      .execution_options(synchronize_session=False))

    def renew(self, claim: Claim, lease_seconds: float) -> Claim | None:
        """Extend a held lease (long jobs); ``None`` when the claim was lost."""
        until = self.now() + timedelta(seconds=lease_seconds)
        if not self._settle(claim, lease_until=until):
            return None
        return Claim(event=claim.event, attempt=claim.attempt, lease_until=until)

    def finish(self, claim: Claim, state: EventState = EventState.DONE, note: str | None = None) -> bool:
        """Mark a claimed event done (or skipped, with ``note`` saying why); False if the claim was lost."""
        if state not in (EventState.DONE, EventState.SKIPPED):
            raise ValueError(f"finish() takes done or skipped, not {state}")
        return self._settle(claim, state=state.value, lease_until=None, finished_at=self.now(), error=note)

    def fail(self, claim: Claim, error: str, *, max_attempts: int, retry_delay: float = 0.0,
             queue_lease: float = DEFAULT_QUEUE_LEASE) -> bool:
        """Record a failed attempt.  True: the event is queued again (enqueue it after ``retry_delay``);
        False: attempts are used up and the event is ``failed`` (or the claim was already lost)."""
        now = self.now()
        if claim.attempt < max_attempts:
            until = now + timedelta(seconds=retry_delay + queue_lease)
            return self._settle(claim, state=EventState.QUEUED.value, lease_until=until, error=error[:4000])
        self._settle(claim, state=EventState.FAILED.value, lease_until=None, finished_at=now, error=error[:4000])
        return False

    def requeue(self, event_id: int, *, queue_lease: float = DEFAULT_QUEUE_LEASE) -> bool:
        """Put a finished or failed event back in the queue (an operator's re-run); True if changed."""
        until = self.now() + timedelta(seconds=queue_lease)
        with self._tx() as s:
            res = s.execute(update(Event).where(Event.id == event_id, Event.state != EventState.RUNNING.value)
                            .values(state=EventState.QUEUED.value, lease_until=until, attempts=0,
                                    finished_at=None, error=None)
                            .execution_options(synchronize_session=False))
            return res.rowcount == 1

    def unqueued(self, event_id: int, *, after: float = 0.0) -> bool:
        """The queue refused the event's message (Redis down): let the queue lease run out ``after``
        seconds from now, so that the periodic sweep (every minute) enqueues it then, instead of after
        the whole queue lease.  Only a queued event changes; True if it did."""
        until = self.now() + timedelta(seconds=after)
        with self._tx() as s:
            res = s.execute(update(Event).where(Event.id == event_id, Event.state == EventState.QUEUED.value)
                            .values(lease_until=until).execution_options(synchronize_session=False))
            return res.rowcount == 1

    def reclaim_expired(self, *, max_attempts: int, queue_lease: float = DEFAULT_QUEUE_LEASE,
                        limit: int = 500) -> list[int]:
        """Sweep: events whose lease ran out (worker killed mid-job, message lost) go back to ``queued``
        and their ids are returned for enqueueing; a running event out of attempts becomes ``failed``."""
        now = self.now()
        expired = Event.state.in_([EventState.QUEUED.value, EventState.RUNNING.value]) & (Event.lease_until < now)
        with self._tx() as s:
            rows = s.execute(select(Event.id, Event.state, Event.attempts).where(expired)
                             .order_by(Event.id).limit(limit)).all()
        requeued: list[int] = []
        for event_id, state, attempts in rows:
            cas = (Event.id == event_id) & (Event.state == state) & (Event.lease_until < now)
            if state == EventState.RUNNING.value and attempts >= max_attempts:
                values = dict(state=EventState.FAILED.value, lease_until=None, finished_at=now,
                              error=f"lease expired on attempt {attempts} of {max_attempts} (worker died?)")
            else:
                values = dict(state=EventState.QUEUED.value, lease_until=now + timedelta(seconds=queue_lease))
            with self._tx() as s:
                res = s.execute(update(Event).where(cas).values(**values)
                                .execution_options(synchronize_session=False))
            if res.rowcount == 1 and values["state"] == EventState.QUEUED.value:
                requeued.append(event_id)
        return requeued

    def _settle(self, claim: Claim, **values: Any) -> bool:
        """Apply ``values`` only while ``claim`` still holds the event (same attempt, still running)."""
        with self._tx() as s:
            res = s.execute(update(Event)
                            .where(Event.id == claim.event_id, Event.state == EventState.RUNNING.value,
                                   Event.attempts == claim.attempt)
                            .values(**values).execution_options(synchronize_session=False))
            return res.rowcount == 1

    # provided by Store
    def _tx(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _conn(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def now(self) -> datetime:  # pragma: no cover
        raise NotImplementedError


class UndecodablePayload(ValueError):
    """A stored payload that is not JSON this process can read (raw form text, nesting too deep…)."""


#: The payload as the database's own text: decoded here, where a failure is caught, not in the driver.
_PAYLOAD_TEXT = cast(Event.payload, Text)


def decode_payload(text: str | None) -> Any:
    """The payload stored as ``text`` (``None`` for SQL NULL); :class:`UndecodablePayload` when unreadable."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UndecodablePayload(f"stored payload cannot be decoded: {type(exc).__name__}: {exc}"[:500]) from exc


def _load(s: Session, where: Any) -> tuple[EventRecord, UndecodablePayload | None] | None:
    """The event matching ``where`` with its payload decoded here; the error too when it cannot be
    (the record's payload is then ``None``).  ``None`` when no event matches."""
    found = s.execute(select(Event, _PAYLOAD_TEXT).where(where).options(defer(Event.payload))
                      .execution_options(populate_existing=True)).first()
    if found is None:
        return None
    row, text = found
    try:
        payload, error = decode_payload(text), None
    except UndecodablePayload as exc:
        payload, error = None, exc
    return EventRecord.of(row, payload=payload), error


_EVENTS = Event.__table__
_INSERT_OR_IGNORE: dict[str, Any] = {}


def _insert_or_ignore(dialect: str) -> Any:
    """``INSERT … ON CONFLICT (forge, delivery_id) DO NOTHING RETURNING id`` for SQLite/PostgreSQL."""
    if dialect not in _INSERT_OR_IGNORE:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            return None
        _INSERT_OR_IGNORE[dialect] = (dialect_insert(_EVENTS)
                                      .on_conflict_do_nothing(index_elements=["forge", "delivery_id"])
                                      .returning(_EVENTS.c.id))
    return _INSERT_OR_IGNORE[dialect]
