"""rollouts: the rollout state machine and its append-only event log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

from modelherd.store.db import JSONType, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ACTIVE = "state IN ('applying', 'verifying', 'rolling_back')"


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("target", sa.String(32), nullable=False),
        sa.Column("cluster", sa.String(63), nullable=False),
        sa.Column("from_version", sa.String(64), nullable=True),
        sa.Column("to_version", sa.String(64), nullable=False),
        sa.Column("spec", JSONType, nullable=False),
        sa.Column("stable_spec", JSONType, nullable=True),
        sa.Column("candidate", JSONType, nullable=False),
        sa.Column("stable", JSONType, nullable=True),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("pr_number", sa.Integer(), nullable=True),
        sa.Column("sha", sa.String(64), nullable=True),
        sa.Column("steps", JSONType, nullable=False),
        sa.Column("verify_seconds", sa.Integer(), nullable=False),
        sa.Column("step_timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("current_step", sa.Integer(), nullable=False),
        sa.Column("waits_for", BigId, nullable=True),
        sa.Column("after_id", BigId, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("step_started_at", UTCDateTime(), nullable=True),
        sa.Column("ready_at", UTCDateTime(), nullable=True),
        sa.Column("next_check_at", UTCDateTime(), nullable=True),
        sa.Column("restored", sa.Boolean(), nullable=False),
        sa.Column("open_intent", BigId, nullable=True),
        sa.Column("lease_holder", sa.String(64), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("notes", JSONType, nullable=False),
        sa.Column("transitions", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
        sa.ForeignKeyConstraint(["waits_for"], ["rollouts.id"], name=op.f("fk_rollouts_waits_for_rollouts")),
        sa.ForeignKeyConstraint(["after_id"], ["rollouts.id"], name=op.f("fk_rollouts_after_id_rollouts")),
    )
    op.create_index("ix_rollouts_repo_model_environment", "rollouts", ["repo", "model", "environment"])
    op.create_index("ix_rollouts_state_next_check_at", "rollouts", ["state", "next_check_at"])
    op.create_index("uq_rollouts_active", "rollouts", ["repo", "model", "environment"], unique=True,
                    sqlite_where=sa.text(ACTIVE), postgresql_where=sa.text(ACTIVE))
    op.create_table(
        "rollout_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", BigId, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("percent", sa.Integer(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("intent_id", BigId, nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("detail", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_events")),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], name=op.f("fk_rollout_events_rollout_id_rollouts")),
    )
    op.create_index("ix_rollout_events_rollout_id", "rollout_events", ["rollout_id"])


def downgrade() -> None:
    op.drop_index("ix_rollout_events_rollout_id", table_name="rollout_events")
    op.drop_table("rollout_events")
    op.drop_index("uq_rollouts_active", table_name="rollouts")
    op.drop_index("ix_rollouts_state_next_check_at", table_name="rollouts")
    op.drop_index("ix_rollouts_repo_model_environment", table_name="rollouts")
    op.drop_table("rollouts")
