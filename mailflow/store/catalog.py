"""Index archived files in the database: by request, person, moment, kind and direction.

The archive (:mod:`mailflow.store.archive`) holds the bytes; these rows say what each file is
to whom, so that `evidence` and `report poai` find a request's mail and a person's
products without reading the files. Each builder returns a row for the caller to add
to the transaction that also records what the file is evidence of.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.mail.spool import header_block
from mailflow.store.schema import (
    ArchiveEntryRow,
    ArchiveKind,
    AttachmentRow,
    Direction,
    InboundRow,
    OutboxRow,
    ProductRow,
)

_HEADER_BYTES = 64 * 1024
_ADDRESS = 320


def sender_of(raw: bytes) -> str | None:
    """Return the lower-cased From address of raw mail, read from its header block only."""
    head = header_block(raw[:_HEADER_BYTES])
    try:
        value = BytesHeaderParser(policy=compat32).parsebytes(head).get("from", "")
        pairs = getaddresses([str(value)[:4096]])
    except Exception:  # hostile headers: an unknown sender is not worth failing a message
        return None
    addresses = [a.strip().lower() for _, a in pairs if "@" in a]
    return addresses[0][:_ADDRESS] if addresses else None


def inbound_entry(
    ledger: InboundRow, raw: bytes, now: datetime, size: int | None = None
) -> ArchiveEntryRow:
    """Index one inbound message, with the request the ledger row ended up linked to.

    ``raw`` may be only the message's first bytes (its header block) when ``size`` says
    how long it is: a large message is never loaded to be indexed.
    """
    return ArchiveEntryRow(
        sha256=ledger.sha256,
        kind=ArchiveKind.EML,
        direction=Direction.IN,
        request_id=ledger.request_id,
        person=sender_of(raw),
        at=now,
        size=len(raw) if size is None else size,
        inbound_id=ledger.id,
    )


def attachment_entry(row: AttachmentRow, *, person: str | None, at: datetime) -> ArchiveEntryRow:
    """Index one archived attachment of an inbound message."""
    return ArchiveEntryRow(
        sha256=row.sha256,
        kind=ArchiveKind.ATTACHMENT,
        direction=Direction.IN,
        request_id=row.request_id,
        person=(person or None) and person[:_ADDRESS],
        at=at,
        filename=row.filename,
        content_type=row.content_type,
        size=row.size,
        inbound_id=row.inbound_id,
    )


def outbound_entry(row: OutboxRow, sha256: str) -> ArchiveEntryRow:
    """Index one outgoing message; it is saved together with its outbox row."""
    return ArchiveEntryRow(
        sha256=sha256,
        kind=ArchiveKind.EML,
        direction=Direction.OUT,
        request_id=row.request_id,
        person=row.recipients[0][:_ADDRESS] if row.recipients else None,
        at=row.created_at,
        size=len(row.raw),
        outbox=row,
    )


def indexed_digests(session: Session) -> set[str]:
    """Return every SHA-256 the database refers to: the files the archive must hold."""
    wanted: set[str] = set()
    for column in (ArchiveEntryRow.sha256, InboundRow.sha256, AttachmentRow.sha256):
        wanted.update(session.scalars(select(column).distinct()))
    for shots in session.scalars(select(ProductRow.screenshots)):
        wanted.update(_digests(shots))
    return wanted


def _digests(shots: Iterable[dict[str, str]]) -> Iterable[str]:
    return (shot["sha256"] for shot in shots if shot.get("sha256"))
