"""operators, token roles, the SCIM request log and the Activity's indexes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 10:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create operator and scim_request, give tokens a role, index jobs newest first."""
    op.create_table(
        "operator",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("username", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "scim_request",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("integration_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("method", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("path", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("identity_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.ForeignKeyConstraint(["integration_id"], ["integration.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("scim_request", schema=None) as batch_op:
        batch_op.create_index("ix_scim_request_listing", ["integration_id", "at", "id"])
        batch_op.create_index(batch_op.f("ix_scim_request_at"), ["at"], unique=False)
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "role",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="admin",
            )
        )
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.create_index("ix_job_activity", ["created_at", "id"])
        batch_op.create_index("ix_job_activity_integration", ["integration_id", "created_at", "id"])


def downgrade() -> None:
    """Drop the Activity's indexes, the tokens' role, scim_request and operator."""
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index("ix_job_activity_integration")
        batch_op.drop_index("ix_job_activity")
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_column("role")
    with op.batch_alter_table("scim_request", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scim_request_at"))
        batch_op.drop_index("ix_scim_request_listing")
    op.drop_table("scim_request")
    op.drop_table("operator")
