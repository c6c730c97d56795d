"""Where a pass over the mailbox stands: its position, its quarantined mail.

What :mod:`mailflow.daemon` writes to the store about the mailbox itself, as opposed to the
requests its mail acts on. Gaps (UIDs gone before they were fetched) are recorded by
:func:`mailflow.store.repository.record_gaps`.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailflow.store.repository import ledger_seen, set_mailbox_state
from mailflow.store.schema import InboundRow


def save_position(session: Session, mailbox: str, uidvalidity: int, uid: int) -> None:
    """Record the last UID handled, in a savepoint of the group's transaction.

    Two daemons starting on a new store may both insert the folder's first row: the
    loser's IntegrityError (which used to kill it) means the row now exists, so the
    update is simply made again.
    """
    for attempt in (1, 2):
        try:
            with session.begin_nested():
                set_mailbox_state(session, mailbox, uidvalidity, uid)
            return
        except IntegrityError:
            if attempt == 2:
                raise


def quarantine(
    session: Session, mailbox: str, uidvalidity: int, uid: int, row: Callable[[], InboundRow]
) -> None:
    """Add the ledger row ``row()`` of a message that broke the service, unless it is there.

    Another daemon may claim the message meanwhile: then it is in the ledger, not lost.
    """
    try:
        with session.begin_nested():
            if ledger_seen(session, mailbox, uidvalidity, uid):
                return
            session.add(row())
    except IntegrityError:
        pass
