"""Add inbound.completes_id: a reply completing an incomplete request names its first mail.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable column, its foreign key and its index (existing rows stay NULL)."""
    with op.batch_alter_table("inbound") as batch:
        batch.add_column(sa.Column("completes_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_inbound_completes_id_inbound", "inbound", ["completes_id"], ["id"]
        )
        batch.create_index("ix_inbound_completes_id", ["completes_id"])


def downgrade() -> None:
    """Drop the column with its index and foreign key."""
    with op.batch_alter_table("inbound") as batch:
        batch.drop_index("ix_inbound_completes_id")
        batch.drop_constraint("fk_inbound_completes_id_inbound", type_="foreignkey")
        batch.drop_column("completes_id")
