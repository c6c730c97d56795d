"""Add daemon_status: the daemon's heartbeat and last events, read by `mailflow status`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGE_ID = 998


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    """Return a timezone-aware timestamp column (``timestamptz`` on PostgreSQL)."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create daemon_status (empty: the next daemon start fills it)."""
    op.create_table(
        "daemon_status",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        _timestamp("started_at"),
        _timestamp("heartbeat_at"),
        sa.Column("wait_seconds", sa.Integer(), nullable=False),
        sa.Column("imap_connected", sa.Boolean(), server_default=sa.false(), nullable=False),
        _timestamp("imap_since"),
        _timestamp("last_wake_at", nullable=True),
        _timestamp("last_message_at", nullable=True),
        sa.Column("last_message_id", sa.String(MESSAGE_ID), nullable=True),
        sa.Column("last_outcome", sa.String(32), nullable=True),
        sa.Column("last_request", sa.String(32), nullable=True),
        _timestamp("stopped_at", nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_daemon_status"),
    )


def downgrade() -> None:
    """Drop daemon_status."""
    op.drop_table("daemon_status")
