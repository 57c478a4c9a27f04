"""A settable clock for tests: the store, the rollout engine and the notifier read it instead of the
wall clock, so leases, waits and backoff cost no real time.

``FIXED`` is where test clocks start: the start of the current hour, **thirty days before** the real
clock (``modelherd.clock.utcnow``, which ``--clock-shift`` moves for the whole run; see
``tests/timeshift.py``).  It is computed once per run, so it can never be overtaken by the real date, and
it lies deliberately in the past: a product path that stamps the wall clock where it was given a test
clock puts its timestamp a month into that test's future, and the test fails at once instead of on
some later date.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from modelherd.clock import utcnow

BEHIND_REAL_TIME = timedelta(days=30)


def _fixed() -> datetime:
    return utcnow().replace(minute=0, second=0, microsecond=0) - BEHIND_REAL_TIME


FIXED = _fixed()


class Clock:
    """Starts at ``now`` (default: the real time) and moves only by :meth:`advance` (thread-safe)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or utcnow()
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)
