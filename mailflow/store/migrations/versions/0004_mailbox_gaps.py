"""Add mailbox_gaps: UIDs that disappeared from the mailbox before mailflow fetched them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create mailbox_gaps (empty: gaps are noticed from the next pass on)."""
    op.create_table(
        "mailbox_gaps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("noticed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mailbox_gaps"),
        sa.UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_mailbox_gaps_mailbox_uid"),
    )
    op.create_index("ix_mailbox_gaps_noticed_at", "mailbox_gaps", ["noticed_at"])
    op.create_index("ix_mailbox_gaps_reported_at", "mailbox_gaps", ["reported_at"])


def downgrade() -> None:
    """Drop mailbox_gaps."""
    op.drop_index("ix_mailbox_gaps_reported_at", table_name="mailbox_gaps")
    op.drop_index("ix_mailbox_gaps_noticed_at", table_name="mailbox_gaps")
    op.drop_table("mailbox_gaps")
