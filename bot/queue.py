"""The job queue: huey carrying event ids, with an embedded SQLite default and Redis for scale-out.

Huey does not acknowledge messages, so the queue is never the source of truth: the event row is
(:mod:`modelherd.store`).  A message lost with a dying worker is recovered by the reclaim sweep,
which runs as a huey periodic task every minute and once when a worker starts.

``queue_url`` forms: ``sqlite:///path/queue.db`` (embedded, one machine), ``redis://host:6379/0``
(``rediss://``, ``unix://`` too; several processes and machines), ``memory://`` (one process, tests).
The queue name prefixes every key or row (Redis: ``huey.redis.<name>`` …), so one Redis can hold
several deployments and test runs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer
from huey.storage import SqliteStorage

log = logging.getLogger(__name__)

RUN_EVENT_TASK = "modelherd.run_event"
RUN_ROLLOUT_TASK = "modelherd.run_rollout"
RUN_PROGRESS_TASK = "modelherd.publish_progress"
SWEEP_TASK = "modelherd.sweep"
#: The longest an idle worker waits between two looks at a polled queue (SQLite).  huey backs off
#: up to 10 s by default, so a webhook after a quiet minute waited that long before its plan began;
#: a look at an empty SQLite queue costs tens of microseconds.  Redis blocks on the list instead.
POLL_MAX_SECONDS = 1.0

EventRunner = Callable[[int], Any]
RolloutRunner = Callable[[int], Any]
Sweeper = Callable[[], Any]


class QueueNotBound(RuntimeError):
    """A job reached a process that has no worker wired (run ``modelherd worker``)."""


class JobQueue:
    """Enqueue event ids (web side) and run them (worker side, after :meth:`bind`)."""

    def __init__(self, huey: Huey, *, sweep_schedule: Callable[..., bool] | None = None):
        self.huey = huey
        self._runner: EventRunner | None = None
        self._sweeper: Sweeper | None = None
        self._rollout_runner: RolloutRunner | None = None
        self._rollout_sweeper: Sweeper | None = None
        self._progress_runner: RolloutRunner | None = None
        self._progress_sweeper: Sweeper | None = None
        self._extra_sweepers: list[Sweeper] = []
        self._run_event = huey.task(name=RUN_EVENT_TASK)(self._execute)
        self._run_rollout = huey.task(name=RUN_ROLLOUT_TASK)(self._execute_rollout)
        self._run_progress = huey.task(name=RUN_PROGRESS_TASK)(self._execute_progress)
        self._sweep = huey.periodic_task(sweep_schedule or crontab(minute="*"), name=SWEEP_TASK)(self._execute_sweep)

    @classmethod
    def from_url(cls, url: str, name: str = "modelherd", **huey_kwargs: Any) -> JobQueue:
        return cls(huey_for_url(url, name, **huey_kwargs))

    @property
    def name(self) -> str:
        return self.huey.name

    # web side
    def enqueue_event(self, event_id: int, delay: float | None = None) -> None:
        """Put ``event_id`` on the queue, now or after ``delay`` seconds."""
        if delay:
            self._run_event.schedule(args=(event_id,), delay=delay)
        else:
            self._run_event(event_id)

    def enqueue_rollout(self, rollout_id: int, delay: float | None = None) -> None:
        """Put a rollout's next advance on the queue, now or after ``delay`` seconds (its check time)."""
        if delay:
            self._run_rollout.schedule(args=(rollout_id,), delay=delay)
        else:
            self._run_rollout(rollout_id)

    def enqueue_progress(self, rollout_id: int, delay: float | None = None) -> None:
        """Put the publication of a rollout's progress on the queue (a retry after a failed one)."""
        if delay:
            self._run_progress.schedule(args=(rollout_id,), delay=delay)
        else:
            self._run_progress(rollout_id)

    def ping(self) -> None:
        """Raise unless the queue's storage answers (used by ``/readyz``)."""
        self.huey.pending_count()

    def pending_count(self) -> int:
        return self.huey.pending_count()

    def scheduled_count(self) -> int:
        return self.huey.scheduled_count()

    # worker side
    def bind(self, runner: EventRunner, sweeper: Sweeper | None = None) -> None:
        """Route the jobs of this process to ``runner(event_id)`` and the periodic sweep to ``sweeper``."""
        self._runner, self._sweeper = runner, sweeper

    def add_sweeper(self, sweeper: Sweeper) -> None:
        """Run ``sweeper`` in the periodic sweep too (e.g. drift detection); its errors are logged."""
        self._extra_sweepers.append(sweeper)

    def bind_rollouts(self, runner: RolloutRunner, sweeper: Sweeper | None = None) -> None:
        """Route rollout jobs to ``runner(rollout_id)``; ``sweeper`` joins the periodic sweep."""
        self._rollout_runner, self._rollout_sweeper = runner, sweeper

    def bind_progress(self, runner: RolloutRunner, sweeper: Sweeper | None = None) -> None:
        """Route progress publications to ``runner(rollout_id)``; ``sweeper`` joins the periodic sweep."""
        self._progress_runner, self._progress_sweeper = runner, sweeper

    def consumer(self, workers: int = 2, *, periodic: bool = True, embedded: bool = False,
                 **options: Any) -> Consumer:
        """A huey consumer with thread workers; ``embedded`` skips signal handlers (non-main threads)."""
        cls = _EmbeddedConsumer if embedded else Consumer
        options.setdefault("check_worker_health", not embedded)
        options.setdefault("max_delay", POLL_MAX_SECONDS)
        return cls(self.huey, workers=workers, periodic=periodic, worker_type="thread", **options)

    def drain(self) -> int:
        """Run every pending job in this thread (tests, one-shot tools); how many were dequeued."""
        ran = 0
        while self.huey.pending_count() and (task := self.huey.dequeue()) is not None:
            self.huey.execute(task)
            ran += 1
        return ran

    def run_scheduled(self, until: datetime) -> int:
        """Run, in this thread, every delayed job due by ``until`` (tests and one-shot tools that move
        their own clock: a canary's verification period need not be waited out in real time)."""
        ran = 0
        until = until.astimezone(UTC).replace(tzinfo=None) if until.tzinfo else until   # huey keeps naive UTC
        for task in self.huey.read_schedule(until):
            self.huey.execute(task, timestamp=until)
            ran += 1
        return ran

    def sweep_now(self) -> None:
        """Run the periodic sweep in this thread (one-shot tools and tests; workers run it every minute)."""
        self._execute_sweep()

    def flush(self) -> None:
        """Delete every message and schedule of this queue (tests clean up their prefix)."""
        self.huey.storage.flush_all()

    def close(self) -> None:
        self.huey.storage.close()

    def _execute(self, event_id: int) -> None:
        if self._runner is None:
            raise QueueNotBound(f"event {event_id} dequeued in a process without a worker")
        self._runner(event_id)

    def _execute_rollout(self, rollout_id: int) -> None:
        if self._rollout_runner is None:
            raise QueueNotBound(f"rollout {rollout_id} dequeued in a process without a rollout worker")
        self._rollout_runner(rollout_id)

    def _execute_progress(self, rollout_id: int) -> None:
        if self._progress_runner is None:
            raise QueueNotBound(f"progress of rollout {rollout_id} dequeued in a process without a rollout worker")
        self._progress_runner(rollout_id)

    def _execute_sweep(self) -> None:
        if self._sweeper is not None:
            self._sweeper()
        if self._rollout_sweeper is not None:
            self._rollout_sweeper()
        if self._progress_sweeper is not None:
            try:
                self._progress_sweeper()
            except Exception:
                log.exception("periodic sweep of rollout progress failed")
        for sweeper in self._extra_sweepers:
            try:
                sweeper()
            except Exception:
                log.exception("periodic sweep %s failed", getattr(sweeper, "__name__", sweeper))


