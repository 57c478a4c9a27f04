"""The huey queue on SQLite and Redis, driven by the worker's dispatcher over the store."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from modelherd.queue import JobQueue, QueueNotBound, SWEEP_TASK, huey_for_url
from modelherd.router import Router
from modelherd.store import EventRecord, EventState, NewEvent, Store
from modelherd.worker import Dispatcher, Handlers, InProcessWorker, Outcome



def pr_event(delivery: str, installation: int | None = 42) -> NewEvent:
    return NewEvent(forge="github", delivery_id=delivery, event="pull_request", action="opened",
                    installation_id=installation, repo="octo/models",
                    payload={"action": "opened", "number": 7})


def recording_router(calls: list[int]) -> Router:
    router = Router()

    @router.register("pull_request", action="opened")
    def on_open(event: EventRecord, **_: object) -> None:
        calls.append(event.id)

    return router


def test_enqueue_carries_ids_and_drains(job_queue: JobQueue) -> None:
    seen: list[int] = []
    job_queue.bind(seen.append)
    job_queue.enqueue_event(1)
    job_queue.enqueue_event(2)
    assert job_queue.pending_count() == 2
    assert job_queue.drain() == 2 and seen == [1, 2]
    job_queue.ping()


def test_delayed_enqueue_is_scheduled(job_queue: JobQueue) -> None:
    job_queue.bind(lambda _id: None)
    job_queue.enqueue_event(3, delay=60)
    job_queue.drain()  # the consumer side moves a future job to the schedule
    assert job_queue.scheduled_count() == 1


def test_unbound_queue_refuses_to_run_jobs(job_queue: JobQueue) -> None:
    with pytest.raises(QueueNotBound):
        job_queue._execute(1)


def test_sweep_is_a_periodic_task(job_queue: JobQueue) -> None:
    swept: list[bool] = []
    job_queue.bind(lambda _id: None, lambda: swept.append(True))
    assert any(name.endswith(SWEEP_TASK) for name in job_queue.huey._registry._registry)
    assert [t.name for t in job_queue.huey._registry.periodic_tasks] == [job_queue._sweep.name]
    job_queue.huey.execute(job_queue._sweep.s())
    assert swept == [True]


def test_bad_queue_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported queue URL"):
        huey_for_url("amqp://localhost")


def test_dispatch_done_skipped_and_retried(store: Store, job_queue: JobQueue) -> None:
    calls: list[int] = []
    Dispatcher(store, job_queue, Handlers(recording_router(calls)), retry_base_seconds=30).bind()
    ok = store.record_event(pr_event("ok"))
    orphan = store.record_event(pr_event("orphan", installation=None))
    unrouted = store.record_event(NewEvent(forge="github", delivery_id="push", event="push",
                                           installation_id=42, payload={}))
    for event_id in (ok, orphan, unrouted):
        job_queue.enqueue_event(event_id)
    job_queue.enqueue_event(ok)  # a duplicate message is harmless
    assert job_queue.drain() == 4
    assert calls == [ok]
    assert store.get_event(ok).state is EventState.DONE
    assert (store.get_event(orphan).state, store.get_event(orphan).error) == (
        EventState.SKIPPED, "no installation (not delivered to the GitHub App)")
    assert store.get_event(unrouted).error == "no handler"

    boom = Router()
    boom.add(lambda event, **_: 1 / 0, "pull_request")
    failing = Dispatcher(store, job_queue, Handlers(boom), max_attempts=2, retry_base_seconds=30)
    bad = store.record_event(pr_event("bad"))
    assert failing.run(bad) is Outcome.RETRY
    assert job_queue.scheduled_count() + job_queue.pending_count() == 1  # the retry waits 30 s
    assert failing.run(bad) is Outcome.FAILED
    assert store.get_event(bad).error == "ZeroDivisionError: division by zero"


def test_in_process_consumer_runs_jobs(store: Store, job_queue: JobQueue) -> None:
    calls: list[int] = []
    worker = InProcessWorker(Dispatcher(store, job_queue, Handlers(recording_router(calls))).bind()).start()
    try:
        event_id = store.record_event(pr_event("live"))
        job_queue.enqueue_event(event_id)
        deadline = time.monotonic() + 15
        while store.get_event(event_id).state is not EventState.DONE and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert calls == [event_id]


def test_idle_worker_looks_at_the_queue_at_least_once_a_second(tmp_path) -> None:
    """huey's default back-off reaches 10 s: a webhook after a quiet minute would wait that long.
    (Redis is not polled: its workers block on the list.)"""
    queue = JobQueue.from_url(f"sqlite:///{tmp_path / 'queue.db'}")
    try:
        worker = queue.consumer(1, embedded=True)._create_worker()
        waits: list[float] = []
        worker.stop_flag.wait = lambda timeout=None: waits.append(timeout) or False   # record, do not sleep
        for _ in range(60):                                                              # an idle minute and more
            worker.loop()
        assert len(waits) == 60 and max(waits) <= 1.0
    finally:
        queue.close()


# -- a worker killed mid-job ---------------------------------------------------------------------------


def effect_router(store: Store, effects_file: str, started: multiprocessing.Event | None) -> Router:
    """A handler with one side effect (a line in a file, guarded by ``store.once``) and then slow work."""
    router = Router()

    @router.register("pull_request", action="opened")
    def post_and_work(event: EventRecord, **_: object) -> None:
        if store.once(f"comment:{event.repo}#{event.payload['number']}", event_id=event.id):
            with open(effects_file, "a") as fh:
                fh.write(f"comment for event {event.id}\n")
        if started is not None:
            started.set()
            time.sleep(60)  # killed here

    return router


def _doomed_worker(store_url: str, queue_url: str, queue_name: str, effects_file: str,
                   started: multiprocessing.Event) -> None:
    store = Store.from_url(store_url)
    queue = JobQueue.from_url(queue_url, queue_name)
    Dispatcher(store, queue, Handlers(effect_router(store, effects_file, started)), lease_seconds=1).bind()
    queue.drain()


def test_worker_killed_mid_job_runs_again_and_effect_happens_once(store: Store, store_url: str,
                                                                   job_queue: JobQueue, queue_url: str,
                                                                   tmp_path) -> None:
    effects = tmp_path / "effects.txt"
    event_id = store.record_event(pr_event("killed"))
    job_queue.enqueue_event(event_id)

    ctx = multiprocessing.get_context("fork")
    started = ctx.Event()
    proc = ctx.Process(target=_doomed_worker,
                       args=(store_url, queue_url, job_queue.name, str(effects), started))
    proc.start()
    assert started.wait(30), "the worker never started the job"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert store.get_event(event_id).state is EventState.RUNNING
    assert job_queue.pending_count() == 0  # huey has no acks: the message died with the worker

    dispatcher = Dispatcher(store, job_queue, Handlers(effect_router(store, str(effects), None))).bind()
    assert dispatcher.sweep() == []  # lease (1 s) not yet expired
    time.sleep(1.2)
    assert dispatcher.sweep() == [event_id]
    assert job_queue.drain() == 1
    rec = store.get_event(event_id)
    assert (rec.state, rec.attempts) == (EventState.DONE, 2)
    assert effects.read_text().splitlines() == [f"comment for event {event_id}"]
