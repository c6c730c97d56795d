"""Queries behind the timed jobs: what is open, what was claimed, what the digest reports.

What :mod:`mailflow.jobs.scheduler` and :mod:`mailflow.jobs.weekly` ask the database, kept
here so that the jobs read as what they decide. Claims themselves are made with
:func:`mailflow.store.repository.claim_once`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mailflow.core.model import Status
from mailflow.store.repository import claim_once
from mailflow.store.schema import HistoryRow, ProductRow, ReminderRow, RequestRow


def claimed_epoch(session: Session, key: str, now: datetime) -> datetime:
    """Return when the claim ``key`` was first made, making it at ``now`` if it never was."""
    claim_once(session, key, kind="epoch", now=now)
    first = session.scalar(select(ReminderRow.created_at).where(ReminderRow.key == key))
    return first or now


def open_with_due(session: Session) -> list[RequestRow]:
    """Return the open requests whose stage has a due date."""
    return list(
        session.scalars(
            select(RequestRow).where(
                RequestRow.status == Status.EN_CURSO.value, RequestRow.due_at.is_not(None)
            )
        )
    )


def claims_to_plan(
    session: Session, since: date, kind: str, request_ids: Sequence[int]
) -> list[ReminderRow]:
    """Return the claims a plan must know of: made for ``since`` or later, of ``kind``
    (whatever their day), or about one of ``request_ids``."""
    return list(
        session.scalars(
            select(ReminderRow).where(
                or_(
                    ReminderRow.for_date >= since,
                    ReminderRow.kind == kind,
                    ReminderRow.request_id.in_(request_ids),
                )
            )
        )
    )


def windows_ended(session: Session, before: date) -> list[tuple[int, str, date | None]]:
    """Return (id, code, publish_until) of the published requests whose period ended."""
    found = session.execute(
        select(RequestRow.id, RequestRow.code, RequestRow.publish_until).where(
            RequestRow.status == Status.PUBLICADO.value,
            RequestRow.publish_until < before,
        )
    ).all()
    return [(i, code, until) for i, code, until in found]


def request_by_id(session: Session, request_id: int) -> RequestRow | None:
    """Return the request ``request_id``, or None."""
    return session.get(RequestRow, request_id)



# -- what the weekly digest reports -------------------------------------------------------


def open_request_rows(session: Session) -> list[RequestRow]:
    """Return every open request."""
    return list(session.scalars(select(RequestRow).where(RequestRow.status == Status.EN_CURSO)))


def published_between(
    session: Session, start: datetime, end: datetime
) -> list[tuple[ProductRow, str]]:
    """Return the products published in [start, end), each with its request's code."""
    found = session.execute(
        select(ProductRow, RequestRow.code)
        .join(RequestRow, RequestRow.id == ProductRow.request_id)
        .where(ProductRow.published_at >= start, ProductRow.published_at < end)
    ).all()
    return [(product, code) for product, code in found]


def windows_between(session: Session, first: date, last: date) -> list[RequestRow]:
    """Return the live requests whose publication period starts or ends in [first, last]."""
    live = (Status.EN_CURSO.value, Status.PUBLICADO.value)
    return list(
        session.scalars(
            select(RequestRow).where(
                RequestRow.status.in_(live),
                or_(
                    RequestRow.publish_from.between(first, last),
                    RequestRow.publish_until.between(first, last),
                ),
            )
        )
    )
