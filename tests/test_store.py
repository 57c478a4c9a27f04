"""The store on SQLite and PostgreSQL: dedupe, claims, leases, retries, the sweep, effects, migrations."""

from __future__ import annotations

from pathlib import Path

import multiprocessing
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect

from modelherd.store import EventState, NewEvent, Store
from modelherd.store.migrate import current_revision, head_revision
from tests.clock import Clock


def new_event(delivery: str = "d-1", **kw) -> NewEvent:
    base = dict(forge="github", delivery_id=delivery, event="pull_request", action="opened",
                installation_id=42, repo="octo/models", payload={"action": "opened", "number": 7},
                headers={"x-github-event": "pull_request"})
    base.update(kw)
    return NewEvent(**base)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))


@pytest.fixture
def clocked(store: Store, clock: Clock) -> Store:
    """The parametrized store's engine, read through a settable clock."""
    return Store(store.engine, clock=clock)


# The newest migration file in bot/migrations/versions (files are numbered NNNN_name.py).
LATEST = max(p.name[:4] for p in (Path(__file__).resolve().parents[1] / "bot" / "migrations" / "versions").glob("[0-9]*.py"))


def test_migrations_reach_head_and_are_idempotent(store: Store) -> None:
    store.upgrade()  # a second upgrade is a no-op
    assert current_revision(store.engine) == head_revision() == LATEST
    tables = set(inspect(store.engine).get_table_names())
    assert {"events", "effects", "alembic_version"} <= tables


def test_sqlite_runs_in_wal_mode_with_busy_timeout(sqlite_store: Store) -> None:
    with sqlite_store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_record_is_insert_or_ignore_per_forge(store: Store) -> None:
    first = store.record_event(new_event())
    assert first is not None
    assert store.record_event(new_event()) is None
    assert store.record_event(new_event(forge="gitlab")) is not None  # unique per forge
    rec = store.get_event(first)
    assert (rec.state, rec.attempts, rec.repo, rec.installation_id) == (EventState.QUEUED, 0, "octo/models", 42)
    assert rec.payload == {"action": "opened", "number": 7}
    assert store.find_event("github", "d-1").id == first
    assert store.count_events() == 2


def test_claim_finish_and_fencing(clocked: Store, clock: Clock) -> None:
    event_id = clocked.record_event(new_event())
    claim = clocked.claim(event_id, 30)
    assert claim is not None and claim.attempt == 1
    assert clocked.claim(event_id, 30) is None  # held
    clock.advance(31)
    late = clocked.claim(event_id, 30)  # the first worker's lease expired: taken over
    assert late is not None and late.attempt == 2
    assert clocked.finish(claim) is False  # the first worker is fenced off
    assert clocked.finish(late, EventState.SKIPPED, "no handler") is True
    rec = clocked.get_event(event_id)
    assert (rec.state, rec.error, rec.lease_until) == (EventState.SKIPPED, "no handler", None)
    assert clocked.claim(event_id, 30) is None  # finished events are never claimed again


def test_renew_extends_the_lease(clocked: Store, clock: Clock) -> None:
    event_id = clocked.record_event(new_event())
    claim = clocked.claim(event_id, 10)
    clock.advance(8)
    renewed = clocked.renew(claim, 10)
    clock.advance(8)
    assert renewed is not None and clocked.claim(event_id, 10) is None


def test_fail_retries_then_gives_up(clocked: Store) -> None:
    event_id = clocked.record_event(new_event())
    for attempt in (1, 2):
        claim = clocked.claim(event_id, 30)
        assert claim.attempt == attempt
        assert clocked.fail(claim, "boom", max_attempts=3, retry_delay=5) is True
        assert clocked.get_event(event_id).state is EventState.QUEUED
    claim = clocked.claim(event_id, 30)
    assert clocked.fail(claim, "boom again", max_attempts=3) is False
    rec = clocked.get_event(event_id)
    assert (rec.state, rec.attempts, rec.error) == (EventState.FAILED, 3, "boom again")
    assert clocked.requeue(event_id) is True
    assert clocked.claim(event_id, 30).attempt == 1


def test_reclaim_requeues_expired_leases_only(clocked: Store, clock: Clock) -> None:
    running = clocked.record_event(new_event("run"))
    fresh = clocked.record_event(new_event("fresh"))
    clocked.claim(running, 60)
    clock.advance(61)
    assert clocked.reclaim_expired(max_attempts=3) == [running]
    assert clocked.reclaim_expired(max_attempts=3) == []  # a second sweep finds nothing
    assert clocked.get_event(running).state is EventState.QUEUED
    assert clocked.get_event(fresh).state is EventState.QUEUED
    clock.advance(3600)  # queued too long: the message was lost, both go out again
    assert sorted(clocked.reclaim_expired(max_attempts=3)) == sorted([running, fresh])


def test_reclaim_fails_an_event_out_of_attempts(clocked: Store, clock: Clock) -> None:
    event_id = clocked.record_event(new_event())
    for _ in range(2):
        clocked.claim(event_id, 10)
        clock.advance(11)
    assert clocked.reclaim_expired(max_attempts=2) == []
    rec = clocked.get_event(event_id)
    assert rec.state is EventState.FAILED and "lease expired" in rec.error


