"""locks: per-key mutexes (serialise work on one PR) and model/environment locks held by a PR

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

from modelherd.store.db import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mutexes",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_mutexes")),
    )
    op.create_table(
        "model_locks",
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("pr_number", sa.Integer(), nullable=False),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("repo", "model", "environment", name=op.f("pk_model_locks")),
    )


def downgrade() -> None:
    op.drop_table("model_locks")
    op.drop_table("mutexes")
