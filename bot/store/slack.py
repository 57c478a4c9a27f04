"""Slack in the store: one thread per pull request and channel, and the messages to send (an outbox).

- **Threads** (``slack_threads``): where a pull request's thread lives in a channel: the channel id
  Slack answered with, the ``ts`` of the thread (its first message, the summary), the summary state
  the messages were folded into, and the hash of the summary last sent (an update that changes
  nothing is skipped).
- **Messages** (``slack_messages``): every event to send, persisted *before* anything is sent, under
  the caller's idempotency key (one row per key and channel; a second notify of the same key is a
  no-op).  A row is ``pending`` until sent, then ``sent`` with the ``ts`` Slack returned, or ``failed``
  when Slack refused it for good.  Delivery is at-least-once: a worker killed between Slack's answer
  and :meth:`SlackRepo.slack_mark_sent` sends that one message again on the retry, and nothing else.

:class:`SlackRepo` is a mixin of the :class:`~modelherd.store.Store` (needs ``_tx()`` and ``now()``);
:class:`SlackStore` wraps a store whose class does not include it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from modelherd.store.db import Base, JSONType, UTCDateTime
from modelherd.store.models import BigId
from sqlalchemy import (
    CheckConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

PENDING, SENT, FAILED = "pending", "sent", "failed"


class SlackThread(Base):
    __tablename__ = "slack_threads"

    repo: Mapped[str] = mapped_column(String(255), primary_key=True)
    pr_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(100), primary_key=True)   # as routed (#name or id)
    channel_id: Mapped[str | None] = mapped_column(String(32))            # as Slack answered
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    summary_ts: Mapped[str | None] = mapped_column(String(32))
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType)
    summary_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SlackMessage(Base):
    __tablename__ = "slack_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(400))
    repo: Mapped[str] = mapped_column(String(255))
    pr_number: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    state: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ts: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("key"),
        Index("ix_slack_messages_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_slack_messages_repo_pr_number_channel", "repo", "pr_number", "channel"),
        CheckConstraint("state IN ('pending', 'sent', 'failed')", name="state"),
    )


@dataclass(frozen=True)
class ThreadRecord:
    repo: str
    pr_number: int
    channel: str
    channel_id: str | None
    thread_ts: str | None
    summary_ts: str | None
    summary: dict[str, Any]
    summary_hash: str | None

    @classmethod
    def of(cls, row: SlackThread) -> ThreadRecord:
        return cls(row.repo, row.pr_number, row.channel, row.channel_id, row.thread_ts, row.summary_ts,
                   dict(row.summary or {}), row.summary_hash)


@dataclass(frozen=True)
class OutboxRecord:
    id: int
    key: str
    repo: str
    pr_number: int | None
    channel: str
    payload: dict[str, Any]
    state: str
    attempts: int
    next_attempt_at: datetime
    ts: str | None
    error: str | None

    @classmethod
    def of(cls, row: SlackMessage) -> OutboxRecord:
        return cls(row.id, row.key, row.repo, row.pr_number, row.channel, dict(row.payload or {}), row.state,
                   row.attempts, row.next_attempt_at, row.ts, row.error)


#: A delivery group: the messages of one thread (or of one channel, without a pull request).
Group = tuple[str, int | None, str]


def _same_group(repo: str, pr_number: int | None, channel: str) -> Any:
    pr = SlackMessage.pr_number.is_(None) if pr_number is None else SlackMessage.pr_number == pr_number
    return and_(SlackMessage.repo == repo, pr, SlackMessage.channel == channel)


class SlackRepo:
    """Slack operations of :class:`~modelherd.store.Store` (needs ``_tx()`` and ``now()``)."""

    # -- the outbox ----------------------------------------------------------------------------------
    def slack_enqueue(self, key: str, *, repo: str, pr_number: int | None, channel: str,
                      payload: dict[str, Any]) -> int | None:
        """Persist a message to send; its id, or ``None`` when ``key`` was enqueued before."""
        now = self.now()
        try:
            with self._tx() as s:
                row = SlackMessage(key=key, repo=repo, pr_number=pr_number, channel=channel, payload=payload,
                                   state=PENDING, attempts=0, next_attempt_at=now, created_at=now)
                s.add(row)
                s.flush()
                return row.id
        except IntegrityError:
            return None

    def slack_message(self, key: str) -> OutboxRecord | None:
        with self._tx() as s:
            row = s.execute(select(SlackMessage).where(SlackMessage.key == key)).scalar_one_or_none()
            return OutboxRecord.of(row) if row else None

    def slack_pending(self, repo: str, pr_number: int | None, channel: str) -> list[OutboxRecord]:
        """The group's unsent messages, in the order they were notified."""
        with self._tx() as s:
            rows = s.execute(select(SlackMessage).where(_same_group(repo, pr_number, channel),
                                                        SlackMessage.state == PENDING)
                             .order_by(SlackMessage.id)).scalars()
            return [OutboxRecord.of(r) for r in rows]

    def slack_messages(self, repo: str | None = None) -> list[OutboxRecord]:
        """Every message (of ``repo``), oldest first (for tools and tests)."""
        with self._tx() as s:
            query = select(SlackMessage).order_by(SlackMessage.id)
            if repo:
                query = query.where(SlackMessage.repo == repo)
            return [OutboxRecord.of(r) for r in s.execute(query).scalars()]

    def slack_mark_sent(self, message_id: int, ts: str, *, thread: ThreadRecord | None = None,
                        summary: dict[str, Any] | None = None) -> None:
        """Record that the message was sent as ``ts``; with ``thread``, save the folded summary with it."""
        with self._tx() as s:
            s.execute(update(SlackMessage).where(SlackMessage.id == message_id)
                      .values(state=SENT, ts=ts, sent_at=self.now(), error=None))
            if thread is not None and summary is not None:
                s.execute(update(SlackThread).where(*_thread_key(thread.repo, thread.pr_number, thread.channel))
                          .values(summary=summary, updated_at=self.now()))

    def slack_mark_failed(self, message_id: int, error: str) -> None:
        """Slack refused the message for good (unknown channel, invalid blocks…): never send it."""
        with self._tx() as s:
            s.execute(update(SlackMessage).where(SlackMessage.id == message_id)
                      .values(state=FAILED, error=error[:2000]))

    def slack_postpone(self, group: Group, *, delay: float, error: str) -> int:
        """Count a failed attempt on the group's pending messages and hold them ``delay`` seconds; the
        highest attempt count now."""
        repo, pr_number, channel = group
        with self._tx() as s:
            s.execute(update(SlackMessage).where(_same_group(repo, pr_number, channel),
                                                 SlackMessage.state == PENDING)
                      .values(attempts=SlackMessage.attempts + 1, error=error[:2000],
                              next_attempt_at=self.now() + timedelta(seconds=delay)))
            return s.execute(select(func.max(SlackMessage.attempts)).where(
                _same_group(repo, pr_number, channel), SlackMessage.state == PENDING)).scalar() or 0

    def slack_expire(self, group: Group, *, older_than: datetime, error: str) -> int:
        """Give up on the group's pending messages created before ``older_than``; how many."""
        repo, pr_number, channel = group
        with self._tx() as s:
            return s.execute(update(SlackMessage).where(
                _same_group(repo, pr_number, channel), SlackMessage.state == PENDING,
                SlackMessage.created_at < older_than).values(state=FAILED, error=error[:2000])).rowcount

    def slack_due_groups(self, now: datetime | None = None) -> list[Group]:
        """Groups with pending messages due by ``now`` (the sweep enqueues them)."""
        now = now or self.now()
        with self._tx() as s:
            rows = s.execute(select(SlackMessage.repo, SlackMessage.pr_number, SlackMessage.channel)
                             .where(SlackMessage.state == PENDING, SlackMessage.next_attempt_at <= now)
                             .group_by(SlackMessage.repo, SlackMessage.pr_number, SlackMessage.channel)
                             .order_by(func.min(SlackMessage.id)))
            return [(r.repo, r.pr_number, r.channel) for r in rows]

    def slack_last_ts(self, group: Group) -> str | None:
        """The ``ts`` of the group's newest message recorded as sent (what an unknown one comes after)."""
        with self._tx() as s:
            return s.execute(select(SlackMessage.ts).where(_same_group(*group), SlackMessage.state == SENT,
                                                           SlackMessage.ts.is_not(None))
                             .order_by(SlackMessage.id.desc()).limit(1)).scalar_one_or_none()

    def slack_channel_id(self, channel: str) -> str | None:
        """The id Slack answered for ``channel`` (as routed) in a thread opened there, if any."""
        with self._tx() as s:
            return s.execute(select(SlackThread.channel_id).where(SlackThread.channel == channel,
                                                                  SlackThread.channel_id.is_not(None))
                             .limit(1)).scalar_one_or_none()

    # -- threads -------------------------------------------------------------------------------------
    def slack_thread(self, repo: str, pr_number: int, channel: str) -> ThreadRecord | None:
        with self._tx() as s:
            row = s.get(SlackThread, (repo, pr_number, channel))
            return ThreadRecord.of(row) if row else None

    def slack_save_thread(self, repo: str, pr_number: int, channel: str, *, summary: dict[str, Any],
                          channel_id: str | None = None, thread_ts: str | None = None,
                          summary_hash: str | None = None) -> ThreadRecord:
        """Create or update the thread; ``None`` arguments keep what is stored."""
        now = self.now()
        with self._tx() as s:
            row = s.get(SlackThread, (repo, pr_number, channel))
            if row is None:
                row = SlackThread(repo=repo, pr_number=pr_number, channel=channel, summary=summary,
                                  created_at=now, updated_at=now)
                s.add(row)
            row.summary, row.updated_at = summary, now
            if channel_id is not None:
                row.channel_id = channel_id
            if thread_ts is not None:
                row.thread_ts = row.summary_ts = thread_ts
            if summary_hash is not None:
                row.summary_hash = summary_hash
            s.flush()
            return ThreadRecord.of(row)

    def slack_threads(self, repo: str | None = None) -> list[ThreadRecord]:
        with self._tx() as s:
            query = select(SlackThread).order_by(SlackThread.repo, SlackThread.pr_number, SlackThread.channel)
            if repo:
                query = query.where(SlackThread.repo == repo)
            return [ThreadRecord.of(r) for r in s.execute(query).scalars()]

    # provided by Store
    def _tx(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def now(self) -> Any:  # pragma: no cover
        raise NotImplementedError


def _thread_key(repo: str, pr_number: int, channel: str) -> tuple[Any, ...]:
    return (SlackThread.repo == repo, SlackThread.pr_number == pr_number, SlackThread.channel == channel)


class SlackStore(SlackRepo):
    """:class:`SlackRepo` over a :class:`~modelherd.store.Store` that does not mix it in."""

    def __init__(self, store: Any):
        self.store = store

    def _tx(self) -> Any:
        return self.store._tx()

    def now(self) -> datetime:
        return self.store.now()

    def mutex(self, key: str, **kwargs: Any) -> Any:
        return self.store.mutex(key, **kwargs)

    def once(self, key: str) -> bool:
        return self.store.once(key)


def slack_repo(store: Any) -> SlackRepo:
    """``store`` itself when its class mixes in :class:`SlackRepo`, else a :class:`SlackStore` over it."""
    return store if isinstance(store, SlackRepo) else SlackStore(store)


__all__ = ["FAILED", "PENDING", "SENT", "Group", "OutboxRecord", "SlackMessage", "SlackRepo", "SlackStore",
           "SlackThread", "ThreadRecord", "slack_repo"]
