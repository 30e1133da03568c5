"""job states and lanes, single flight, provenance, reconciled generation, the breaker

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 12:50:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED = "status = 'queued'"
PENDING = "status IN ('queued', 'retrying', 'waiting')"
RUNNING = "status = 'running'"


def _partial_unique(name: str, column: str, where: str) -> None:
    """Create a unique index over the rows in some states, on SQLite and PostgreSQL alike."""
    op.create_index(
        name,
        "job",
        [column],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    """Guard one pending and one running job per identity and group; add back-off columns."""
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("not_before", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("superseded_by", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("lane", sa.String(length=16), server_default="normal", nullable=False)
        )
    op.drop_index("uq_job_queued_identity", table_name="job")
    op.drop_index("uq_job_queued_group", table_name="job")
    _partial_unique("uq_job_pending_identity", "identity_id", PENDING)
    _partial_unique("uq_job_pending_group", "group_id", PENDING)
    _partial_unique("uq_job_running_identity", "identity_id", RUNNING)
    _partial_unique("uq_job_running_group", "group_id", RUNNING)
    op.create_index("ix_job_status_not_before", "job", ["status", "not_before"])
    with op.batch_alter_table("action", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flow_sha256", sa.String(length=64), nullable=True))
    with op.batch_alter_table("app_account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reconciled_generation", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("integration", schema=None) as batch_op:
        batch_op.add_column(sa.Column("health_detail", sa.String(length=2000), nullable=True))
        batch_op.add_column(
            sa.Column("breaker", sa.String(length=16), server_default="closed", nullable=False)
        )
        batch_op.add_column(sa.Column("refusals", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("breaker_changed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
    op.execute(
        "UPDATE app_account SET reconciled_generation = "
        "(SELECT generation FROM identity WHERE identity.id = app_account.identity_id)"
    )


def downgrade() -> None:
    """Return to one queued job per identity and group."""
    with op.batch_alter_table("integration", schema=None) as batch_op:
        for column in ("breaker_changed_at", "refusals", "breaker", "health_detail"):
            batch_op.drop_column(column)
    with op.batch_alter_table("app_account", schema=None) as batch_op:
        batch_op.drop_column("reconciled_generation")
    with op.batch_alter_table("action", schema=None) as batch_op:
        batch_op.drop_column("flow_sha256")
    op.drop_index("ix_job_status_not_before", table_name="job")
    for name in (
        "uq_job_running_group",
        "uq_job_running_identity",
        "uq_job_pending_group",
        "uq_job_pending_identity",
    ):
        op.drop_index(name, table_name="job")
    _partial_unique("uq_job_queued_identity", "identity_id", QUEUED)
    _partial_unique("uq_job_queued_group", "group_id", QUEUED)
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("lane")
        batch_op.drop_column("superseded_by")
        batch_op.drop_column("not_before")