class _EmbeddedConsumer(Consumer):
    """A consumer started from a non-main thread (``worker_in_process``): no signal handlers."""

    def _set_signal_handlers(self) -> None:
        pass


class _SqliteQueueStorage(SqliteStorage):
    """huey's SQLite storage with ``synchronous=NORMAL``: WAL commits without an fsync each.

    A message lost to a power cut is recovered by the sweep (the store holds the event), and NORMAL
    keeps the file consistent, so paying a disk flush per webhook buys nothing.
    """

    def _create_connection(self) -> Any:
        conn = super()._create_connection()
        conn.execute("pragma synchronous = 1")
        return conn


def huey_for_url(url: str, name: str = "modelherd", **kwargs: Any) -> Huey:
    """The huey instance for a ``queue_url`` (see the module docstring)."""
    kwargs.setdefault("results", False)  # jobs report through the store, not huey results
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path:
            raise ValueError("sqlite queue URL needs a file: sqlite:///path/queue.db")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("storage_class", _SqliteQueueStorage)
        return SqliteHuey(name, filename=path, **kwargs)
    if re.match(r"^(rediss?|unix)://", url):
        return RedisHuey(name, url=url, **kwargs)
    if url.startswith("memory://"):
        return MemoryHuey(name, **kwargs)
    raise ValueError(f"unsupported queue URL scheme: {url.split('://', 1)[0]}:// "
                     "(use sqlite:///FILE, redis://HOST:PORT/DB or memory://)")
