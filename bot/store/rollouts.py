"""Rollouts in the store: one row per rollout (its state machine) and an append-only event log.

The engine (:mod:`modelherd.rollout`) owns the rules; this module owns the storage guarantees:

- **Leases.** :meth:`RolloutsRepo.lease_rollout` takes a rollout for one ``advance`` call with a
  compare-and-set on ``lease_until``; every later write of that call is *fenced* by the holder
  (``WHERE lease_holder = :holder``), so a worker whose lease ran out can write nothing.
- **Intent, then outcome.** :meth:`RolloutsRepo.rollout_intent` appends an ``intent`` event and marks
  it open on the row in one transaction; :meth:`RolloutsRepo.rollout_outcome` appends the ``outcome``,
  closes the intent and applies the state change in one transaction.  A row with an open intent is a
  side effect whose result is unknown: the crash-recovery case.
- **One active rollout per (repo, model, environment)**: a partial unique index over the states that
  touch the target (``applying``, ``verifying``, ``rolling_back``); a rollout that would break it stays
  ``pending`` (:meth:`RolloutsRepo.start_rollout_row` returns False).
- **Wake-ups.** A rollout reaching a final state sets ``next_check_at = now`` on the pending rollouts
  that wait for it and returns their ids, for the caller to enqueue.
- **Started once.** A rollout created with an ``idempotency_key`` (what started it: the delivery and
  command, or the merge, with the model and environment) is unique per repository:
  :meth:`RolloutsRepo.create_rollout` returns the existing rollout of that key instead of inserting
  another, so a retried job finds the rollout it already started.
- **Published.** ``reported`` is the ``state:step`` last published to the forge
  (:mod:`modelherd.progress`); :meth:`RolloutsRepo.unreported_rollouts` lists those whose publication
  failed, for the sweep to publish again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean, ForeignKey, Index, Integer, String, Text, and_, cast, or_, select, text, update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from modelherd.store.db import Base, JSONType, UTCDateTime
from modelherd.store.models import BigId

#: States in which a rollout acts on its target; at most one per (repo, model, environment).
ACTIVE_STATES = ("applying", "verifying", "rolling_back")
#: States a rollout never leaves.
FINAL_STATES = ("succeeded", "failed", "rolled_back", "cancelled", "superseded")
#: What a rollout does: make a version serve, or remove the model/environment (its manifest was deleted).
DEPLOY, DECOMMISSION = "deploy", "decommission"
_ACTIVE_SQL = "state IN ('applying', 'verifying', 'rolling_back')"


class Rollout(Base):
    """One rollout of a model version to one environment (see :mod:`modelherd.rollout`)."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repo: Mapped[str] = mapped_column(String(255))
    model: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    target: Mapped[str] = mapped_column(String(32))
    cluster: Mapped[str] = mapped_column(String(63))
    action: Mapped[str] = mapped_column(String(16), default=DEPLOY, server_default=DEPLOY)
    from_version: Mapped[str | None] = mapped_column(String(64))
    to_version: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    stable_spec: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    candidate: Mapped[dict[str, Any]] = mapped_column(JSONType)
    stable: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    trigger: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(255))
    pr_number: Mapped[int | None] = mapped_column(Integer)
    sha: Mapped[str | None] = mapped_column(String(64))
    steps: Mapped[list[int]] = mapped_column(JSONType)
    verify_seconds: Mapped[int] = mapped_column(Integer)
    step_timeout_seconds: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    current_step: Mapped[int] = mapped_column(Integer, default=0)
    waits_for: Mapped[int | None] = mapped_column(BigId, ForeignKey("rollouts.id"), nullable=True)
    after_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("rollouts.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    step_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    restored: Mapped[bool] = mapped_column(Boolean, default=False)
    open_intent: Mapped[int | None] = mapped_column(BigId, nullable=True)
    lease_holder: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[list[str]] = mapped_column(JSONType)
    transitions: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reported: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index("ix_rollouts_repo_model_environment", "repo", "model", "environment"),
        Index("uq_rollouts_repo_idempotency_key", "repo", "idempotency_key", unique=True),
        Index("ix_rollouts_state_next_check_at", "state", "next_check_at"),
        Index("uq_rollouts_active", "repo", "model", "environment", unique=True,
              sqlite_where=text(_ACTIVE_SQL), postgresql_where=text(_ACTIVE_SQL)),
    )


