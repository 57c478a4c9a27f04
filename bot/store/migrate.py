"""Run the Alembic migrations in ``modelherd/migrations`` programmatically (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

import modelherd.migrations

MIGRATIONS_DIR = Path(modelherd.migrations.__file__).parent


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations; ``engine`` is handed to env.py."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database of ``engine`` to ``revision``; concurrent callers serialize (see env.py)."""
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def revision(engine: Engine, message: str, autogenerate: bool = True) -> None:
    """Write a new migration file (developers: ``modelherd db revision -m "add locks"``)."""
    command.revision(alembic_config(engine), message=message, autogenerate=autogenerate)
