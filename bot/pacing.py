"""Politeness towards a forge's API, shared by every worker: one pace per installation.

GitHub asks integrators to send requests serially and to leave about a second between mutating
requests; PyGithub's own throttle (0.25 s / 1 s) lives in one ``Github`` object, so two worker
processes acting for the same installation would each keep their own pace and together break it.
A :class:`Pacer` keeps the pace where every worker sees it:

* :class:`RedisPacer` — one Redis key per installation and lane holding the next free slot, moved by
  an atomic Lua script on Redis's own clock (workers on several machines agree without synchronised
  clocks);
* :class:`SqlPacer` — the same slot in a row of ``api_pacing``, moved by one atomic
  ``UPDATE … SET next_at = max(next_at, now) + interval … RETURNING`` on the database's clock (SQLite
  for the embedded setup, PostgreSQL when several machines share it);
* :class:`LocalPacer` — in-process, for tests and single-process use.

A key (e.g. ``"api.github.com/123"``) has two lanes: writes (``write_interval``, default 1 s apart)
and reads (``read_interval``, default 0: reads are not spaced — see :class:`PacingPolicy`). When the
forge says "slow down" (a secondary rate limit, an exhausted budget) :meth:`Pacer.hold` pushes both
lanes of the key forward, so every worker of that installation waits, not only the one that was told.

:class:`RateLimited` is what a caller raises instead of sleeping for long: the job fails now and the
queue runs it again at :attr:`RateLimited.retry_at`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa
from modelherd.clock import epoch, monotonic, sleep
from modelherd.forges.base import SourceError
from modelherd.store.db import Base
from sqlalchemy.engine import Engine

WRITE, READ = "w", "r"


class RateLimited(SourceError):
    """The forge asked us to wait longer than a job should sleep; run the job again at ``retry_at``."""

    def __init__(self, retry_at: float, reason: str):
        super().__init__(f"{reason}; retry after {datetime.fromtimestamp(retry_at, UTC).strftime('%H:%M:%S')} UTC "
                         f"(in {max(0.0, retry_at - epoch()):.0f} s)")
        self.retry_at = retry_at          # epoch seconds
        self.reason = reason

    @property
    def retry_in(self) -> float:
        """Seconds from now until the forge will answer again."""
        return max(0.0, self.retry_at - epoch())


@dataclass(frozen=True)
class PacingPolicy:
    """How far apart requests of one installation start.

    ``write_interval``: GitHub's "about a second between mutating requests". ``read_interval`` is 0
    by default: reads are cheap for GitHub, the primary rate limit already budgets them, and a plan
    for 50 manifests reads ~100 files, so spacing reads would put seconds between a webhook and its
    comment; holds (secondary rate limits) still stop reads too.
    """

    write_interval: float = 1.0
    read_interval: float = 0.0

    def interval(self, lane: str) -> float:
        return self.write_interval if lane == WRITE else self.read_interval


class Pacer(Protocol):
    def acquire(self, key: str, *, write: bool) -> float | None:
        """Block until the caller may send its request for ``key`` (an installation)."""
        ...

    def hold(self, key: str, seconds: float) -> None:
        """Let no request for ``key`` start within ``seconds`` from now (any worker, either lane)."""
        ...


class _SlotPacer:
    """The blocking part every pacer shares: ask the backend how long to wait, then sleep that long."""

    def __init__(self, policy: PacingPolicy | None = None, *, sleep: Callable[[float], None] = sleep):
        self.policy = policy or PacingPolicy()
        self._sleep = sleep
        self.waited = 0.0           # seconds this process spent waiting (for tests and metrics)

    def acquire(self, key: str, *, write: bool) -> float | None:
        """Wait for ``key``'s next slot in its lane; when the lane is spaced, the slot's start on the
        pacer's clock (the backend's: consecutive slots of a key are ``interval`` apart on it)."""
        lane = WRITE if write else READ
        interval = self.policy.interval(lane)
        start: float | None = None
        if interval > 0:
            start, wait = self._reserve(key, lane, interval)
        else:
            wait = self._peek(key, lane)
        if wait > 0:
            self.waited += wait
            self._sleep(wait)
        return start

    def hold(self, key: str, seconds: float) -> None:
        if seconds > 0:
            self._hold(key, seconds)

    def _reserve(self, key: str, lane: str, interval: float) -> tuple[float, float]:
        """Take the next slot of ``key``/``lane`` (moving it ``interval`` on): its start on the backend's
        clock, and the seconds until then."""
        raise NotImplementedError

    def _peek(self, key: str, lane: str) -> float:
        """Seconds until ``key``/``lane`` is free, without taking a slot (lanes without spacing)."""
        raise NotImplementedError

    def _hold(self, key: str, seconds: float) -> None:
        raise NotImplementedError


class LocalPacer(_SlotPacer):
    """Slots in a dict of this process (threads share it); for tests and single-process setups."""

    def __init__(self, policy: PacingPolicy | None = None, *, sleep: Callable[[float], None] = sleep,
                 clock: Callable[[], float] = monotonic):
        super().__init__(policy, sleep=sleep)
        self._clock = clock
        self._next: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def _reserve(self, key: str, lane: str, interval: float) -> tuple[float, float]:
        with self._lock:
            now = self._clock()
            start = max(self._next.get((key, lane), 0.0), now)
            self._next[(key, lane)] = start + interval
            return start, start - now

    def _peek(self, key: str, lane: str) -> float:
        with self._lock:
            return max(0.0, self._next.get((key, lane), 0.0) - self._clock())

    def _hold(self, key: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            for lane in (WRITE, READ):
                self._next[(key, lane)] = max(self._next.get((key, lane), 0.0), until)


# -- Redis --------------------------------------------------------------------------------------------

_NOW_LUA = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000 "
_KEEP_LUA = ("local function keep(k, nxt) redis.call('SET', k, string.format('%.6f', nxt), 'PX', "
             "math.ceil((nxt - now) * 1000) + 60000) end ")
_RESERVE_LUA = _NOW_LUA + _KEEP_LUA + """
local start = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
keep(KEYS[1], start + tonumber(ARGV[1]))
return {string.format('%.6f', start), string.format('%.6f', start - now)}
"""
_PEEK_LUA = _NOW_LUA + """
return string.format('%.6f', math.max(0, tonumber(redis.call('GET', KEYS[1]) or '0') - now))
"""
_HOLD_LUA = _NOW_LUA + _KEEP_LUA + """
for _, k in ipairs(KEYS) do keep(k, math.max(tonumber(redis.call('GET', k) or '0'), now + tonumber(ARGV[1]))) end
return 'ok'
"""


class RedisPacer(_SlotPacer):
    """Slots in Redis keys ``<prefix><key>:<lane>``, moved atomically by Lua on Redis's clock."""

    def __init__(self, client, policy: PacingPolicy | None = None, *, prefix: str = "modelherd:pace:",
                 sleep: Callable[[float], None] = sleep):
        super().__init__(policy, sleep=sleep)
        self.client, self.prefix = client, prefix
        self._reserve_script = client.register_script(_RESERVE_LUA)
        self._peek_script = client.register_script(_PEEK_LUA)
        self._hold_script = client.register_script(_HOLD_LUA)

    @classmethod
    def from_url(cls, url: str, policy: PacingPolicy | None = None, **kwargs) -> "RedisPacer":
        """A pacer on the Redis at ``url`` (``redis://HOST:PORT/DB``)."""
        import redis

        return cls(redis.Redis.from_url(url), policy, **kwargs)

    def _name(self, key: str, lane: str) -> str:
        return f"{self.prefix}{key}:{lane}"

    def _reserve(self, key: str, lane: str, interval: float) -> tuple[float, float]:
        start, wait = self._reserve_script(keys=[self._name(key, lane)], args=[repr(interval)])
        return float(start), float(wait)

    def _peek(self, key: str, lane: str) -> float:
        return float(self._peek_script(keys=[self._name(key, lane)]))

    def _hold(self, key: str, seconds: float) -> None:
        self._hold_script(keys=[self._name(key, WRITE), self._name(key, READ)], args=[repr(seconds)])


