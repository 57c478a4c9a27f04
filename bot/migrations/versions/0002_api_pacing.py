"""api pacing: the next free request slot per forge installation and lane (modelherd.pacing.SqlPacer)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_pacing",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("lane", sa.String(1), nullable=False),
        sa.Column("next_at", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("key", "lane", name=op.f("pk_api_pacing")),
    )


def downgrade() -> None:
    op.drop_table("api_pacing")
