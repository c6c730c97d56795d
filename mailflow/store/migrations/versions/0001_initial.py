"""Create the initial schema: requests, their history, the mail ledger and the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Written out in full rather than importing mailflow.store.schema, so that this revision keeps
meaning what it meant when later revisions change the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADDRESS = 320
MESSAGE_ID = 998
SHA256_HEX = 64


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    """Return a timezone-aware timestamp column (``timestamptz`` on PostgreSQL)."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id() -> sa.Column[Any]:
    """Return an integer surrogate primary key column."""
    return sa.Column("id", sa.Integer(), nullable=False)


def _fk(column: str, table: str, *, owner: str) -> sa.ForeignKeyConstraint:
    """Return a foreign key named by the project's naming convention."""
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], name=f"fk_{owner}_{column}_{table}")


def _one_of(owner: str, column: str, values: Sequence[str]) -> sa.CheckConstraint:
    """Return the CHECK constraint that restricts ``column`` to ``values``."""
    listed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=f"ck_{owner}_{column}_valid")


def upgrade() -> None:
    """Create every table of mailflow 0.1."""
    op.create_table(
        "code_sequences",
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", "year", name="pk_code_sequences"),
    )
    op.create_table(
        "mailbox_state",
        sa.Column("mailbox", sa.String(255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("mailbox", name="pk_mailbox_state"),
    )
    op.create_table(
        "requests",
        _id(),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("procedure", sa.String(64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("stage_roles", sa.JSON(), nullable=False),
        _timestamp("stage_entered_at"),
        sa.Column("votes", sa.JSON(), nullable=True),
        sa.Column("requester", sa.String(ADDRESS), nullable=False),
        sa.Column("unit", sa.String(64), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("protected", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("cronograma", sa.JSON(), nullable=True),
        sa.Column("publish_from", sa.Date(), nullable=True),
        sa.Column("publish_until", sa.Date(), nullable=True),
        _timestamp("due_at", nullable=True),
        sa.Column("thread_message_id", sa.String(MESSAGE_ID), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        _one_of(
            "requests",
            "status",
            ["en_curso", "publicado", "rechazado", "cancelado", "eliminado"],
        ),
        sa.PrimaryKeyConstraint("id", name="pk_requests"),
        sa.UniqueConstraint("code", name="uq_requests_code"),
    )
    op.create_index("ix_requests_status_due_at", "requests", ["status", "due_at"])
    op.create_index("ix_requests_thread_message_id", "requests", ["thread_message_id"])

    op.create_table(
        "inbound",
        _id(),
        sa.Column("mailbox", sa.String(255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.String(MESSAGE_ID), nullable=True),
        sa.Column("sha256", sa.String(SHA256_HEX), nullable=False),
        _timestamp("received_at"),
        _timestamp("processed_at"),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Integer(), nullable=True),
        _one_of(
            "inbound",
            "outcome",
            [
                "processed",
                "duplicate",
                "auto_reply",
                "format_error",
                "unauthorized",
                "unknown_sender",
                "quarantined",
            ],
        ),
        _fk("request_id", "requests", owner="inbound"),
        sa.PrimaryKeyConstraint("id", name="pk_inbound"),
        sa.UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_inbound_mailbox_uid"),
    )
    op.create_index("ix_inbound_message_id", "inbound", ["message_id"])
    op.create_index("ix_inbound_sha256", "inbound", ["sha256"])
    op.create_index("ix_inbound_request_id", "inbound", ["request_id"])

    op.create_table(
        "outbox",
        _id(),
        sa.Column("message_id", sa.String(MESSAGE_ID), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        _timestamp("next_attempt_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("sent_at", nullable=True),
        _one_of("outbox", "status", ["pending", "sent", "failed"]),
        _fk("request_id", "requests", owner="outbox"),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("message_id", name="uq_outbox_message_id"),
    )
    op.create_index("ix_outbox_request_id", "outbox", ["request_id"])
    op.create_index("ix_outbox_status_next_attempt_at", "outbox", ["status", "next_attempt_at"])

    op.create_table(
        "reminders",
        _id(),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("stage", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("for_date", sa.Date(), nullable=True),
        _timestamp("created_at"),
        _fk("request_id", "requests", owner="reminders"),
        sa.PrimaryKeyConstraint("id", name="pk_reminders"),
        sa.UniqueConstraint("key", name="uq_reminders_key"),
    )
    op.create_index("ix_reminders_request_id", "reminders", ["request_id"])

    op.create_table(
        "attachments",
        _id(),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("inbound_id", sa.Integer(), nullable=True),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(SHA256_HEX), nullable=False),
        _fk("request_id", "requests", owner="attachments"),
        _fk("inbound_id", "inbound", owner="attachments"),
        sa.PrimaryKeyConstraint("id", name="pk_attachments"),
    )
    op.create_index("ix_attachments_request_id", "attachments", ["request_id"])
    op.create_index("ix_attachments_inbound_id", "attachments", ["inbound_id"])
    op.create_index("ix_attachments_sha256", "attachments", ["sha256"])

    op.create_table(
        "history",
        _id(),
        sa.Column("request_id", sa.Integer(), nullable=False),
        _timestamp("at"),
        sa.Column("actor", sa.String(ADDRESS), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("to_stage", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("inbound_id", sa.Integer(), nullable=True),
        _fk("request_id", "requests", owner="history"),
        _fk("inbound_id", "inbound", owner="history"),
        sa.PrimaryKeyConstraint("id", name="pk_history"),
    )
    op.create_index("ix_history_request_id", "history", ["request_id"])
    op.create_index("ix_history_inbound_id", "history", ["inbound_id"])

    op.create_table(
        "refusals",
        _id(),
        sa.Column("request_id", sa.Integer(), nullable=True),
        _timestamp("at"),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("action", sa.String(32), nullable=True),
        sa.Column("stage", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("inbound_id", sa.Integer(), nullable=True),
        _fk("request_id", "requests", owner="refusals"),
        _fk("inbound_id", "inbound", owner="refusals"),
        sa.PrimaryKeyConstraint("id", name="pk_refusals"),
    )
    op.create_index("ix_refusals_request_id", "refusals", ["request_id"])
    op.create_index("ix_refusals_inbound_id", "refusals", ["inbound_id"])


def downgrade() -> None:
    """Drop every table, children before parents (indexes go with their tables)."""
    for table in (
        "refusals",
        "history",
        "attachments",
        "reminders",
        "outbox",
        "inbound",
        "requests",
        "mailbox_state",
        "code_sequences",
    ):
        op.drop_table(table)
