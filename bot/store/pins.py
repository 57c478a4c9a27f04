"""Pinned environments: after ``/rollback``, a model/environment serves the version it was rolled back to
until the revert pull request that puts Git in line merges; drift detection leaves it alone meanwhile."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelherd.store.db import Base, UTCDateTime
from sqlalchemy import Integer, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column


class Pin(Base):
    __tablename__ = "pins"

    repo: Mapped[str] = mapped_column(String(255), primary_key=True)
    model: Mapped[str] = mapped_column(String(63), primary_key=True)
    environment: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(500))
    actor: Mapped[str] = mapped_column(String(255))
    revert_pr: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class PinRecord:
    repo: str
    model: str
    environment: str
    version: str
    reason: str
    actor: str
    revert_pr: int | None
    created_at: datetime


def _record(row: Pin) -> PinRecord:
    return PinRecord(row.repo, row.model, row.environment, row.version, row.reason, row.actor, row.revert_pr,
                     row.created_at)


class PinsRepo:
    """Pin operations of :class:`~modelherd.store.Store`."""

    def pin(self, repo: str, model: str, environment: str, *, version: str, reason: str, actor: str,
            revert_pr: int | None = None) -> None:
        with self._tx() as s:
            row = s.get(Pin, (repo, model, environment)) or Pin(repo=repo, model=model, environment=environment)
            row.version, row.reason, row.actor, row.revert_pr = version, reason[:500], actor, revert_pr
            row.created_at = self.now()
            s.merge(row)

    def set_revert_pr(self, repo: str, model: str, environment: str, revert_pr: int) -> None:
        with self._tx() as s:
            row = s.get(Pin, (repo, model, environment))
            if row is not None:
                row.revert_pr = revert_pr

    def pinned(self, repo: str, model: str, environment: str) -> PinRecord | None:
        with self._tx() as s:
            row = s.get(Pin, (repo, model, environment))
            return _record(row) if row else None

    def pins(self, repo: str | None = None) -> list[PinRecord]:
        with self._tx() as s:
            query = select(Pin).order_by(Pin.repo, Pin.model, Pin.environment)
            if repo:
                query = query.where(Pin.repo == repo)
            return [_record(r) for r in s.execute(query).scalars()]

    def unpin_revert(self, repo: str, revert_pr: int) -> list[PinRecord]:
        """The revert PR merged: Git says what serves again; drop its pins."""
        with self._tx() as s:
            rows = [_record(r) for r in s.execute(select(Pin).where(Pin.repo == repo, Pin.revert_pr == revert_pr)).scalars()]
            s.execute(delete(Pin).where(Pin.repo == repo, Pin.revert_pr == revert_pr))
            return rows

    def unpin(self, repo: str, model: str, environment: str) -> bool:
        with self._tx() as s:
            return s.execute(delete(Pin).where(Pin.repo == repo, Pin.model == model,
                                               Pin.environment == environment)).rowcount == 1

    # provided by Store
    def _tx(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def now(self) -> Any:  # pragma: no cover
        raise NotImplementedError
