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

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailflow.mail.spool import header_block
from mailflow.store.schema import (
    ArchiveEntryRow,
    ArchiveKind,
    AttachmentRow,
    Direction,
    InboundRow,
    HistoryRow,
    OutboxRow,
    ProductRow,
    RequestRow,
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


def outbound_entry(row: OutboxRow, sha256: str, size: int) -> ArchiveEntryRow:
    """Index one outgoing message of ``size`` bytes; it is saved together with its outbox row."""
    return ArchiveEntryRow(
        sha256=sha256,
        kind=ArchiveKind.EML,
        direction=Direction.OUT,
        request_id=row.request_id,
        person=row.recipients[0][:_ADDRESS] if row.recipients else None,
        at=row.created_at,
        size=size,
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


def link_inbound(session: Session, inbound_ids: Iterable[int], request_id: int) -> None:
    """Make earlier inbound mails (and their index entries) part of a request's evidence.

    A held opening is indexed before its request exists; so is a request with missing
    fields that its sender completed by replying to our form.
    """
    ids = list(inbound_ids)
    if not ids:
        return
    session.execute(
        update(InboundRow)
        .where(InboundRow.id.in_(ids), InboundRow.request_id.is_(None))
        .values(request_id=request_id)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(ArchiveEntryRow)
        .where(ArchiveEntryRow.inbound_id.in_(ids), ArchiveEntryRow.request_id.is_(None))
        .values(request_id=request_id)
        .execution_options(synchronize_session=False)
    )


# What we send about a mail before its request exists: the CONFIRMO question of a held
# opening (and its reminder), and the "falta …" list of an incomplete one.
BEFORE_OPENING = ("confirm_opening", "help")


def link_confirmation(session: Session, confirmation_code: str, request_id: int) -> None:
    """Make the mails we sent about a mail before it opened a request part of that request.

    The CONFIRMO question of a held opening, or the "falta …" list of an incomplete one:
    their Message-IDs carry the token of the first mail's pseudo-code (see
    :func:`mailflow.core.routing.confirmation_code`).
    """
    prefix = f"<rrss-{confirmation_code.lower()}-s0-"
    rows = session.scalars(
        select(OutboxRow)
        .where(OutboxRow.kind.in_(BEFORE_OPENING), OutboxRow.request_id.is_(None))
        .where(OutboxRow.message_id.startswith(prefix, autoescape=True))
    ).all()
    for row in rows:
        row.request_id = request_id
    session.flush()
    ids = [row.id for row in rows]
    if ids:
        session.execute(
            update(ArchiveEntryRow)
            .where(ArchiveEntryRow.outbox_id.in_(ids), ArchiveEntryRow.request_id.is_(None))
            .values(request_id=request_id)
            .execution_options(synchronize_session=False)
        )


def evidence_gaps(session: Session) -> list[str]:
    """Return, per request, what its evidence lacks: its opening mail or one of its files.

    The opening mail is the one whose action opened it (the first history row with a
    mail); every stored file must be indexed for the request.
    """
    problems = []
    openings = dict(
        session.execute(
            select(HistoryRow.request_id, HistoryRow.inbound_id)
            .where(HistoryRow.inbound_id.is_not(None))
            .order_by(HistoryRow.id.desc())  # the first one of each request wins below
        ).all()
    )
    indexed: set[tuple[int | None, int | None, str]] = {
        (r, i, k)
        for r, i, k in session.execute(
            select(ArchiveEntryRow.request_id, ArchiveEntryRow.inbound_id, ArchiveEntryRow.sha256)
        ).all()
    }
    mails = {(r, i) for r, i, _ in indexed}
    files = {(r, sha) for r, _, sha in indexed}
    for request_id, code in session.execute(select(RequestRow.id, RequestRow.code)).all():
        opening = openings.get(request_id)
        if opening is not None and (request_id, opening) not in mails:
            problems.append(f"{code}: falta el correo que la abrió (entrada #{opening})")
    stored = session.execute(
        select(AttachmentRow.request_id, RequestRow.code, AttachmentRow.filename, AttachmentRow.sha256)
        .join(RequestRow, RequestRow.id == AttachmentRow.request_id)
        .order_by(AttachmentRow.id)
    ).all()
    for owner, code, filename, sha in stored:
        if (owner, sha) not in files:
            problems.append(f"{code}: falta el archivo {filename} ({sha[:12]})")
    return problems