class RolloutEvent(Base):
    """Append-only log: every side effect's intent and outcome, every transition and observation."""

    __tablename__ = "rollout_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(BigId, ForeignKey("rollouts.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(16))        # intent | outcome | transition | observation | note
    action: Mapped[str] = mapped_column(String(32))      # apply | remove | mark-live | mark-rejected | health | state
    step: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[str | None] = mapped_column(String(64))
    percent: Mapped[int | None] = mapped_column(Integer)
    ok: Mapped[bool | None] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16))       # the rollout's state after this event
    intent_id: Mapped[int | None] = mapped_column(BigId)  # outcome → its intent
    message: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType)


@dataclass(frozen=True)
class RolloutEventRecord:
    id: int
    rollout_id: int
    at: datetime
    kind: str
    action: str
    step: int | None
    version: str | None
    percent: int | None
    ok: bool | None
    state: str
    intent_id: int | None
    message: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, row: RolloutEvent) -> RolloutEventRecord:
        return cls(row.id, row.rollout_id, row.at, row.kind, row.action, row.step, row.version, row.percent,
                   row.ok, row.state, row.intent_id, row.message or "", dict(row.detail or {}))


@dataclass(frozen=True)
class RolloutRecord:
    """A snapshot of a rollout row."""

    id: int
    repo: str
    model: str
    environment: str
    target: str
    cluster: str
    from_version: str | None
    to_version: str
    spec: dict[str, Any]
    stable_spec: dict[str, Any] | None
    candidate: dict[str, Any]
    stable: dict[str, Any] | None
    trigger: str
    reason: str | None
    actor: str | None
    pr_number: int | None
    sha: str | None
    steps: list[int]
    verify_seconds: int
    step_timeout_seconds: int
    state: str
    current_step: int
    waits_for: int | None
    after_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    step_started_at: datetime | None
    ready_at: datetime | None
    next_check_at: datetime | None
    restored: bool
    open_intent: int | None
    lease_holder: str | None
    lease_until: datetime | None
    cancel_reason: str | None
    error: str | None
    notes: list[str] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    action: str = DEPLOY
    idempotency_key: str | None = None
    reported: str | None = None

    @classmethod
    def of(cls, row: Rollout) -> RolloutRecord:
        values = {name: getattr(row, name) for name in cls.__dataclass_fields__}
        values["steps"] = list(row.steps or [])
        values["notes"] = list(row.notes or [])
        values["transitions"] = list(row.transitions or [])
        values["action"] = row.action or DEPLOY
        return cls(**values)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def decommission(self) -> bool:
        """This rollout removes the model from the environment (its manifest was deleted)."""
        return self.action == DECOMMISSION

    @property
    def publication(self) -> str:
        """What :mod:`modelherd.progress` publishes of this rollout: ``state:step`` (see ``reported``)."""
        return f"{self.state}:{self.current_step}"


@dataclass(frozen=True)
class NewRollout:
    """What :meth:`RolloutsRepo.create_rollout` inserts (built by :func:`modelherd.rollout.start_rollout`)."""

    repo: str
    model: str
    environment: str
    target: str
    cluster: str
    from_version: str | None
    to_version: str
    spec: dict[str, Any]
    candidate: dict[str, Any]
    stable: dict[str, Any] | None
    trigger: str
    actor: str | None
    pr_number: int | None
    sha: str | None
    steps: list[int]
    verify_seconds: int
    step_timeout_seconds: int
    after_id: int | None = None
    stable_spec: dict[str, Any] | None = None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    action: str = DEPLOY
    idempotency_key: str | None = None     # what started it (see the module docstring); None: no key


@dataclass(frozen=True)
class Written:
    """The result of a fenced write: the row after it, the event logged (if any), followers to wake."""

    record: RolloutRecord
    event: RolloutEventRecord | None = None
    wake: tuple[int, ...] = ()


class LeaseLost(Exception):
    """This worker's lease on the rollout ran out and another worker may hold it: stop writing."""


