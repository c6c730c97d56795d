"""Read what a request is made of: its files, its observations, its people, its mails.

Queries only; :mod:`mailflow.app.files` decides what travels in each mail.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.store.schema import (
    AttachmentRow,
    HistoryRow,
    InboundOutcome,
    InboundRow,
    OutboxRow,
    OutboxStatus,
    RequestRow,
)

# The history actions whose text is an observation everyone acting later must read.
OBSERVING = ("OBSERVO", "RECHAZO")


def request_attachments(session: Session, request_id: int) -> Sequence[AttachmentRow]:
    """Return every file stored for a request, oldest first."""
    return session.scalars(
        select(AttachmentRow)
        .where(AttachmentRow.request_id == request_id)
        .order_by(AttachmentRow.id)
    ).all()


def request_observations(session: Session, request_id: int) -> Sequence[HistoryRow]:
    """Return the observations (and rejections) made on a request so far, oldest first."""
    return session.scalars(
        select(HistoryRow)
        .where(HistoryRow.request_id == request_id)
        .where(HistoryRow.action.in_(OBSERVING))
        .where(HistoryRow.note.is_not(None))
        .order_by(HistoryRow.id)
    ).all()


def files_sent_to(session: Session, request_id: int, address: str) -> set[str]:
    """Return the SHA-256 of every file of a request that our mails carried to ``address``."""
    rows = session.execute(
        select(OutboxRow.recipients, OutboxRow.files)
        .where(OutboxRow.request_id == request_id)
        .where(OutboxRow.files.is_not(None))
        .where(OutboxRow.status != OutboxStatus.FAILED)
    ).all()
    wanted = address.lower()
    return {
        sha
        for recipients, files in rows
        if wanted in (r.lower() for r in recipients)
        for sha in files or ()
    }


# Mails that go to whoever wrote, proven or not: their readers are not on the request.
ANSWERS_TO_ANYONE = ("help", "unverified", "files_not_kept", "delivery_failed")


def people_on_request(session: Session, request: RequestRow) -> set[str]:
    """Return who is on a request: its requester, who acted on it, who we mailed about it.

    Only mails about its procedure count (action mails, copies, notices, notes): an answer
    to an unproven or misdirected mail that names the request does not make its reader a
    person of the request.
    """
    people = {request.requester.lower()}
    people.update(
        a.lower()
        for a in session.scalars(
            select(HistoryRow.actor).where(HistoryRow.request_id == request.id)
        )
    )
    for recipients in session.scalars(
        select(OutboxRow.recipients)
        .where(OutboxRow.request_id == request.id)
        .where(OutboxRow.kind.not_in(ANSWERS_TO_ANYONE))
    ):
        people.update(r.lower() for r in recipients)
    return {p for p in people if "@" in p}


