"""Files travel with the request: who and which stage each file came from, mails kept whole.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08

- ``attachments.stage`` / ``attachments.person``: the stage the file was delivered at and
  who sent it, so every mail can list the request's files with where they came from. Old
  rows are filled from the history (the stage of the action their mail carried) and from
  the archive index (the sender).
- ``attachments.inline``: the part was shown inside the mail (``Content-Disposition:
  inline`` or a ``Content-ID``): a tiny one is a signature logo, kept but never forwarded.
- ``outbox.eml_sha256`` / ``outbox.files``: a mail that carries files is written to the
  archive by streaming and sent from there (``raw`` stays empty); ``files`` names the
  files it carried.
- Openings confirmed by ``CONFIRMO`` before this revision: the held mail and the
  confirmation mail we sent are linked to the request they opened, so its evidence holds
  its opening mail.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADDRESS = 320
SHA256_HEX = 64
HELD = "held for CONFIRMO"


def upgrade() -> None:
    """Add the columns, then fill them for what is already stored."""
    with op.batch_alter_table("attachments") as batch:
        batch.add_column(sa.Column("stage", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("person", sa.String(ADDRESS), nullable=True))
        batch.add_column(
            sa.Column("inline", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("eml_sha256", sa.String(SHA256_HEX), nullable=True))
        batch.add_column(sa.Column("files", sa.JSON(), nullable=True))
    _fill_attachments()
    _link_confirmed_openings()


def _fill_attachments() -> None:
    """Give old attachments the stage of their mail's action and their sender."""
    op.execute(
        "UPDATE attachments SET stage = (SELECT MIN(h.stage) FROM history h "
        "WHERE h.inbound_id = attachments.inbound_id "
        "AND h.request_id = attachments.request_id) "
        "WHERE stage IS NULL AND inbound_id IS NOT NULL"
    )
    op.execute(
        "UPDATE attachments SET person = (SELECT MIN(e.person) FROM archive_entries e "
        "WHERE e.kind = 'attachment' AND e.inbound_id = attachments.inbound_id "
        "AND e.sha256 = attachments.sha256) "
        "WHERE person IS NULL AND inbound_id IS NOT NULL"
    )


def _link_confirmed_openings() -> None:
    """Link the held mail and our confirmation mail of each confirmed opening to its request.

    The confirmation mail's Message-ID carries the token of the held mail's pseudo-code
    (``<rrss-<prefix>-0000-<inbound id, 8 digits>-s0-…>``), so it is found without
    reading the archive.
    """
    bind = op.get_bind()
    held = bind.execute(
        sa.text(
            "SELECT id, request_id FROM inbound WHERE request_id IS NOT NULL "
            "AND detail LIKE :held"
        ),
        {"held": f"{HELD}%"},
    ).all()
    for inbound_id, request_id in held:
        bind.execute(
            sa.text(
                "UPDATE archive_entries SET request_id = :request "
                "WHERE inbound_id = :inbound AND request_id IS NULL"
            ),
            {"request": request_id, "inbound": inbound_id},
        )
        pattern = f"<rrss-%-0000-{inbound_id:08d}-s0-%"
        outbox_ids = [
            row[0]
            for row in bind.execute(
                sa.text(
                    "SELECT id FROM outbox WHERE kind = 'confirm_opening' "
                    "AND request_id IS NULL AND message_id LIKE :pattern"
                ),
                {"pattern": pattern},
            )
        ]
        for outbox_id in outbox_ids:
            bind.execute(
                sa.text("UPDATE outbox SET request_id = :request WHERE id = :id"),
                {"request": request_id, "id": outbox_id},
            )
            bind.execute(
                sa.text(
                    "UPDATE archive_entries SET request_id = :request "
                    "WHERE outbox_id = :id AND request_id IS NULL"
                ),
                {"request": request_id, "id": outbox_id},
            )


def downgrade() -> None:
    """Drop the columns (the links made to confirmed openings stay: they are true)."""
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("files")
        batch.drop_column("eml_sha256")
    with op.batch_alter_table("attachments") as batch:
        batch.drop_column("inline")
        batch.drop_column("person")
        batch.drop_column("stage")
