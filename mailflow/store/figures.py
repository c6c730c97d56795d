"""Count what `mailflow status` and the metrics endpoint report: the store's figures.

The ledger and the outbox already are the counters (totals since the store began), so
every figure is an aggregate read at the time it is asked for.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow.core.model import Status
from mailflow.store.schema import (
    DaemonStatusRow,
    InboundRow,
    MailboxGapRow,
    OutboxRow,
    OutboxStatus,
    ReminderRow,
    RequestRow,
)


def daemon_status(session: Session, name: str) -> DaemonStatusRow | None:
    """Return the heartbeat row of the daemon working on mailbox ``name``, or None."""
    return session.get(DaemonStatusRow, name)


def pending_mail(session: Session) -> tuple[int, datetime | None]:
    """Return how many outbox rows are pending and when the oldest of them was queued."""
    count, oldest = session.execute(
        select(func.count(OutboxRow.id), func.min(OutboxRow.created_at)).where(
            OutboxRow.status == OutboxStatus.PENDING
        )
    ).one()
    return int(count or 0), oldest


def oldest_pending(session: Session) -> datetime | None:
    """Return when the oldest pending outbox row was queued, or None."""
    return session.scalar(
        select(func.min(OutboxRow.created_at)).where(OutboxRow.status == OutboxStatus.PENDING)
    )


def failed_mail(session: Session) -> int:
    """Return how many outgoing mails failed for good."""
    found = session.scalar(
        select(func.count(OutboxRow.id)).where(OutboxRow.status == OutboxStatus.FAILED)
    )
    return int(found or 0)


def overdue_requests(session: Session, now: datetime) -> int:
    """Return how many open requests are past their stage's deadline at ``now``."""
    found = session.scalar(
        select(func.count(RequestRow.id)).where(
            RequestRow.status == Status.EN_CURSO, RequestRow.due_at < now
        )
    )
    return int(found or 0)


def last_digest(session: Session) -> datetime | None:
    """Return when the last daily digest was claimed, or None."""
    return session.scalar(
        select(func.max(ReminderRow.created_at)).where(ReminderRow.kind == "digest")
    )


def released_claims(session: Session) -> int:
    """Return how many outbox claims of gone daemons were released, ever."""
    return int(session.scalar(select(func.coalesce(func.sum(OutboxRow.releases), 0))) or 0)


def messages_by_outcome(session: Session) -> list[tuple[str, int]]:
    """Return how many inbound messages ended in each outcome."""
    rows = session.execute(
        select(InboundRow.outcome, func.count(InboundRow.id)).group_by(InboundRow.outcome)
    ).all()
    return [(outcome, count) for outcome, count in rows]


def mails_by_status(session: Session) -> dict[str, int]:
    """Return how many outbox rows are in each status."""
    rows = session.execute(
        select(OutboxRow.status, func.count(OutboxRow.id)).group_by(OutboxRow.status)
    ).all()
    return {status: count for status, count in rows}


def vanished_mail(session: Session) -> int:
    """Return how many messages ever vanished from the mailbox before being read."""
    return int(session.scalar(select(func.count(MailboxGapRow.id))) or 0)
