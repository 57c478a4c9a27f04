"""Pacing per installation across workers: the local, Redis and SQL pacers, and the PyGithub hook.

Redis and PostgreSQL come from this machine (``tests/fixtures_store.py``); their tests are skipped
with the reason when a service is unreachable.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from pathlib import Path

import pytest

from modelherd.forges.base import CheckReport, CheckStatus
from modelherd.github_auth import ClientOptions, GitHubClients, TokenCache, rate_limit_wait
from modelherd.pacing import LocalPacer, PacingPolicy, RedisPacer, SqlPacer, pacer_from_url
from modelherd.settings import GitHubSettings
from tests.fakes.github import FakeGitHub

INTERVAL = 0.2


class FakeClock:
    """A clock that only moves when the pacer sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def test_local_pacer_spaces_writes_not_reads() -> None:
    clock = FakeClock()
    pacer = LocalPacer(PacingPolicy(write_interval=1.0), sleep=clock.sleep, clock=lambda: clock.now)
    for _ in range(3):
        pacer.acquire("gh/1", write=True)
    pacer.acquire("gh/1", write=False)
    pacer.acquire("gh/2", write=True)           # another installation has its own pace
    assert clock.sleeps == [1.0, 1.0]
    assert pacer.waited == 2.0


def test_hold_stops_reads_and_writes() -> None:
    clock = FakeClock()
    pacer = LocalPacer(PacingPolicy(write_interval=1.0), sleep=clock.sleep, clock=lambda: clock.now)
    pacer.hold("gh/1", 30)
    pacer.acquire("gh/1", write=False)
    pacer.acquire("gh/1", write=True)
    assert clock.sleeps == [30.0]                # the read waited out the hold; the write then went at once
    pacer.acquire("gh/1", write=True)
    assert clock.sleeps == [30.0, 1.0]


def test_spaced_reads_when_asked() -> None:
    clock = FakeClock()
    pacer = LocalPacer(PacingPolicy(write_interval=1.0, read_interval=0.25), sleep=clock.sleep,
                       clock=lambda: clock.now)
    for _ in range(3):
        pacer.acquire("gh/1", write=False)
    assert clock.sleeps == [0.25, 0.25]


def test_rate_limit_wait_reads_githubs_headers() -> None:
    now = 1_000_000.0
    assert rate_limit_wait(403, {"Retry-After": "7"}, now) == 7
    assert rate_limit_wait(503, {"Retry-After": "Thu, 01 Jan 1970 00:00:10 GMT"}, 5.0) == 5.0
    assert rate_limit_wait(429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1000060"}, now) == 61
    assert rate_limit_wait(403, {"X-RateLimit-Remaining": "12", "X-RateLimit-Reset": "1000060"}, now) is None
    assert rate_limit_wait(502, {}, now) is None


# -- shared pacers: several workers, one pace ---------------------------------------------------------


def _starts(make_pacer, key: str, workers: int = 2, each: int = 3) -> list[float]:
    """The slots (their starts on the pacer's clock) of ``workers × each`` writes, each worker with its own
    pacer (own connection).  Slots, not the moments the threads woke: those move with the machine's load."""
    starts: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        pacer = make_pacer()
        for _ in range(each):
            start = pacer.acquire(key, write=True)
            with lock:
                starts.append(start)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(starts)


def _assert_spaced(starts: list[float], interval: float = INTERVAL) -> None:
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) >= interval - 1e-5, gaps              # the backends keep microseconds


@pytest.fixture
def redis_pacer_factory(redis_url: str):
    prefix = f"mhtest:pace:{uuid.uuid4().hex[:8]}:"
    made: list[RedisPacer] = []

    def make() -> RedisPacer:
        made.append(RedisPacer.from_url(redis_url, PacingPolicy(write_interval=INTERVAL), prefix=prefix))
        return made[-1]

    yield make
    for pacer in made:
        for key in pacer.client.scan_iter(f"{prefix}*"):
            pacer.client.delete(key)
        pacer.client.close()


def test_redis_pacer_spaces_writes_across_workers(redis_pacer_factory) -> None:
    _assert_spaced(_starts(redis_pacer_factory, "api.github.com/1"))


def test_redis_pacer_hold_and_other_keys(redis_pacer_factory) -> None:
    a, b = redis_pacer_factory(), redis_pacer_factory()
    a.hold("api.github.com/1", 0.5)
    started = time.monotonic()
    b.acquire("api.github.com/2", write=True)            # another installation: not held
    assert b.waited == 0
    b.acquire("api.github.com/1", write=False)           # held: even reads wait
    assert b.waited > 0.4 and time.monotonic() - started >= b.waited
    ttl = a.client.pttl(f"{a.prefix}api.github.com/1:w")
    assert 0 < ttl <= 61_000                              # keys expire: nothing piles up in Redis


def _redis_worker(url: str, prefix: str, key: str, queue) -> None:
    pacer = RedisPacer.from_url(url, PacingPolicy(write_interval=INTERVAL), prefix=prefix)
    for _ in range(3):
        queue.put(pacer.acquire(key, write=True))