# -- SQL ----------------------------------------------------------------------------------------------

#: One row per installation key and lane: when its next request may start (epoch seconds, DB clock).
api_pacing = sa.Table(
    "api_pacing", Base.metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("lane", sa.String(1), primary_key=True),
    sa.Column("next_at", sa.Float(precision=53), nullable=False),
)

_SQL_NOW = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgresql": "EXTRACT(EPOCH FROM statement_timestamp())::float8",
}
_SQL_MAX = {"sqlite": "max", "postgresql": "GREATEST"}


class SqlPacer(_SlotPacer):
    """Slots in the ``api_pacing`` table (created by the store's migrations), on the database's clock.

    Every reservation is one ``UPDATE … RETURNING`` (plus an ``INSERT … ON CONFLICT DO NOTHING`` the
    first time a key is seen), atomic on SQLite (``BEGIN IMMEDIATE``) and PostgreSQL (row lock).
    """

    def __init__(self, engine: Engine, policy: PacingPolicy | None = None, *,
                 sleep: Callable[[float], None] = sleep):
        super().__init__(policy, sleep=sleep)
        dialect = engine.dialect.name
        if dialect not in _SQL_NOW:
            raise ValueError(f"SqlPacer supports SQLite and PostgreSQL, not {dialect}")
        self.engine = engine
        now, greatest = _SQL_NOW[dialect], _SQL_MAX[dialect]
        self._insert = sa.text("INSERT INTO api_pacing (key, lane, next_at) VALUES (:key, :lane, 0) "
                               "ON CONFLICT DO NOTHING")
        self._update = sa.text(f"UPDATE api_pacing SET next_at = {greatest}(next_at, {now}) + :interval "
                               f"WHERE key = :key AND lane = :lane RETURNING next_at - :interval, next_at - :interval - {now}")
        self._select = sa.text(f"SELECT next_at - {now} FROM api_pacing WHERE key = :key AND lane = :lane")
        self._bump = sa.text(f"UPDATE api_pacing SET next_at = {greatest}(next_at, {now} + :seconds) "
                             f"WHERE key = :key")

    @classmethod
    def from_url(cls, url: str, policy: PacingPolicy | None = None, **kwargs) -> "SqlPacer":
        """A pacer on the store's database (``sqlite:///…`` or ``postgresql://…``)."""
        from modelherd.store.db import make_engine

        return cls(make_engine(url), policy, **kwargs)

    def _reserve(self, key: str, lane: str, interval: float) -> tuple[float, float]:
        params = {"key": key, "lane": lane, "interval": interval}
        with self.engine.begin() as conn:
            slot = conn.execute(self._update, params).one_or_none()
            if slot is None:
                conn.execute(self._insert, params)
                slot = conn.execute(self._update, params).one()
        return float(slot[0]), float(slot[1])

    def _peek(self, key: str, lane: str) -> float:
        with self.engine.connect() as conn:
            wait = conn.execute(self._select, {"key": key, "lane": lane}).scalar()
        return max(0.0, float(wait or 0.0))

    def _hold(self, key: str, seconds: float) -> None:
        with self.engine.begin() as conn:
            for lane in (WRITE, READ):
                conn.execute(self._insert, {"key": key, "lane": lane})
            conn.execute(self._bump, {"key": key, "seconds": seconds})


def pacer_from_url(url: str, policy: PacingPolicy | None = None, **kwargs) -> _SlotPacer:
    """The pacer for a deployment: Redis for ``redis://`` URLs, the database otherwise."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisPacer.from_url(url, policy, **kwargs)
    return SqlPacer.from_url(url, policy, **kwargs)


__all__ = ["LocalPacer", "Pacer", "PacingPolicy", "RateLimited", "RedisPacer", "SqlPacer", "api_pacing",
           "pacer_from_url"]
