"""events and effects

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

from modelherd.store.db import JSONType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("forge", sa.String(16), nullable=False),
        sa.Column("delivery_id", sa.String(128), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=True),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("repo", sa.String(255), nullable=True),
        sa.Column("headers", JSONType, nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("forge", "delivery_id", name=op.f("uq_events_forge_delivery_id")),
        sa.CheckConstraint("state IN ('queued', 'running', 'done', 'skipped', 'failed')",
                           name=op.f("ck_events_state")),
    )
    op.create_index("ix_events_state_lease_until", "events", ["state", "lease_until"])
    op.create_table(
        "effects",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("event_id", BigId, nullable=True),
        sa.Column("result", JSONType, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_effects")),
    )


def downgrade() -> None:
    op.drop_table("effects")
    op.drop_index("ix_events_state_lease_until", table_name="events")
    op.drop_table("events")
