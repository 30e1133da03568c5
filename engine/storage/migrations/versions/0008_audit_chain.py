"""the audit chain: each audit event numbered and hashed with the hash of the one before

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 10:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Give audit_event a job, a unique place in the chain, and the two hashes."""
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("prev_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(
            sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_audit_event_job_id"), ["job_id"], unique=False)
        batch_op.create_unique_constraint("uq_audit_event_seq", ["seq"])


def downgrade() -> None:
    """Drop the chain's columns."""
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_constraint("uq_audit_event_seq", type_="unique")
        batch_op.drop_index(batch_op.f("ix_audit_event_job_id"))
        batch_op.drop_column("sha256")
        batch_op.drop_column("prev_sha256")
        batch_op.drop_column("seq")
        batch_op.drop_column("job_id")
