"""drift and onboarding: observed accounts, orphans, drift reports, the import state

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 19:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING_INVENTORY = "kind = 'inventory' AND status IN ('queued', 'retrying', 'waiting')"
RUNNING_INVENTORY = "kind = 'inventory' AND status = 'running'"
"""One pending and one running inventory per integration (models.INVENTORY_SQL)."""


def _id(name: str, nullable: bool = False) -> sa.Column:
    """Return a 32-character id column."""
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=32), nullable=nullable)


def _when(name: str, nullable: bool = False) -> sa.Column:
    """Return a UTC timestamp column."""
    return sa.Column(name, sqlmodel.sql.sqltypes.UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    """Add the import state and inventory schedule, job kinds, observed existence, the
    orphans and the drift reports."""
    with op.batch_alter_table("integration", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "onboarding",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="ready",
            )
        )
        batch_op.add_column(
            sa.Column("remediate", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(_when("next_inventory_at", nullable=True))
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "kind",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="reconcile",
            )
        )
    for name, where in (
        ("uq_job_pending_inventory", PENDING_INVENTORY),
        ("uq_job_running_inventory", RUNNING_INVENTORY),
    ):
        op.create_index(
            name,
            "job",
            ["integration_id"],
            unique=True,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )
    with op.batch_alter_table("app_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("observed_exists", sa.Boolean(), nullable=True))
        batch_op.add_column(_when("inventoried_at", nullable=True))
    op.create_table(
        "app_orphan",
        _id("id"),
        _id("integration_id"),
        sa.Column("app_key", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("match_key", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=True),
        sa.Column("entitlements", sa.JSON(), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        _when("first_seen_at"),
        _when("seen_at"),
        _when("deactivated_at", nullable=True),
        sa.ForeignKeyConstraint(["integration_id"], ["integration.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("integration_id", "app_key", name="uq_app_orphan_key"),
    )
    op.create_index("ix_app_orphan_match", "app_orphan", ["integration_id", "match_key"])
    op.create_table(
        "drift_report",
        _id("id"),
        _id("integration_id"),
        _id("job_id"),
        _when("created_at"),
        sa.Column("imported", sa.Boolean(), nullable=False),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("orphans", sa.Integer(), nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("differing", sa.Integer(), nullable=False),
        sa.Column("protected", sa.Integer(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["integration_id"], ["integration.id"]),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_drift_report_latest", "drift_report", ["integration_id", "created_at"])


def downgrade() -> None:
    """Drop the drift reports, the orphans and the columns this revision added."""
    op.drop_table("drift_report")
    op.drop_table("app_orphan")
    with op.batch_alter_table("app_account", schema=None) as batch_op:
        batch_op.drop_column("inventoried_at")
        batch_op.drop_column("observed_exists")
    op.drop_index("uq_job_running_inventory", table_name="job")
    op.drop_index("uq_job_pending_inventory", table_name="job")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("kind")
    with op.batch_alter_table("integration", schema=None) as batch_op:
        batch_op.drop_column("next_inventory_at")
        batch_op.drop_column("remediate")
        batch_op.drop_column("onboarding")
