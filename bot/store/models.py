"""Tables of the store.  Each later feature (locks, rollouts, history, Slack threads, comment ids) adds
its models in its own module of this package and a new migration in ``modelherd/migrations/versions``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from modelherd.store.db import Base, JSONType, UTCDateTime
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

#: Integer primary keys: 64-bit on PostgreSQL, the rowid alias on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class EventState(StrEnum):
    """Life of a received event: queued → running → done | skipped | failed (running → queued on retry)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class Event(Base):
    """One webhook delivery (or any forge event), the source of truth for the work it causes."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    forge: Mapped[str] = mapped_column(String(16))
    delivery_id: Mapped[str] = mapped_column(String(128))
    event: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(64))
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    repo: Mapped[str | None] = mapped_column(String(255))
    headers: Mapped[dict[str, Any]] = mapped_column(JSONType)
    payload: Mapped[Any] = mapped_column(JSONType)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default=EventState.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("forge", "delivery_id"),
        Index("ix_events_state_lease_until", "state", "lease_until"),
        CheckConstraint("state IN ('queued', 'running', 'done', 'skipped', 'failed')", name="state"),
    )


class Effect(Base):
    """A side effect already performed (comment posted, check created…), keyed by an idempotency key."""

    __tablename__ = "effects"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_id: Mapped[int | None] = mapped_column(BigId)
    result: Mapped[Any] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
