"""slack: one thread per pull request and channel, and the outbox of messages to send

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

from modelherd.store.db import JSONType, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "slack_threads",
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("pr_number", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=True),
        sa.Column("thread_ts", sa.String(32), nullable=True),
        sa.Column("summary_ts", sa.String(32), nullable=True),
        sa.Column("summary", JSONType, nullable=False),
        sa.Column("summary_hash", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("repo", "pr_number", "channel", name=op.f("pk_slack_threads")),
    )
    op.create_table(
        "slack_messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("pr_number", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("ts", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slack_messages")),
        sa.UniqueConstraint("key", name=op.f("uq_slack_messages_key")),
        sa.CheckConstraint("state IN ('pending', 'sent', 'failed')", name=op.f("ck_slack_messages_state")),
    )
    op.create_index("ix_slack_messages_state_next_attempt_at", "slack_messages", ["state", "next_attempt_at"])
    op.create_index("ix_slack_messages_repo_pr_number_channel", "slack_messages", ["repo", "pr_number", "channel"])


def downgrade() -> None:
    op.drop_index("ix_slack_messages_repo_pr_number_channel", table_name="slack_messages")
    op.drop_index("ix_slack_messages_state_next_attempt_at", table_name="slack_messages")
    op.drop_table("slack_messages")
    op.drop_table("slack_threads")