def test_redis_pacer_across_processes(redis_url: str) -> None:
    """Two worker processes for one installation share the pace (the point of a shared pacer)."""
    ctx = multiprocessing.get_context("spawn")
    queue, prefix = ctx.Queue(), f"mhtest:pace:{uuid.uuid4().hex[:8]}:"
    workers = [ctx.Process(target=_redis_worker, args=(redis_url, prefix, "ghe.example/7", queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    starts = sorted(queue.get(timeout=60) for _ in range(6))
    for worker in workers:
        worker.join(timeout=30)
    _assert_spaced(starts)


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated store database (the pacer's table comes from the store's migrations)."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_database_url")
    from modelherd.store.db import make_engine
    from modelherd.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def test_sql_pacer_spaces_writes_across_workers(sql_url: str) -> None:
    key = f"api.github.com/{uuid.uuid4().hex[:8]}"
    made: list[SqlPacer] = []

    def make() -> SqlPacer:
        made.append(SqlPacer.from_url(sql_url, PacingPolicy(write_interval=INTERVAL)))
        return made[-1]

    _assert_spaced(_starts(make, key))
    pacer = made[0]
    pacer.hold(key, 0.4)
    started = time.monotonic()
    pacer.acquire(key, write=False)
    assert time.monotonic() - started >= 0.3
    for each in made:
        each.engine.dispose()


def test_pacer_from_url_picks_the_backend(tmp_path: Path, redis_url: str) -> None:
    assert isinstance(pacer_from_url(redis_url), RedisPacer)
    sql = pacer_from_url(f"sqlite:///{tmp_path / 'p.db'}")
    assert isinstance(sql, SqlPacer)
    sql.engine.dispose()


# -- the PyGithub hook --------------------------------------------------------------------------------


class LoggingPacer(LocalPacer):
    """Spaces writes like the real thing and logs every acquisition."""

    def __init__(self, interval: float) -> None:
        super().__init__(PacingPolicy(write_interval=interval))
        self.log: list[tuple[str, bool, float]] = []

    def acquire(self, key: str, *, write: bool) -> float | None:
        slot = super().acquire(key, write=write)
        self.log.append((key, write, slot))
        return slot


def _clients(fake: FakeGitHub, pacer) -> GitHubClients:
    settings = GitHubSettings(app_id=fake.state.app_id, api_url=fake.base_url)
    return GitHubClients(settings, pacer=pacer, private_key=fake.generate_app_key(), tokens=TokenCache(),
                         options=ClientOptions(backoff_factor=0.01))


@pytest.mark.parametrize("fake_github", ["github.com", "ghes-3.19"], indirect=True)
def test_every_request_is_paced_and_writes_are_a_second_apart(fake_github: FakeGitHub) -> None:
    """The hook sees every installation request (a PyGithub upgrade that bypasses it fails here)."""
    repo = fake_github.add_repo("acme", "models", files={"a.yaml": "a: 1\n"})
    head = fake_github.add_commit(repo, {"a.yaml": "a: 2\n"})
    number = fake_github.open_pull(repo, fake_github.head(repo), head, author="alice")
    pacer = LoggingPacer(interval=0.3)
    clients = _clients(fake_github, pacer)
    forge = clients.forge(fake_github.installation_id("acme"), repo)
    cr = forge.change_request(number)
    forge.reader(cr).read_many(cr.head_sha, ["a.yaml"])
    forge.upsert_comment(number, "<!-- m -->", "one")
    forge.report_check(head, CheckReport("modelherd/plan", CheckStatus.COMPLETED, "success", title="t"))
    forge.upsert_comment(number, "<!-- m -->", "two")

    paced = [c for c in fake_github.calls if not c.template.startswith("/app")]
    assert len(pacer.log) == len(paced)
    assert [write for _, write, _ in pacer.log] == [c.is_write for c in paced]
    assert {key for key, _, _ in pacer.log} == {clients.pace_key(fake_github.installation_id("acme"))}
    writes = [at for _, write, at in pacer.log if write]
    assert len(writes) == 3
    _assert_spaced(writes, 0.3)


class Logged:
    """A pacer wrapper that logs when each write was allowed to start."""

    def __init__(self, inner, log: list[float]) -> None:
        self.inner, self.log = inner, log

    def acquire(self, key: str, *, write: bool) -> float | None:
        slot = self.inner.acquire(key, write=write)
        if write:
            self.log.append(slot)
        return slot

    def hold(self, key: str, seconds: float) -> None:
        self.inner.hold(key, seconds)


def test_two_clients_share_the_installations_pace(fake_github: FakeGitHub, redis_pacer_factory) -> None:
    """Two workers' clients (each its own ``Github``, own Redis connection) for one installation."""
    repo = fake_github.add_repo("acme", "models")
    number = fake_github.open_pull(repo, fake_github.head(repo), fake_github.add_commit(repo, {"x": "1"}), "alice")
    key = fake_github.generate_app_key()
    settings = GitHubSettings(app_id=fake_github.state.app_id, api_url=fake_github.base_url)
    starts: list[float] = []
    forges = [GitHubClients(settings, pacer=Logged(redis_pacer_factory(), starts), private_key=key,
                            tokens=TokenCache()).forge(fake_github.installation_id("acme"), repo) for _ in range(2)]
    threads = [threading.Thread(target=lambda f=forge: [f.create_comment(number, str(i)) for i in range(3)])
               for forge in forges]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(starts) == 6 and len(fake_github.comments(repo, number)) == 6
    _assert_spaced(sorted(starts))
