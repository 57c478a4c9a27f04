"""rollout idempotency: a rollout started by a delivery is found again by its key; progress published

``idempotency_key`` names what started the rollout (the delivery and command, or the merge, with the
model and environment), unique per repository, so a retried job finds the rollout it already started
instead of starting another. ``reported`` is the state last published to the forge (``state:step``);
a rollout whose state differs is published again by the sweep.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(255), nullable=True))
        batch.add_column(sa.Column("reported", sa.String(64), nullable=True))
    op.create_index("uq_rollouts_repo_idempotency_key", "rollouts", ["repo", "idempotency_key"], unique=True)
    # what ran before this revision was published (or is past publishing): nothing to publish again
    op.execute("UPDATE rollouts SET reported = state || ':' || CAST(current_step AS VARCHAR(12))")


def downgrade() -> None:
    op.drop_index("uq_rollouts_repo_idempotency_key", table_name="rollouts")
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_column("reported")
        batch.drop_column("idempotency_key")
