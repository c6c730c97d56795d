"""Find the outbox rows to send and to record: the outbox's queries.

The retry policy and the claims' bookkeeping belong to :mod:`mailflow.app.outbox`; this
module only reads rows for it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.store.schema import OutboxRow, OutboxStatus


def due_unclaimed(
    session: Session, now: datetime, batch: int, only: Collection[int] | None = None
) -> Sequence[OutboxRow]:
    """Return up to ``batch`` pending rows due by ``now`` that nobody holds, locked, oldest first.

    Several daemons may share a PostgreSQL store (docs/design.md §8): each row is claimed
    by one flush (locked now, then named as its holder's), never sent by two. SQLite
    ignores the lock clause; its BEGIN IMMEDIATE serializes.
    """
    query = (
        select(OutboxRow)
        .where(OutboxRow.status == OutboxStatus.PENDING)
        .where(OutboxRow.next_attempt_at <= now)
        .where(OutboxRow.claimed_by.is_(None))
        .order_by(OutboxRow.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    if only is not None:
        query = query.where(OutboxRow.id.in_(only))
    return session.scalars(query).all()


def outbox_rows(session: Session, ids: Collection[int | str]) -> Sequence[OutboxRow]:
    """Return the outbox rows with these ids (one query for a batch of results)."""
    return session.scalars(select(OutboxRow).where(OutboxRow.id.in_(ids))).all()
