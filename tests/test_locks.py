"""Locks in the store, on SQLite and PostgreSQL: exactly one winner across workers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from modelherd.store import Busy, Store


def test_mutex_serialises_and_expires(store: Store):
    assert store.try_mutex("pr:acme/models#7", "a", ttl=60)
    assert not store.try_mutex("pr:acme/models#7", "b", ttl=60)
    assert store.try_mutex("pr:acme/models#7", "a", ttl=60)        # the holder may renew
    assert store.try_mutex("pr:acme/models#7", "b", ttl=-1) is False
    store.release_mutex("pr:acme/models#7", "a")
    assert store.try_mutex("pr:acme/models#7", "b", ttl=-1)         # free again (lease already expired)
    assert store.try_mutex("pr:acme/models#7", "c", ttl=60)         # an expired lease is taken over


def test_mutex_context_waits_then_gives_up(store: Store):
    entered = []
    with store.mutex("k", wait=1):
        with pytest.raises(Busy):
            with store.mutex("k", wait=0.3, poll=0.05):
                entered.append(1)
    assert entered == []
    with store.mutex("k", wait=0.1):
        pass


def test_mutex_admits_one_thread_at_a_time(store: Store):
    inside, overlaps = [], []
    guard = threading.Lock()

    def work(_):
        with store.mutex("busy", wait=20, poll=0.01):
            with guard:
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(1)
            threading.Event().wait(0.02)
            with guard:
                inside.pop()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(8)))
    assert overlaps == []


def test_two_pull_requests_race_for_one_model_lock(store: Store):
    barrier = threading.Barrier(2)

    def take(pr):
        barrier.wait()
        return store.take_lock("acme/models", "fraud-detector", "production", pr_number=pr,
                               head_sha=f"sha{pr}", author=f"user{pr}").pr_number

    with ThreadPoolExecutor(2) as pool:
        holders = list(pool.map(take, [11, 12]))
    assert holders[0] == holders[1] and holders[0] in (11, 12)
    [lock] = store.locks("acme/models")
    assert lock.pr_number == holders[0]


def test_lock_follows_the_holders_new_head_and_is_released(store: Store):
    store.take_lock("r", "m", "staging", pr_number=1, head_sha="a", author="x")
    store.take_lock("r", "m", "production", pr_number=1, head_sha="a", author="x")
    assert store.take_lock("r", "m", "staging", pr_number=1, head_sha="b", author="x").head_sha == "b"
    assert store.take_lock("r", "m", "staging", pr_number=2, head_sha="c", author="y").pr_number == 1
    assert [lock.environment for lock in store.release_locks("r", 1, "staging")] == ["staging"]
    assert [lock.environment for lock in store.locks()] == ["production"]
    assert store.release_locks("r", 1) and store.locks() == []


def test_locks_command_lists_what_pull_requests_hold(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from modelherd.cli import main

    url = f"sqlite:///{tmp_path / 'bot.db'}"
    store = Store.from_url(url)
    store.upgrade()
    store.take_lock("acme/models", "fraud-detector", "production", pr_number=7, head_sha="abcdef123", author="alice")
    monkeypatch.setenv("MODELHERD_DATABASE_URL", url)
    out = CliRunner().invoke(main, ["locks"]).output
    assert "acme/models  fraud-detector/production  #7 by alice at abcdef1" in out


def test_pull_state_is_replaced_on_each_publish(store: Store):
    store.save_pull("r", 7, head_sha="a", base_sha="b", plan_conclusion="success", approvals_status="pending",
                    comment_body="plan v1")
    store.save_pull("r", 7, head_sha="c", base_sha="b", plan_conclusion="failure", approvals_status="pending",
                    comment_body="plan v2")
    record = store.pull("r", 7)
    assert (record.head_sha, record.plan_conclusion, record.comment_body) == ("c", "failure", "plan v2")
    assert store.pull("r", 8) is None


def test_pins_until_the_revert_pull_request_merges(store: Store):
    store.pin("r", "m", "production", version="3", reason="rollback by alice", actor="alice")
    store.set_revert_pr("r", "m", "production", 12)
    assert store.pinned("r", "m", "production").revert_pr == 12
    assert [p.version for p in store.unpin_revert("r", 12)] == ["3"]
    assert store.pinned("r", "m", "production") is None