class RolloutsRepo:
    """Rollout operations of :class:`~modelherd.store.Store` (needs ``_tx()``)."""

    # -- creation and reads ------------------------------------------------------------------------
    def create_rollout(self, new: NewRollout, *, now: datetime) -> RolloutRecord:
        """Insert a pending rollout, queued behind the newest unfinished rollout of the same key.

        With ``new.idempotency_key``, the rollout already created under that key (in ``new.repo``) is
        returned instead, whatever its state: it was started by the same delivery."""
        with self._tx() as s:
            if new.idempotency_key is not None:
                found = _by_key(s, new.repo, new.idempotency_key)
                if found is not None:
                    return RolloutRecord.of(found)
            ahead = s.execute(select(Rollout.id).where(*_same_key(new.repo, new.model, new.environment),
                                                       Rollout.state.not_in(FINAL_STATES))
                              .order_by(Rollout.id.desc()).limit(1)).scalar_one_or_none()
            row = Rollout(**{k: getattr(new, k) for k in NewRollout.__dataclass_fields__},
                          state="pending", current_step=0, waits_for=ahead, created_at=now, next_check_at=now,
                          restored=False, transitions=[{"state": "pending", "step": None, "at": now.isoformat()}])
            row.notes = list(new.notes)
            if new.idempotency_key is not None:
                row.idempotency_key = bounded_key(new.idempotency_key)
            s.add(row)
            s.flush()
            _event(s, row, now, "transition", "state", message="created" + (f", waits for #{ahead}" if ahead else ""))
            return RolloutRecord.of(row)

    def get_rollout(self, rollout_id: int) -> RolloutRecord | None:
        with self._tx() as s:
            row = s.get(Rollout, rollout_id)
            return RolloutRecord.of(row) if row else None

    def rollout_by_key(self, repo: str, idempotency_key: str) -> RolloutRecord | None:
        """The rollout ``repo`` created under ``idempotency_key``, if any."""
        with self._tx() as s:
            row = _by_key(s, repo, idempotency_key)
            return RolloutRecord.of(row) if row else None

    def mark_reported(self, rollout_id: int, publication: str) -> None:
        """Remember that ``publication`` (``state:step``) of the rollout reached the forge."""
        with self._tx() as s:
            s.execute(update(Rollout).where(Rollout.id == rollout_id).values(reported=publication)
                      .execution_options(synchronize_session=False))

    def unreported_rollouts(self, states: tuple[str, ...], *, finished_after: datetime,
                            limit: int = 200) -> list[int]:
        """Rollouts in ``states`` whose current ``state:step`` was not published (oldest first), unless
        they finished before ``finished_after`` (given up on)."""
        published = Rollout.state + ":" + cast(Rollout.current_step, String)
        with self._tx() as s:
            return list(s.execute(
                select(Rollout.id).where(Rollout.state.in_(states),
                                         or_(Rollout.reported.is_(None), Rollout.reported != published),
                                         or_(Rollout.finished_at.is_(None), Rollout.finished_at > finished_after))
                .order_by(Rollout.id).limit(limit)).scalars())

    def rollout_events(self, rollout_id: int) -> list[RolloutEventRecord]:
        """The rollout's log, oldest first."""
        with self._tx() as s:
            rows = s.execute(select(RolloutEvent).where(RolloutEvent.rollout_id == rollout_id)
                             .order_by(RolloutEvent.id)).scalars()
            return [RolloutEventRecord.of(r) for r in rows]

    def events_of_rollouts(self, rollout_ids: list[int]) -> dict[int, list[RolloutEventRecord]]:
        """The logs of several rollouts in one query, oldest first (history)."""
        found: dict[int, list[RolloutEventRecord]] = {i: [] for i in rollout_ids}
        if not rollout_ids:
            return found
        with self._tx() as s:
            rows = s.execute(select(RolloutEvent).where(RolloutEvent.rollout_id.in_(rollout_ids))
                             .order_by(RolloutEvent.id)).scalars()
            for row in rows:
                found[row.rollout_id].append(RolloutEventRecord.of(row))
        return found

    def get_rollout_event(self, event_id: int) -> RolloutEventRecord | None:
        with self._tx() as s:
            row = s.get(RolloutEvent, event_id)
            return RolloutEventRecord.of(row) if row else None

    def list_rollouts(self, *, repo: str | None = None, model: str | None = None, environment: str | None = None,
                      pr_number: int | None = None, states: tuple[str, ...] | None = None,
                      limit: int | None = None, newest_first: bool = True) -> list[RolloutRecord]:
        """Rollouts matching every given filter."""
        query = select(Rollout)
        for column, value in ((Rollout.repo, repo), (Rollout.model, model), (Rollout.environment, environment),
                              (Rollout.pr_number, pr_number)):
            if value is not None:
                query = query.where(column == value)
        if states is not None:
            query = query.where(Rollout.state.in_(states))
        query = query.order_by(Rollout.id.desc() if newest_first else Rollout.id)
        if limit:
            query = query.limit(limit)
        with self._tx() as s:
            return [RolloutRecord.of(r) for r in s.execute(query).scalars()]

    def deployed_places(self, repo: str) -> list[tuple[str, str]]:
        """Every (cluster, namespace) ``repo`` was ever deployed to, including places its manifests no
        longer name (drift lists orphans there too). One query, as many rows as distinct places."""
        namespace = Rollout.spec["namespace"].as_string()
        with self._tx() as s:
            rows = s.execute(select(Rollout.cluster, namespace).where(Rollout.repo == repo).distinct()).all()
        return sorted((cluster, ns) for cluster, ns in rows if ns)

    def open_rollouts_before(self, record: RolloutRecord) -> list[RolloutRecord]:
        """Unfinished rollouts of the same key created before ``record`` (what it queues behind)."""
        with self._tx() as s:
            rows = s.execute(select(Rollout).where(*_same_key(record.repo, record.model, record.environment),
                                                   Rollout.id < record.id, Rollout.state.not_in(FINAL_STATES))
                             .order_by(Rollout.id)).scalars()
            return [RolloutRecord.of(r) for r in rows]

    def newer_pending_rollouts(self, record: RolloutRecord) -> list[RolloutRecord]:
        with self._tx() as s:
            rows = s.execute(select(Rollout).where(*_same_key(record.repo, record.model, record.environment),
                                                   Rollout.id > record.id, Rollout.state == "pending")
                             .order_by(Rollout.id)).scalars()
            return [RolloutRecord.of(r) for r in rows]

    def last_succeeded_rollout(self, repo: str, model: str, environment: str,
                               version: str | None = None, *, deploys_only: bool = True) -> RolloutRecord | None:
        """The newest rollout of the key that succeeded (deploying ``version``, when given).

        ``deploys_only=False`` also finds a succeeded decommission (then nothing serves)."""
        query = select(Rollout).where(*_same_key(repo, model, environment), Rollout.state == "succeeded")
        if deploys_only:
            query = query.where(Rollout.action == DEPLOY)
        if version is not None:
            query = query.where(Rollout.to_version == version)
        with self._tx() as s:
            row = s.execute(query.order_by(Rollout.id.desc()).limit(1)).scalar_one_or_none()
            return RolloutRecord.of(row) if row else None

    def due_rollouts(self, *, now: datetime, grace: float, limit: int = 500) -> list[int]:
        """Unfinished rollouts whose check is overdue by ``grace`` and whose lease is free (sweep)."""
        overdue = now - timedelta(seconds=grace)
        with self._tx() as s:
            return list(s.execute(
                select(Rollout.id).where(Rollout.state.not_in(FINAL_STATES),
                                         or_(Rollout.next_check_at.is_(None), Rollout.next_check_at < overdue),
                                         or_(Rollout.lease_until.is_(None), Rollout.lease_until < now))
                .order_by(Rollout.id).limit(limit)).scalars())

    # -- leases ------------------------------------------------------------------------------------
    def lease_rollout(self, rollout_id: int, holder: str, *, ttl: float, now: datetime) -> RolloutRecord | None:
        """Take the rollout for ``ttl`` seconds unless another holder's lease is still running."""
        with self._tx() as s:
            res = s.execute(update(Rollout)
                            .where(Rollout.id == rollout_id,
                                   or_(Rollout.lease_until.is_(None), Rollout.lease_until < now,
                                       Rollout.lease_holder == holder))
                            .values(lease_holder=holder, lease_until=now + timedelta(seconds=ttl))
                            .execution_options(synchronize_session=False))
            if res.rowcount != 1:
                return None
            return RolloutRecord.of(s.get(Rollout, rollout_id, populate_existing=True))

    def release_rollout(self, rollout_id: int, holder: str) -> None:
        with self._tx() as s:
            s.execute(update(Rollout).where(Rollout.id == rollout_id, Rollout.lease_holder == holder)
                      .values(lease_holder=None, lease_until=None).execution_options(synchronize_session=False))

    # -- fenced writes -----------------------------------------------------------------------------
    def rollout_intent(self, rollout_id: int, holder: str, *, action: str, now: datetime, step: int | None = None,
                       version: str | None = None, percent: int | None = None, message: str = "",
                       detail: dict[str, Any] | None = None) -> Written:
        """Record that a side effect is about to happen, and mark it open on the row."""
        with self._tx() as s:
            row = _fenced(s, rollout_id, holder)
            event = _event(s, row, now, "intent", action, step=step, version=version, percent=percent,
                           message=message, detail=detail)
            row.open_intent = event.id
            return Written(RolloutRecord.of(row), RolloutEventRecord.of(event))

    def rollout_outcome(self, rollout_id: int, holder: str, intent: RolloutEventRecord, *, ok: bool,
                        now: datetime, message: str = "", detail: dict[str, Any] | None = None,
                        changes: dict[str, Any] | None = None, release: bool = False) -> Written:
        """Record the outcome of ``intent``, close it, and apply ``changes`` (a transition) atomically.

        ``release``: this is the caller's last write; give up the lease in the same transaction."""
        with self._tx() as s:
            row = _fenced(s, rollout_id, holder)
            row.open_intent = None
            _apply(row, changes or {}, now, release)
            event = _event(s, row, now, "outcome", intent.action, step=intent.step, version=intent.version,
                           percent=intent.percent, ok=ok, intent_id=intent.id, message=message, detail=detail)
            return Written(RolloutRecord.of(row), RolloutEventRecord.of(event), _wake_followers(s, row, now))

    def rollout_transition(self, rollout_id: int, holder: str, *, now: datetime, changes: dict[str, Any],
                           message: str = "", kind: str = "transition", action: str = "state",
                           detail: dict[str, Any] | None = None,
                           ok: bool | None = None, step: int | None = None, release: bool = False) -> Written:
        """Apply ``changes`` (no side effect happened) and log why; returns followers to wake."""
        with self._tx() as s:
            row = _fenced(s, rollout_id, holder)
            _apply(row, changes, now, release)
            event = _event(s, row, now, kind, action, step=step, ok=ok, message=message, detail=detail)
            return Written(RolloutRecord.of(row), RolloutEventRecord.of(event), _wake_followers(s, row, now))

    def start_rollout_row(self, rollout_id: int, holder: str, *, now: datetime, changes: dict[str, Any],
                          message: str, release: bool = False) -> Written | None:
        """pending → applying, unless another rollout of the key is active (then ``None``)."""
        try:
            return self.rollout_transition(rollout_id, holder, now=now, changes=changes, message=message,
                                           release=release)
        except IntegrityError:
            return None

    def rollout_observation(self, rollout_id: int, holder: str, *, now: datetime, message: str,
                            detail: dict[str, Any] | None = None, changes: dict[str, Any] | None = None,
                            ok: bool | None = None, step: int | None = None, release: bool = False) -> Written:
        """Log what a health check saw (only when it differs from the last observation)."""
        with self._tx() as s:
            row = _fenced(s, rollout_id, holder)
            _apply(row, changes or {}, now, release)
            last = s.execute(select(RolloutEvent).where(RolloutEvent.rollout_id == rollout_id)
                             .order_by(RolloutEvent.id.desc()).limit(1)).scalar_one_or_none()
            event = None
            if last is None or (last.kind, last.message, last.step) != ("observation", message, step):
                event = RolloutEventRecord.of(_event(s, row, now, "observation", "health", step=step, ok=ok,
                                                     message=message, detail=detail))
            return Written(RolloutRecord.of(row), event)

    def set_rollout_check(self, rollout_id: int, holder: str, next_check_at: datetime | None, *,
                          release: bool = False) -> None:
        with self._tx() as s:
            row = _fenced(s, rollout_id, holder)
            row.next_check_at = next_check_at
            if release:
                row.lease_holder, row.lease_until = None, None

    # -- requests from outside the lease -----------------------------------------------------------
    def request_cancel(self, rollout_id: int, reason: str, *, now: datetime) -> bool:
        """Ask an unfinished rollout to stop at its next advance; True if it was unfinished."""
        with self._tx() as s:
            res = s.execute(update(Rollout).where(Rollout.id == rollout_id, Rollout.state.not_in(FINAL_STATES))
                            .values(cancel_reason=reason, next_check_at=now)
                            .execution_options(synchronize_session=False))
            return res.rowcount == 1

    # provided by Store
    def _tx(self) -> Any:  # pragma: no cover
        raise NotImplementedError


