"""Claim inbound messages in the ledger and find the ones already there.

The ledger (``inbound`` rows) is how a message is handled exactly once (docs/design.md §8):
a message is claimed by adding its row, and a second copy of it is found by its
Message-ID or, without one, by its bytes.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailflow.store.schema import InboundRow, RequestRow


def claim_message(session: Session, ledger: InboundRow) -> bool:
    """Add ``ledger`` in a savepoint; False when another process already claimed the message.

    Only the unique constraint's IntegrityError means "taken"; any other error reaches the
    caller (the runner quarantines the message instead of losing it).
    """
    try:
        with session.begin_nested():
            session.add(ledger)
            session.flush()
    except IntegrityError:
        return False
    return True


def same_message_id(session: Session, message_id: str, other_than: int) -> int | None:
    """Return the id of another ledger row with this Message-ID, or None."""
    return session.scalar(
        select(InboundRow.id).where(InboundRow.message_id == message_id, InboundRow.id != other_than)
    )


def same_bytes(session: Session, sha256: str, other_than: int) -> int | None:
    """Return the id of another ledger row holding exactly these bytes, or None."""
    return session.scalar(
        select(InboundRow.id)
        .where(InboundRow.sha256 == sha256, InboundRow.id != other_than)
        .limit(1)
    )


def inbound_locked(session: Session, inbound_id: int) -> InboundRow | None:
    """Return the ledger row ``inbound_id``, locked until the transaction ends (PostgreSQL)."""
    return session.scalar(
        select(InboundRow).where(InboundRow.id == inbound_id).with_for_update()
    )


def last_handled(
    session: Session, mailbox: str, uidvalidity: int, uid: int
) -> tuple[str | None, str | None] | None:
    """Return the Message-ID and request code of the message at this position, or None."""
    found = session.execute(
        select(InboundRow.message_id, RequestRow.code)
        .outerjoin(RequestRow, RequestRow.id == InboundRow.request_id)
        .where(
            InboundRow.mailbox == mailbox,
            InboundRow.uidvalidity == uidvalidity,
            InboundRow.uid == uid,
        )
    ).first()
    return None if found is None else (found[0], found[1])
