"""The one place that reads the real clock.

Everything else in modelherd is *given* time: a ``now`` value, or a :data:`Clock` (a callable returning an
aware UTC datetime) passed in by the composition root, so tests can fix or move it and no code path
depends on today's date.  ``tests/test_clock_discipline.py`` fails when any other product module reads the
wall clock (``datetime.now``, ``time.time``, ``date.today``, ``time.monotonic``, ``time.sleep``…).

* :func:`utcnow` — the wall clock as an aware UTC datetime (the default :data:`Clock`);
* :func:`epoch` — the wall clock in seconds since the epoch (HTTP dates, rate-limit resets, JWTs);
* :func:`monotonic` / :func:`sleep` — durations, deadlines and waits that must not jump with the wall
  clock (timeouts, pacing, archive deadlines);
* :func:`rfc3339` / :func:`parse_rfc3339` — the one textual form of a time modelherd writes and reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

#: A source of the current time: an aware UTC datetime.
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The wall clock: now, as an aware UTC datetime."""
    return datetime.now(UTC)


def epoch() -> float:
    """The wall clock: seconds since the Unix epoch."""
    return time.time()


def monotonic() -> float:
    """A clock for durations and deadlines: seconds from an arbitrary start, never going back."""
    return time.monotonic()


def sleep(seconds: float) -> None:
    """Wait ``seconds`` of real time."""
    time.sleep(seconds)


def rfc3339(at: datetime) -> str:
    """``2026-11-27T09:00:00Z``: UTC, whole seconds (a naive datetime is taken as UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    """An aware UTC datetime from an RFC 3339 / ISO 8601 time (``Z`` or an offset; no zone = UTC).

    Raises :class:`ValueError` for anything else."""
    at = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(UTC)


__all__ = ["Clock", "epoch", "monotonic", "parse_rfc3339", "rfc3339", "sleep", "utcnow"]
