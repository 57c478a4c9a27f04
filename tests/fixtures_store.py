"""Fixtures for the store, the queue and signed webhooks, on SQLite and on this machine's services.

Register with ``pytest_plugins = ["tests.fixtures_store"]`` (in ``tests/conftest.py`` or a test module).

``store``
    A migrated :class:`~modelherd.store.Store`, parametrized ``sqlite`` (a file per test) and
    ``postgresql`` (one ``modelherd_test_<random>`` database per run, created and dropped by
    ``pg_database_url``, tables emptied after each test).
``job_queue``
    A :class:`~modelherd.queue.JobQueue`, parametrized ``sqlite`` (a file per test) and ``redis``
    (a key prefix unique to the run and the test, flushed after it).
``sqlite_store`` / ``sqlite_queue``
    The embedded pair alone, for tests that are about something else.
``webhooks``
    ``webhooks.headers(event, body, delivery=…, secret=…)`` and ``webhooks.sign(body)`` with the
    suite's webhook secret ``webhooks.secret``.

PostgreSQL and Redis come from ``MODELHERD_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) and ``MODELHERD_TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379/0``); when one is unreachable its parameter is skipped with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from modelherd.queue import JobQueue
from modelherd.store import Store

POSTGRES_URL = os.environ.get("MODELHERD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MODELHERD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WEBHOOK_SECRET = "test-webhook-secret-\N{SNOWMAN}"
_RUN_ID = uuid.uuid4().hex[:10]
_counter = itertools.count()


# -- signed webhooks -----------------------------------------------------------------------------------


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    """The ``X-Hub-Signature-256`` value GitHub would send for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_headers(event: str, body: bytes, *, delivery: str | None = None,
                    secret: str | None = WEBHOOK_SECRET) -> dict[str, str]:
    """Headers of a GitHub delivery of ``body``; ``secret=None`` leaves the signature out."""
    headers = {"Content-Type": "application/json", "X-GitHub-Event": event,
               "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "User-Agent": "GitHub-Hookshot/test"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(body, secret)
    return headers


class Webhooks:
    """Signed GitHub deliveries for tests: ``webhooks.headers("pull_request", body)``."""

    secret = WEBHOOK_SECRET
    sign = staticmethod(sign)
    headers = staticmethod(webhook_headers)


@pytest.fixture
def webhooks() -> Webhooks:
    """Helpers to sign bodies with :data:`WEBHOOK_SECRET` and build delivery headers."""
    return Webhooks()


# -- PostgreSQL ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this run (``modelherd_test_<random>``), dropped at the end."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"modelherd_test_{_RUN_ID}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL unreachable at {make_url(POSTGRES_URL).render_as_string(hide_password=True)}: "
                    f"{type(exc).__name__}")
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    migrator = Store.from_url(url)
    migrator.upgrade()
    migrator.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _empty_postgres(store: Store) -> None:
    """Every table of the store empty again (the database is shared by the run's tests)."""
    from modelherd.store import Base

    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with store.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))


# -- Redis ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis URL, after checking it answers (else the Redis parameters are skipped)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {type(exc).__name__}")
    finally:
        client.close()
    return REDIS_URL


def unique_queue_name() -> str:
    """A queue name (= Redis key prefix) no other run or test uses: ``mhtest_<run>_<n>``."""
    return f"mhtest_{_RUN_ID}_{next(_counter)}"


# -- store and queue -----------------------------------------------------------------------------------


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade()
    yield store
    store.dispose()


@pytest.fixture
def sqlite_queue(tmp_path: Path) -> Iterator[JobQueue]:
    queue = JobQueue.from_url(f"sqlite:///{tmp_path / 'queue.db'}", name="test")
    yield queue
    queue.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a migrated, empty store database, per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        migrator = Store.from_url(url)
        migrator.upgrade()
        migrator.dispose()
        return url
    return request.getfixturevalue("pg_database_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated, empty store on each backend."""
    store = Store.from_url(store_url)
    yield store
    if store.backend == "postgresql":
        _empty_postgres(store)
    store.dispose()


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    return request.getfixturevalue("redis_url")


@pytest.fixture
def job_queue(queue_url: str) -> Iterator[JobQueue]:
    """A queue on each backend, under a name (key prefix) unique to the test; flushed afterwards."""
    queue = JobQueue.from_url(queue_url, name=unique_queue_name())
    yield queue
    queue.flush()
    queue.close()
