"""direct assignments: integration API keys, assignments, idempotency keys

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 19:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = "expired_at IS NULL AND revoked_at IS NULL AND expires_at IS NOT NULL"
"""The assignments the expiry timer still has to look at (models.ASSIGNMENT_DUE_SQL)."""


def _id(name: str, nullable: bool = False) -> sa.Column:
    """Return a 32-character id column."""
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=32), nullable=nullable)


def _text(name: str, length: int, nullable: bool = False) -> sa.Column:
    """Return a string column of a length."""
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=nullable)


def _time(name: str, nullable: bool = False) -> sa.Column:
    """Return a UTC timestamp column."""
    return sa.Column(name, sqlmodel.sql.sqltypes.UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    """Create integration_key, assignment and assignment_request."""
    op.create_table(
        "integration_key",
        _id("id"),
        _id("integration_id"),
        _text("name", 200),
        _text("key_hash", 64),
        _time("created_at"),
        _time("last_used_at", nullable=True),
        _time("revoked_at", nullable=True),
        sa.ForeignKeyConstraint(["integration_id"], ["integration.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    with op.batch_alter_table("integration_key", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_integration_key_integration_id"), ["integration_id"], unique=False
        )
    op.create_table(
        "assignment",
        _id("id"),
        _id("integration_id"),
        _id("identity_id"),
        _text("value", 500),
        _text("reason", 500),
        _text("created_by", 200),
        _time("created_at"),
        _time("expires_at", nullable=True),
        _time("revoked_at", nullable=True),
        _text("revoked_by", 200, nullable=True),
        _time("expired_at", nullable=True),
        sa.ForeignKeyConstraint(["integration_id"], ["integration.id"]),
        sa.ForeignKeyConstraint(["identity_id"], ["identity.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.create_index("ix_assignment_identity", ["identity_id", "created_at"])
        batch_op.create_index("ix_assignment_listing", ["integration_id", "created_at", "id"])
        batch_op.create_index(
            "ix_assignment_due",
            ["expires_at"],
            sqlite_where=sa.text(DUE),
            postgresql_where=sa.text(DUE),
        )
    op.create_table(
        "assignment_request",
        _id("id"),
        _id("integration_id"),
        _text("idempotency_key", 255),
        _text("request_sha256", 64),
        _id("assignment_id", nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        _time("created_at"),
        sa.ForeignKeyConstraint(["integration_id"], ["integration.id"]),
        sa.ForeignKeyConstraint(["assignment_id"], ["assignment.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("integration_id", "idempotency_key", name="uq_assignment_request_key"),
    )


def downgrade() -> None:
    """Drop the assignments' tables."""
    op.drop_table("assignment_request")
    op.drop_table("assignment")
    op.drop_table("integration_key")
