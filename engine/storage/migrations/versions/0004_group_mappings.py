"""group mappings: groups named otherwise grant an entitlement value

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the group_mapping table."""
    op.create_table(
        "group_mapping",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("integration_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("group_kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("group_key", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("group_label", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["integration_id"], ["integration.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "integration_id", "group_kind", "group_key", "value", name="uq_group_mapping"
        ),
    )
    with op.batch_alter_table("group_mapping", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_group_mapping_integration_id"), ["integration_id"], unique=False
        )


def downgrade() -> None:
    """Drop the group_mapping table."""
    with op.batch_alter_table("group_mapping", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_group_mapping_integration_id"))
    op.drop_table("group_mapping")
