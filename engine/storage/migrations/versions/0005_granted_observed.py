"""granted apart from observed: observed account state, authoritative and protected accounts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 10:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the observed fields to app_account and the ownership settings to integration."""
    with op.batch_alter_table("integration", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("authoritative", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("protected_accounts", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(
            sa.Column("delete_users", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("app_account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("observed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("observed_active", sa.Boolean(), nullable=True))
        batch_op.add_column(
            sa.Column("observed_entitlements", sa.JSON(), nullable=False, server_default="[]")
        )


def downgrade() -> None:
    """Drop the observed fields and the ownership settings."""
    with op.batch_alter_table("app_account", schema=None) as batch_op:
        batch_op.drop_column("observed_entitlements")
        batch_op.drop_column("observed_active")
        batch_op.drop_column("observed_at")
    with op.batch_alter_table("integration", schema=None) as batch_op:
        batch_op.drop_column("delete_users")
        batch_op.drop_column("protected_accounts")
        batch_op.drop_column("authoritative")
