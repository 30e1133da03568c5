"""UI drift: which locator a step matched through, and runs degraded by a fallback

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 19:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add step.failed_locator (what found nothing before a fallback matched) and
    action.degraded (a step of the run needed a fallback)."""
    with op.batch_alter_table("step", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "failed_locator", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True
            )
        )
    with op.batch_alter_table("action", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("degraded", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    """Drop what the fallbacks recorded."""
    with op.batch_alter_table("action", schema=None) as batch_op:
        batch_op.drop_column("degraded")
    with op.batch_alter_table("step", schema=None) as batch_op:
        batch_op.drop_column("failed_locator")