def test_claim_is_exclusive_across_threads(store: Store) -> None:
    ids = [store.record_event(new_event(f"t-{i}")) for i in range(20)]
    won: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def contend() -> None:
        barrier.wait()
        for event_id in ids:
            if store.claim(event_id, 60) is not None:
                with lock:
                    won.append(event_id)

    threads = [threading.Thread(target=contend) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == sorted(ids)


def _claim_all(url: str, ids: list[int], out: multiprocessing.Queue, start: multiprocessing.Event) -> None:
    store = Store.from_url(url)
    start.wait()
    out.put([i for i in ids if store.claim(i, 60) is not None])
    store.dispose()


def test_claim_is_exclusive_across_processes(store: Store, store_url: str) -> None:
    ids = [store.record_event(new_event(f"p-{i}")) for i in range(40)]
    store.dispose()
    ctx = multiprocessing.get_context("fork")
    out, start = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_claim_all, args=(store_url, ids, out, start)) for _ in range(3)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    claimed = [i for r in results for i in r]
    assert sorted(claimed) == sorted(ids)  # every event once, none twice


def test_effects_once_and_run_once(store: Store) -> None:
    assert store.once("slack:rollout:1") is True
    assert store.once("slack:rollout:1") is False
    calls: list[int] = []

    def post() -> dict:
        calls.append(1)
        return {"comment_id": 99}

    assert store.run_once("comment:octo/models#7", post, event_id=1) == {"comment_id": 99}
    assert store.run_once("comment:octo/models#7", post) == {"comment_id": 99}
    assert calls == [1]
    assert store.effect_result("comment:octo/models#7") == {"comment_id": 99}
    assert store.forget_effect("comment:octo/models#7") and not store.has_effect("comment:octo/models#7")


def test_commit_once_commits_the_writes_with_their_record_or_neither(store: Store) -> None:
    """The store writes of an action and the record of its result share one transaction."""
    from tests.rollout_rig import REPO, deployment, version
    from modelherd.rollout import start_rollout

    def start(fail: bool) -> int:
        rollout_id = start_rollout(store, repo=REPO, dep=deployment(), candidate=version(2), stable=version(1),
                                   trigger="deploy-command", actor="bob", key="github:d-1:0:churn:staging",
                                   clock=store.now)
        store.release_locks(REPO, 7)
        if fail:
            raise RuntimeError("killed before the record")
        return rollout_id

    with pytest.raises(RuntimeError):
        store.commit_once("command:github:d-1:0", lambda: start(True))
    assert store.list_rollouts(repo=REPO) == [] and not store.has_effect("command:github:d-1:0")
    first = store.commit_once("command:github:d-1:0", lambda: start(False))
    again = store.commit_once("command:github:d-1:0", lambda: pytest.fail("ran twice"))
    assert first == again and [r.id for r in store.list_rollouts(repo=REPO)] == [first]


def test_a_rollout_is_created_once_per_idempotency_key(store: Store) -> None:
    from tests.rollout_rig import REPO, deployment, version
    from modelherd.rollout import rollback_to, start_rollout

    def start(key: str | None, repo: str = REPO, env: str = "staging") -> int:
        return start_rollout(store, repo=repo, dep=deployment(env=env), candidate=version(2), stable=version(1),
                             trigger="merge", actor="alice", key=key, clock=store.now)

    key = "merge:octo/models#7:churn:staging"
    first = start(key)
    assert start(key) == first                                          # a retried job finds it
    assert start(key, repo="octo/other") != first                       # keys are per repository
    assert start(None) not in (first,) and start(None) != start(None)   # no key: a new rollout each time
    long_key = "x" * 400                                                # longer than the column: hashed
    assert start(long_key, env="production") == start(long_key, env="production")
    assert store.rollout_by_key(REPO, key).id == first
    # a /rollback started under a key cancels nothing the second time: it finds itself
    back = rollback_to(store, repo=REPO, dep=deployment(), version=version(1), current=version(2), actor="bob",
                       key="github:d-2:0:churn:staging", clock=store.now)
    assert store.get_rollout(back).cancel_reason is None
    assert rollback_to(store, repo=REPO, dep=deployment(), version=version(1), current=version(2), actor="bob",
                       key="github:d-2:0:churn:staging", clock=store.now) == back
    assert store.get_rollout(back).cancel_reason is None


def test_naive_datetimes_are_refused(store: Store) -> None:
    naive = Store(store.engine, clock=lambda: datetime(2026, 1, 1))
    with pytest.raises(Exception, match="naive datetime"):
        naive.record_event(new_event())


def test_db_upgrade_command(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from modelherd.server_cli import db

    monkeypatch.setenv("MODELHERD_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    result = CliRunner().invoke(db, ["upgrade"])
    assert result.exit_code == 0, result.output
    assert f"revision {LATEST}" in result.output


def _upgrade(url: str) -> None:
    store = Store.from_url(url)
    store.upgrade()
    store.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request, tmp_path):
    """An empty, unmigrated database per backend (PostgreSQL: created next to the run's database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'race.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(request.getfixturevalue("pg_database_url"))
    name = f"{base.database}_race"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def test_concurrent_upgrades_of_a_new_database_serialize(fresh_database_url) -> None:
    url = fresh_database_url
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_upgrade, args=(url,)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = Store.from_url(url)
    assert current_revision(store.engine) == LATEST
    store.dispose()
