"""rollout action: a rollout deploys a version, or decommissions the model/environment

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(sa.Column("action", sa.String(16), nullable=False, server_default="deploy"))


def downgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_column("action")
