"""pulls and pins: what was last published per pull request; environments pinned by /rollback

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

from modelherd.store.db import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pull_requests",
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("base_sha", sa.String(64), nullable=False),
        sa.Column("plan_conclusion", sa.String(16), nullable=False),
        sa.Column("approvals_status", sa.String(16), nullable=False),
        sa.Column("comment_body", sa.Text(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("repo", "number", name=op.f("pk_pull_requests")),
    )
    op.create_table(
        "pins",
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("revert_pr", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("repo", "model", "environment", name=op.f("pk_pins")),
    )


def downgrade() -> None:
    op.drop_table("pins")
    op.drop_table("pull_requests")
