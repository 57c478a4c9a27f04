"""The worker: claim a persisted event, dispatch it to the router, settle it in the store.

The router and the dependencies handlers receive come from a *wiring* function written by the
application (``modelherd.wiring:build`` by default)::

    def build(settings: Settings, store: Store, queue: JobQueue) -> Handlers:
        return Handlers(router=Router(plan.router, commands.router),
                        deps=lambda event: {"forge": forges.for_event(event), "store": store, ...})

Jobs are at least once: a worker killed mid-job leaves a running event whose lease expires, the
sweep queues it again, and the handler runs again.  Handlers make their side effects idempotent
(``store.once`` / ``store.run_once``, upserts by marker).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelherd.queue import JobQueue
from modelherd.router import Router
from modelherd.settings import Settings
from modelherd.store import EventRecord, EventState, Store

log = logging.getLogger(__name__)

DEFAULT_WIRING = "modelherd.wiring:build"
DepsFactory = Callable[[EventRecord], Mapping[str, Any]]


@dataclass
class Handlers:
    """What the application wires into the worker: the router, and each event's dependencies."""

    router: Router
    deps: DepsFactory = field(default=lambda event: {})


class Outcome(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"
    RETRY = "retry"
    FAILED = "failed"
    NOT_CLAIMED = "not-claimed"


@dataclass
class Dispatcher:
    """Runs one event id end to end; bound to a :class:`JobQueue` as its job function."""

    store: Store
    queue: JobQueue
    handlers: Handlers
    lease_seconds: float = 300.0
    max_attempts: int = 5
    retry_base_seconds: float = 10.0
    retry_max_seconds: float = 600.0

    def bind(self) -> Dispatcher:
        """Make this dispatcher the job function (and sweeper) of its queue."""
        self.queue.bind(self.run, self.sweep)
        return self

    def run(self, event_id: int) -> Outcome:
        """Claim ``event_id``, dispatch it, and record the outcome (retry with backoff on error)."""
        claim = self.store.claim(event_id, self.lease_seconds)
        if claim is None:
            log.info("event %s not claimed (finished or running elsewhere)", event_id)
            return Outcome.NOT_CLAIMED
        event = claim.event
        reason = skip_reason(event)
        if reason:
            self.store.finish(claim, EventState.SKIPPED, reason)
            log.info("delivery %s (%s) skipped: %s", event.delivery_id, event.event, reason)
            return Outcome.SKIPPED
        try:
            called = self.handlers.router.dispatch(event, **self.handlers.deps(event))
        except Exception as exc:
            return self._failed(claim, exc)
        if called == 0:
            self.store.finish(claim, EventState.SKIPPED, "no handler")
            return Outcome.SKIPPED
        if not self.store.finish(claim):
            log.warning("delivery %s: lease lost before finishing (ran longer than %ss)",
                        event.delivery_id, self.lease_seconds)
        log.info("delivery %s (%s.%s) done by %d handler(s), attempt %d", event.delivery_id, event.event,
                 event.action, called, claim.attempt)
        return Outcome.DONE

    def sweep(self) -> list[int]:
        """Queue again every event whose lease expired (the periodic task, and at worker start).

        When the queue refuses a message, that event and the rest are left for the next sweep."""
        ids = self.store.reclaim_expired(max_attempts=self.max_attempts)
        for n, event_id in enumerate(ids):
            try:
                self.queue.enqueue_event(event_id)
            except Exception as exc:
                log.error("sweep: queue unavailable (%s: %s); %d event(s) left for the next sweep",
                          type(exc).__name__, exc, len(ids) - n)
                for left in ids[n:]:
                    self.store.unqueued(left)
                return ids[:n]
        if ids:
            log.warning("reclaimed %d event(s) with expired leases: %s", len(ids), ids[:20])
        return ids

    def _failed(self, claim: Any, exc: Exception) -> Outcome:
        event = claim.event
        delay = min(self.retry_base_seconds * 2 ** (claim.attempt - 1), self.retry_max_seconds)
        # An error that knows when to try again (a forge's rate limit reset) sets the delay itself.
        delay = max(delay, float(getattr(exc, "retry_in", 0.0) or 0.0))
        error = f"{type(exc).__name__}: {exc}"
        if self.store.fail(claim, error, max_attempts=self.max_attempts, retry_delay=delay):
            log.warning("delivery %s attempt %d failed (%s); retry in %.0fs", event.delivery_id,
                        claim.attempt, type(exc).__name__, delay, exc_info=exc)
            try:
                self.queue.enqueue_event(event.id, delay=delay)
            except Exception as queue_exc:   # the queue is down: the sweep enqueues it once the delay is over
                log.error("delivery %s: retry not enqueued (%s); the sweep will enqueue it",
                          event.delivery_id, type(queue_exc).__name__)
                self.store.unqueued(event.id, after=delay)
            return Outcome.RETRY
        log.error("delivery %s failed for good after %d attempts", event.delivery_id, claim.attempt,
                  exc_info=exc)
        return Outcome.FAILED


def skip_reason(event: EventRecord) -> str | None:
    """Why an event cannot be acted on at all (before routing), or ``None``."""
    if event.forge == "github" and event.installation_id is None:
        return "no installation (not delivered to the GitHub App)"
    return None


def load_wiring(spec: str = DEFAULT_WIRING) -> Callable[[Settings, Store, JobQueue], Handlers]:
    """Import ``module:function``; a clear error when the application has not wired handlers yet."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise LookupError(f"no handler wiring: {module_name} does not exist (pass --wiring module:function)") from exc
    try:
        return getattr(module, attr or "build")
    except AttributeError as exc:
        raise LookupError(f"no handler wiring: {module_name} has no {attr or 'build'}") from exc


def open_backends(settings: Settings, *, migrate: bool = True) -> tuple[Store, JobQueue]:
    """Store and queue from settings (migrating the store unless told not to)."""
    store = Store.from_url(settings.database_url)
    if migrate:
        store.upgrade()
    return store, JobQueue.from_url(settings.queue_url, settings.queue_name)


def make_dispatcher(settings: Settings, store: Store, queue: JobQueue, wiring: str = DEFAULT_WIRING) -> Dispatcher:
    return Dispatcher(store, queue, load_wiring(wiring)(settings, store, queue)).bind()


def run_worker(settings: Settings, *, threads: int = 2, wiring: str = DEFAULT_WIRING) -> None:
    """Blocking worker (``modelherd worker``): migrate, sweep once, consume until SIGTERM/SIGINT.

    SIGTERM (what container runtimes send) and SIGINT let running jobs finish; a SIGKILL leaves them
    ``running`` until their lease expires and the sweep queues them again.
    """
    store, queue = open_backends(settings)
    dispatcher = make_dispatcher(settings, store, queue, wiring)
    dispatcher.sweep()
    queue.consumer(threads, graceful_signal="TERM").run()


class InProcessWorker:
    """A consumer on background threads of a web process (``worker_in_process``); :meth:`stop` it."""

    def __init__(self, dispatcher: Dispatcher, threads: int = 1):
        self.dispatcher = dispatcher
        self.consumer = dispatcher.queue.consumer(threads, embedded=True)

    def start(self) -> InProcessWorker:
        self.dispatcher.sweep()
        self.consumer.start()
        return self

    def stop(self, graceful: bool = True) -> None:
        self.consumer.stop(graceful=graceful)
