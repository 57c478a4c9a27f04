"""A settable clock for tests: the store, the rollout engine and the notifier read it instead of the
wall clock, so leases, waits and backoff cost no real time."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

FIXED = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


class Clock:
    """Starts at ``now`` (default: the real time) and moves only by :meth:`advance` (thread-safe)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)
