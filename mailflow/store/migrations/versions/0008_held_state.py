"""Held openings get columns of their own instead of living in the ledger's detail text.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

An opening held for its sender's ``CONFIRMO`` was known by its ``inbound.detail``
("held for CONFIRMO until <ISO date> (<procedure>[, daily cap reached: not asked])",
prefixed "held for CONFIRMO, expired: " once expired), and ``mailflow status`` read the
date and the procedure back out of that text. Now:

- ``inbound.held``: ``waiting``, ``not_asked`` (the daily cap kept the confirmation mail
  back) or ``expired``; NULL for every other mail;
- ``inbound.held_until`` and ``inbound.held_procedure``: until when it can be confirmed,
  and what it asks to open.

Rows held before this revision are filled from their detail, which stays as it was.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HELD = "held for CONFIRMO"
EXPIRED = f"{HELD}, expired:"
_DETAIL = re.compile(r"until (\S+) \((\w+)")

_inbound = sa.table(
    "inbound",
    sa.column("id", sa.Integer()),
    sa.column("detail", sa.Text()),
    sa.column("held", sa.String(16)),
    sa.column("held_until", sa.DateTime(timezone=True)),
    sa.column("held_procedure", sa.String(64)),
)


def upgrade() -> None:
    """Add the columns, then fill them for the openings already held."""
    op.add_column("inbound", sa.Column("held", sa.String(16), nullable=True))
    op.add_column("inbound", sa.Column("held_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("inbound", sa.Column("held_procedure", sa.String(64), nullable=True))
    op.create_index("ix_inbound_held", "inbound", ["held"])
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_inbound.c.id, _inbound.c.detail).where(_inbound.c.detail.like(f"{HELD}%"))
    ).all()
    for inbound_id, detail in rows:
        bind.execute(
            _inbound.update().where(_inbound.c.id == inbound_id).values(**held_of(detail))
        )


def held_of(detail: str) -> dict[str, object]:
    """Return the held columns an old ledger detail stands for."""
    if detail.startswith(EXPIRED):
        state = "expired"
    elif "not asked" in detail:
        state = "not_asked"
    else:
        state = "waiting"
    found = _DETAIL.search(detail)
    until = None
    if found is not None:
        try:
            until = datetime.fromisoformat(found[1]).astimezone(UTC)
        except ValueError:
            until = None
    return {"held": state, "held_until": until, "held_procedure": found[2] if found else None}


def downgrade() -> None:
    """Drop the columns (the detail text still says what they said)."""
    op.drop_index("ix_inbound_held", table_name="inbound")
    with op.batch_alter_table("inbound") as batch:
        batch.drop_column("held_procedure")
        batch.drop_column("held_until")
        batch.drop_column("held")
