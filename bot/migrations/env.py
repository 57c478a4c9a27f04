"""Alembic environment: runs online against the engine passed in ``config.attributes["engine"]``.

Concurrent upgrades (several processes starting at once) serialize: on PostgreSQL with a transaction
advisory lock, on SQLite through the store's ``BEGIN IMMEDIATE`` transactions (SQLite's DDL is
transactional, so the whole upgrade is one transaction there too).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

import modelherd.store.models  # noqa: F401  (registers every table on Base.metadata)
from modelherd.store.db import Base, make_engine

MIGRATION_LOCK_ID = 0x6D6F64656C  # "model"

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # plain `alembic` CLI use with sqlalchemy.url set
    engine = make_engine(config.get_main_option("sqlalchemy.url"))

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True,
                      transactional_ddl=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_ID})
        context.run_migrations()