def bounded_key(key: str) -> str:
    """``key`` as stored: keys longer than the column are replaced by their SHA-256 (hex)."""
    return key if len(key) <= 255 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _by_key(s: Session, repo: str, idempotency_key: str) -> Rollout | None:
    key = bounded_key(idempotency_key)
    return s.execute(select(Rollout).where(Rollout.repo == repo, Rollout.idempotency_key == key)
                     ).scalar_one_or_none()


def _same_key(repo: str, model: str, environment: str) -> tuple[Any, ...]:
    return (Rollout.repo == repo, Rollout.model == model, Rollout.environment == environment)


def _fenced(s: Session, rollout_id: int, holder: str) -> Rollout:
    """The row, locked for this transaction, if ``holder`` still holds its lease; else :class:`LeaseLost`."""
    row = s.execute(select(Rollout).where(Rollout.id == rollout_id).with_for_update()).scalar_one_or_none()
    if row is None or row.lease_holder != holder:
        raise LeaseLost(f"rollout {rollout_id}: lease lost")
    return row


def _apply(row: Rollout, changes: dict[str, Any], now: datetime, release: bool = False) -> None:
    """Set ``changes`` on the row; a new state or step appends to ``transitions``; notes accumulate;
    ``release`` frees the lease."""
    changes = dict(changes)
    via = changes.pop("via", None)            # a state passed through in the same transaction (failed)
    if via:
        row.transitions = [*(row.transitions or []), {"state": via, "step": row.current_step, "at": now.isoformat()}]
    notes = changes.pop("add_notes", None)
    if notes:
        row.notes = [*(row.notes or []), *notes]
    moved = ("state" in changes and changes["state"] != row.state) or \
            ("current_step" in changes and changes["current_step"] != row.current_step)
    for key, value in changes.items():
        setattr(row, key, value)
    if moved:
        row.transitions = [*(row.transitions or []),
                           {"state": row.state, "step": row.current_step if row.state in ACTIVE_STATES else None,
                            "at": now.isoformat()}]
    if row.state in FINAL_STATES and row.finished_at is None:
        row.finished_at = now
        row.next_check_at = None
    if release:
        row.lease_holder, row.lease_until = None, None


