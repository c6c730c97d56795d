"""Index the archive (archive_entries) and record published products (products).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Existing inbound messages and attachments are indexed from the ledger and the
attachments table; their sender is unknown to the database, so ``person`` stays NULL.
Outgoing mails sent before this revision were never archived and are not indexed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADDRESS = 320
SHA256_HEX = 64


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    """Return a timezone-aware timestamp column (``timestamptz`` on PostgreSQL)."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _fk(column: str, table: str, *, owner: str) -> sa.ForeignKeyConstraint:
    """Return a foreign key named by the project's naming convention."""
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], name=f"fk_{owner}_{column}_{table}")


def _one_of(owner: str, column: str, values: Sequence[str]) -> sa.CheckConstraint:
    """Return the CHECK constraint that restricts ``column`` to ``values``."""
    listed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=f"ck_{owner}_{column}_valid")


def upgrade() -> None:
    """Create archive_entries and products; index the messages archived so far."""
    op.create_table(
        "archive_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(SHA256_HEX), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("person", sa.String(ADDRESS), nullable=True),
        _timestamp("at"),
        sa.Column("filename", sa.Text(), nullable=True),
        sa.Column("content_type", sa.String(255), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("inbound_id", sa.Integer(), nullable=True),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        _one_of("archive_entries", "kind", ["eml", "attachment"]),
        _one_of("archive_entries", "direction", ["in", "out"]),
        _fk("request_id", "requests", owner="archive_entries"),
        _fk("inbound_id", "inbound", owner="archive_entries"),
        _fk("outbox_id", "outbox", owner="archive_entries"),
        sa.PrimaryKeyConstraint("id", name="pk_archive_entries"),
    )
    for column in ("sha256", "kind", "request_id", "person", "at", "inbound_id", "outbox_id"):
        op.create_index(f"ix_archive_entries_{column}", "archive_entries", [column])

    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("history_id", sa.Integer(), nullable=True),
        sa.Column("inbound_id", sa.Integer(), nullable=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("urls", sa.JSON(), nullable=False),
        sa.Column("screenshots", sa.JSON(), nullable=False),
        sa.Column("designer", sa.String(ADDRESS), nullable=True),
        _timestamp("designed_at", nullable=True),
        sa.Column("design_inbound_id", sa.Integer(), nullable=True),
        sa.Column("publisher", sa.String(ADDRESS), nullable=False),
        _timestamp("published_at"),
        _one_of(
            "products",
            "type",
            ["post", "infografia", "video_corto", "fotografia", "ilustracion"],
        ),
        _fk("request_id", "requests", owner="products"),
        _fk("history_id", "history", owner="products"),
        _fk("inbound_id", "inbound", owner="products"),
        _fk("design_inbound_id", "inbound", owner="products"),
        sa.PrimaryKeyConstraint("id", name="pk_products"),
    )
    op.create_index("ix_products_request_id", "products", ["request_id"])
    op.create_index("ix_products_designer", "products", ["designer"])
    op.create_index("ix_products_publisher", "products", ["publisher"])
    op.create_index("ix_products_published_at", "products", ["published_at"])
    _index_existing()


def _index_existing() -> None:
    """Index the inbound messages and attachments archived before this revision."""
    # The size of an old message is unknown to the database: 0 until `archive verify`
    # (which re-reads every file anyway) is run.
    op.execute(
        "INSERT INTO archive_entries (sha256, kind, direction, request_id, person, at, size, "
        "inbound_id) SELECT sha256, 'eml', 'in', request_id, NULL, received_at, 0, id "
        "FROM inbound"
    )
    op.execute(
        "INSERT INTO archive_entries (sha256, kind, direction, request_id, person, at, "
        "filename, content_type, size, inbound_id) "
        "SELECT a.sha256, 'attachment', 'in', a.request_id, NULL, i.received_at, a.filename, "
        "a.content_type, a.size, a.inbound_id "
        "FROM attachments a JOIN inbound i ON i.id = a.inbound_id"
    )


def downgrade() -> None:
    """Drop the archive index and the products (the archived files stay)."""
    op.drop_table("products")
    op.drop_table("archive_entries")
