"""Add daemons and outbox claims: a claim names its holder, released when the holder is gone.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Rows a daemon of an earlier version claimed (``next_attempt_at`` pushed 15 minutes ahead)
are left as they are: they are sent once that time has passed, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOLDER_ID = 32


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    """Return a timezone-aware timestamp column (``timestamptz`` on PostgreSQL)."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create daemons (empty: each daemon registers when it starts); add the outbox claims."""
    op.create_table(
        "daemons",
        sa.Column("id", sa.String(HOLDER_ID), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("machine", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("process_start", sa.String(32), nullable=True),
        sa.Column("version", sa.String(64), nullable=False),
        _timestamp("started_at"),
        _timestamp("heartbeat_at"),
        sa.PrimaryKeyConstraint("id", name="pk_daemons"),
    )
    # Plain ADD COLUMN on both databases: no copy of the outbox table on SQLite.
    op.add_column("outbox", sa.Column("claimed_by", sa.String(HOLDER_ID), nullable=True))
    op.add_column(
        "outbox", sa.Column("releases", sa.Integer(), server_default="0", nullable=False)
    )
    op.create_index("ix_outbox_claimed_by", "outbox", ["claimed_by"])


def downgrade() -> None:
    """Drop the outbox claims and daemons."""
    op.drop_index("ix_outbox_claimed_by", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("releases")
        batch.drop_column("claimed_by")
    op.drop_table("daemons")
