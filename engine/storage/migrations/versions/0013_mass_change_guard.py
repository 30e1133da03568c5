"""mass-change guard: held removals awaiting approval

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 19:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARD_MAX_REMOVALS_AT_0013 = "25"
"""The default the column starts with; a migration keeps its own copy of the constant."""


def upgrade() -> None:
    """Add the guard's setting and approval time to integration, and the removal table."""
    with op.batch_alter_table("integration", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "max_removals_per_hour",
                sa.Integer(),
                nullable=False,
                server_default=sa.text(GUARD_MAX_REMOVALS_AT_0013),
            )
        )
        batch_op.add_column(
            sa.Column("removals_approved_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
    op.create_table(
        "removal",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("integration_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("identity_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("counted_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("approved_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("approved_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["integration_id"], ["integration.id"]),
        sa.ForeignKeyConstraint(["identity_id"], ["identity.id"]),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id"),
    )
    with op.batch_alter_table("removal", schema=None) as batch_op:
        batch_op.create_index("ix_removal_window", ["integration_id", "counted_at"])
        batch_op.create_index("ix_removal_status", ["integration_id", "status"])


def downgrade() -> None:
    """Drop the removal table and the guard's columns."""
    op.drop_table("removal")
    with op.batch_alter_table("integration", schema=None) as batch_op:
        batch_op.drop_column("removals_approved_at")
        batch_op.drop_column("max_removals_per_hour")
