"""What modelherd last published for each pull request: the planned head and base, the checks' verdicts,
and the plan comment's body (so rollout progress can be added to it without planning again).

``/deploy`` reads it to act on the exact commit that was planned and approved: if the head moved since,
the command is refused and ``/plan`` asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelherd.store.db import Base, UTCDateTime
from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column


class PullState(Base):
    __tablename__ = "pull_requests"

    repo: Mapped[str] = mapped_column(String(255), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    head_sha: Mapped[str] = mapped_column(String(64))
    base_sha: Mapped[str] = mapped_column(String(64))
    plan_conclusion: Mapped[str] = mapped_column(String(16))
    approvals_status: Mapped[str] = mapped_column(String(16))
    comment_body: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class PullRecord:
    repo: str
    number: int
    head_sha: str
    base_sha: str
    plan_conclusion: str
    approvals_status: str
    comment_body: str
    updated_at: datetime


class PullsRepo:
    """Pull-request state operations of :class:`~modelherd.store.Store`."""

    def save_pull(self, repo: str, number: int, *, head_sha: str, base_sha: str, plan_conclusion: str,
                  approvals_status: str, comment_body: str) -> None:
        """Record what was just published for the PR (replacing the previous record)."""
        with self._tx() as s:
            row = s.get(PullState, (repo, number))
            if row is None:
                row = PullState(repo=repo, number=number)
                s.add(row)
            row.head_sha, row.base_sha = head_sha, base_sha
            row.plan_conclusion, row.approvals_status = plan_conclusion, approvals_status
            row.comment_body, row.updated_at = comment_body, self.now()

    def pull(self, repo: str, number: int) -> PullRecord | None:
        with self._tx() as s:
            row = s.get(PullState, (repo, number))
            if row is None:
                return None
            return PullRecord(row.repo, row.number, row.head_sha, row.base_sha, row.plan_conclusion,
                              row.approvals_status, row.comment_body, row.updated_at)

    # provided by Store
    def _tx(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def now(self) -> Any:  # pragma: no cover
        raise NotImplementedError
