"""fragment provenance: the SHA-256 of each fragment an action's flow uses

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 10:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add fragment_sha256 to action: the fragments its flow uses, by name, with their hashes."""
    with op.batch_alter_table("action", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fragment_sha256", sa.JSON(), nullable=False, server_default="{}")
        )


def downgrade() -> None:
    """Drop the fragments' hashes."""
    with op.batch_alter_table("action", schema=None) as batch_op:
        batch_op.drop_column("fragment_sha256")