def _event(s: Session, row: Rollout, now: datetime, kind: str, action: str, *, step: int | None = None,
           version: str | None = None, percent: int | None = None, ok: bool | None = None,
           intent_id: int | None = None, message: str = "", detail: dict[str, Any] | None = None) -> RolloutEvent:
    event = RolloutEvent(rollout_id=row.id, at=now, kind=kind, action=action, step=step, version=version,
                         percent=percent, ok=ok, state=row.state, intent_id=intent_id, message=message,
                         detail=dict(detail or {}))
    s.add(event)
    s.flush()
    return event


def _wake_followers(s: Session, row: Rollout, now: datetime) -> list[int]:
    """When ``row`` is final, pending rollouts waiting on it (queue or promotion order) are due now."""
    if row.state not in FINAL_STATES:
        return []
    waiting = and_(Rollout.state == "pending",
                   or_(Rollout.waits_for == row.id, Rollout.after_id == row.id,
                       and_(*_same_key(row.repo, row.model, row.environment), Rollout.id > row.id)))
    ids = list(s.execute(select(Rollout.id).where(waiting).order_by(Rollout.id)).scalars())
    if ids:
        s.execute(update(Rollout).where(Rollout.id.in_(ids)).values(next_check_at=now)
                  .execution_options(synchronize_session=False))
    return ids


__all__ = ["ACTIVE_STATES", "DECOMMISSION", "DEPLOY", "FINAL_STATES", "LeaseLost", "NewRollout", "Rollout", "RolloutEvent",
           "RolloutEventRecord", "RolloutRecord", "RolloutsRepo", "Written"]
