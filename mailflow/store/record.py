"""Read a request's record: the request by code, its history, products and archived mail.

What the service locks before acting on a request, and what the evidence bundle and the
POAI report read, so that neither holds a query of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from mailflow.store.schema import ArchiveEntryRow, HistoryRow, InboundRow, ProductRow, RequestRow

# A product, its request's code and procedure, and the SHA-256 of the mails that
# published and designed it (None when there is none).
ProductLine = tuple[ProductRow, str, str, str | None, str | None]


def request_locked(session: Session, code: str) -> RequestRow | None:
    """Return the request ``code``, locked until the transaction ends.

    Two daemons handling two votes of one request at once must take turns (PostgreSQL;
    SQLite serializes writers anyway).
    """
    return session.scalar(select(RequestRow).where(RequestRow.code == code).with_for_update())


def request_named(session: Session, code: str) -> RequestRow | None:
    """Return the request ``code`` (as written, unlocked), or None."""
    return session.scalar(select(RequestRow).where(RequestRow.code == code))


def history_of(session: Session, request_id: int) -> Sequence[HistoryRow]:
    """Return the history rows of one request, oldest first."""
    return session.scalars(
        select(HistoryRow).where(HistoryRow.request_id == request_id).order_by(HistoryRow.id)
    ).all()


def products_of(session: Session, request_id: int) -> Sequence[ProductRow]:
    """Return the products of one request, oldest first."""
    return session.scalars(
        select(ProductRow).where(ProductRow.request_id == request_id).order_by(ProductRow.id)
    ).all()


def archive_entries_of(session: Session, request_id: int) -> Sequence[ArchiveEntryRow]:
    """Return the archive index entries of one request, in the order they happened."""
    return session.scalars(
        select(ArchiveEntryRow)
        .where(ArchiveEntryRow.request_id == request_id)
        .order_by(ArchiveEntryRow.at, ArchiveEntryRow.id)
    ).all()


def products_between(session: Session, start: datetime, end: datetime) -> list[ProductLine]:
    """Return every product designed or published in [start, end), by publication time."""
    published = aliased(InboundRow)
    designed = aliased(InboundRow)
    rows = session.execute(
        select(ProductRow, RequestRow.code, RequestRow.procedure, published.sha256, designed.sha256)
        .join(RequestRow, RequestRow.id == ProductRow.request_id)
        .outerjoin(published, published.id == ProductRow.inbound_id)
        .outerjoin(designed, designed.id == ProductRow.design_inbound_id)
        .where(
            ((ProductRow.published_at >= start) & (ProductRow.published_at < end))
            | ((ProductRow.designed_at >= start) & (ProductRow.designed_at < end))
        )
        .order_by(ProductRow.published_at, ProductRow.id)
    ).all()
    return [(row, code, procedure, pub, des) for row, code, procedure, pub, des in rows]
