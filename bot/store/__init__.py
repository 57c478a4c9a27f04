"""The store: SQLAlchemy 2.x tables with Alembic migrations, SQLite by default, PostgreSQL when configured.

``Store`` is the one object jobs and handlers receive; its methods are small transactions::

    store = Store.from_url("sqlite:///modelherd.db"); store.upgrade()
    event_id = store.record_event(NewEvent(...))        # None for a duplicate delivery
    claim = store.claim(event_id, lease_seconds=300)     # None unless this worker won
    store.finish(claim) / store.fail(claim, "boom", max_attempts=5)
    store.reclaim_expired(max_attempts=5)                # ids to enqueue again
    store.once("comment:owner/repo#7:abc123")            # at-most-once effect reservation
    store.commit_once("deploy:…", lambda: ...)           # store writes and their record, in one transaction
    with store.atomic(): ...                             # several calls, one transaction (no network inside)
    with store.mutex("pr:owner/repo#7"): ...             # serialise work on one thing across workers
    store.take_lock(repo, model, env, pr_number=7, ...)  # model/environment locks held by a PR
    store.create_rollout(NewRollout(...), now=...)       # rollouts and their event log (modelherd.rollout)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from modelherd.clock import Clock, utcnow
from modelherd.store.db import Base, make_engine
from modelherd.store.effects import EffectsRepo
from modelherd.store.events import (
    DEFAULT_QUEUE_LEASE,
    Claim,
    EventRecord,
    EventsRepo,
    NewEvent,
)
from modelherd.store.locks import Busy, LockInfo, LocksRepo
from modelherd.store.models import Effect, Event, EventState
from modelherd.store.pins import PinRecord, PinsRepo
from modelherd.store.pulls import PullRecord, PullsRepo
from modelherd.store.rollouts import (
    LeaseLost,
    NewRollout,
    RolloutEventRecord,
    RolloutRecord,
    RolloutsRepo,
)
from modelherd.store.slack import SlackRepo
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker


class Store(EventsRepo, EffectsRepo, LocksRepo, RolloutsRepo, PullsRepo, PinsRepo, SlackRepo):
    """Repository over one engine.  Thread-safe: each call opens its own short session."""

    def __init__(self, engine: Engine, *, clock: Clock = utcnow):
        self.engine = engine
        self.clock = clock
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._atomic = threading.local()       # the session of the atomic block this thread is in

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = utcnow, **engine_kwargs: Any) -> Store:
        return cls(make_engine(url, **engine_kwargs), clock=clock)

    def now(self) -> datetime:
        return self.clock()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        shared = getattr(self._atomic, "session", None)
        if shared is not None:                  # inside atomic(): the block's transaction
            yield shared
            return
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Make every store call of this thread inside the block one transaction: all of their writes
        commit together when the block ends, or none does when it raises.

        Store calls only: no network, no :meth:`mutex` inside (on SQLite the transaction holds the
        write lock from its start). Nested blocks join the outer one."""
        if getattr(self._atomic, "session", None) is not None:
            yield
            return
        with self._sessions.begin() as session:
            self._atomic.session = session
            try:
                yield
            finally:
                self._atomic.session = None

    def _conn(self) -> Any:
        """A Core connection in a transaction (hot paths that need no ORM)."""
        return self.engine.begin()

    def upgrade(self, revision: str = "head") -> None:
        """Apply the Alembic migrations up to ``revision`` (safe to call from several processes)."""
        from modelherd.store.migrate import upgrade
        upgrade(self.engine, revision)

    def ping(self) -> None:
        """Raise unless the database answers (used by ``/readyz``)."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close pooled connections (before a fork, at shutdown)."""
        self.engine.dispose()

    @property
    def backend(self) -> str:
        return self.engine.dialect.name


__all__ = ["Base", "Busy", "Claim", "LockInfo", "PinRecord", "PullRecord", "DEFAULT_QUEUE_LEASE", "Effect", "Event", "EventRecord", "EventState",
           "LeaseLost", "NewEvent", "NewRollout", "RolloutEventRecord", "RolloutRecord", "Store"]
