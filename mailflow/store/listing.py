"""Read-only queries behind `mailflow requests`: the list, and one request with its rows."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.store.schema import AttachmentRow, HistoryRow, RefusalRow, RequestRow


def requests_newest_first(session: Session, status: str | None = None) -> list[RequestRow]:
    """Return every request (optionally of one status), newest first."""
    query = select(RequestRow).order_by(RequestRow.id.desc())
    if status:
        query = query.where(RequestRow.status == status)
    return list(session.scalars(query))




def refusal_rows(session: Session, request_id: int) -> list[RefusalRow]:
    """Return the replies refused about a request, in order."""
    return list(
        session.scalars(
            select(RefusalRow).where(RefusalRow.request_id == request_id).order_by(RefusalRow.id)
        )
    )


def attachment_rows(session: Session, request_id: int) -> list[AttachmentRow]:
    """Return a request's attachments, in order."""
    return list(
        session.scalars(
            select(AttachmentRow)
            .where(AttachmentRow.request_id == request_id)
            .order_by(AttachmentRow.id)
        )
    )
