"""Locks in the store, safe across workers and machines.

- **Mutexes** (:meth:`LocksRepo.mutex`): short leases that serialise work on one thing, e.g. two
  events of the same pull request handled by two workers — the second waits, then reads the PR fresh
  and plans its newest head.  A lease expires by itself, so a killed worker does not block anyone.
- **Model locks** (:meth:`LocksRepo.take_lock`): as Atlantis locks projects, a pull request that plans
  a change to a model in an environment holds that model/environment until it is merged, closed or
  unlocked; another pull request touching the same one is told "locked by #N".
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from modelherd.clock import monotonic, sleep
from modelherd.store.db import Base, UTCDateTime
from sqlalchemy import Integer, String, and_, delete, select, update
from sqlalchemy.orm import Mapped, mapped_column


class Mutex(Base):
    __tablename__ = "mutexes"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ModelLock(Base):
    __tablename__ = "model_locks"

    repo: Mapped[str] = mapped_column(String(255), primary_key=True)
    model: Mapped[str] = mapped_column(String(63), primary_key=True)
    environment: Mapped[str] = mapped_column(String(63), primary_key=True)
    pr_number: Mapped[int] = mapped_column(Integer)
    head_sha: Mapped[str] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Busy(Exception):
    """The mutex is held by another worker; the job is retried later."""


@dataclass(frozen=True)
class LockInfo:
    repo: str
    model: str
    environment: str
    pr_number: int
    head_sha: str
    author: str
    created_at: datetime

    @classmethod
    def of(cls, row: ModelLock) -> LockInfo:
        return cls(row.repo, row.model, row.environment, row.pr_number, row.head_sha, row.author, row.created_at)


def _insert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


class LocksRepo:
    """Lock operations of :class:`~modelherd.store.Store` (needs ``_tx()`` and ``now()``)."""

    # -- mutexes -----------------------------------------------------------------------------------
    def try_mutex(self, key: str, holder: str, ttl: float) -> bool:
        """Take ``key`` for ``ttl`` seconds unless someone else holds an unexpired lease."""
        now = self.now()
        with self._tx() as s:
            insert = _insert(s.get_bind().dialect.name)
            stmt = insert(Mutex).values(key=key, holder=holder, expires_at=now + timedelta(seconds=ttl))
            stmt = stmt.on_conflict_do_update(
                index_elements=["key"], set_={"holder": holder, "expires_at": stmt.excluded.expires_at},
                where=(Mutex.expires_at < now) | (Mutex.holder == holder))
            return s.execute(stmt.returning(Mutex.key)).first() is not None

    def release_mutex(self, key: str, holder: str) -> None:
        with self._tx() as s:
            s.execute(delete(Mutex).where(and_(Mutex.key == key, Mutex.holder == holder)))

    @contextmanager
    def mutex(self, key: str, *, ttl: float = 300.0, wait: float = 30.0, poll: float = 0.2) -> Iterator[None]:
        """Hold ``key`` for the block; wait up to ``wait`` seconds for it, then raise :class:`Busy`."""
        holder = uuid.uuid4().hex
        deadline = monotonic() + wait
        while not self.try_mutex(key, holder, ttl):
            if monotonic() >= deadline:
                raise Busy(f"{key} is busy in another worker")
            sleep(poll)
        try:
            yield
        finally:
            self.release_mutex(key, holder)

    # -- model locks -------------------------------------------------------------------------------
    def take_lock(self, repo: str, model: str, environment: str, *, pr_number: int, head_sha: str,
                  author: str) -> LockInfo:
        """Lock model/environment for the PR unless another PR holds it; returns the holder's lock."""
        with self._tx() as s:
            insert = _insert(s.get_bind().dialect.name)
            s.execute(insert(ModelLock).values(repo=repo, model=model, environment=environment,
                                               pr_number=pr_number, head_sha=head_sha, author=author,
                                               created_at=self.now())
                      .on_conflict_do_nothing(index_elements=["repo", "model", "environment"]))
            s.execute(update(ModelLock)
                      .where(ModelLock.repo == repo, ModelLock.model == model,
                             ModelLock.environment == environment, ModelLock.pr_number == pr_number)
                      .values(head_sha=head_sha))
            row = s.get(ModelLock, (repo, model, environment))
            return LockInfo.of(row)

    def release_locks(self, repo: str, pr_number: int, environment: str | None = None) -> list[LockInfo]:
        """Drop the PR's locks (in one environment, or all); returns what was released."""
        with self._tx() as s:
            query = select(ModelLock).where(ModelLock.repo == repo, ModelLock.pr_number == pr_number)
            if environment:
                query = query.where(ModelLock.environment == environment)
            rows = [LockInfo.of(r) for r in s.execute(query).scalars()]
            for lock in rows:
                s.execute(delete(ModelLock).where(ModelLock.repo == repo, ModelLock.model == lock.model,
                                                  ModelLock.environment == lock.environment,
                                                  ModelLock.pr_number == pr_number))
            return rows

    def release_lock(self, repo: str, model: str, environment: str, pr_number: int) -> bool:
        """Drop one lock if this PR holds it."""
        with self._tx() as s:
            return s.execute(delete(ModelLock).where(
                ModelLock.repo == repo, ModelLock.model == model, ModelLock.environment == environment,
                ModelLock.pr_number == pr_number)).rowcount == 1

    def locks(self, repo: str | None = None) -> list[LockInfo]:
        with self._tx() as s:
            query = select(ModelLock).order_by(ModelLock.repo, ModelLock.model, ModelLock.environment)
            if repo:
                query = query.where(ModelLock.repo == repo)
            return [LockInfo.of(r) for r in s.execute(query).scalars()]

    # provided by Store
    def _tx(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def now(self) -> Any:  # pragma: no cover
        raise NotImplementedError
