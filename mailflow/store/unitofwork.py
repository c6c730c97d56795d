"""What code outside the store needs to hold a unit of work, without importing SQLAlchemy.

A unit of work is the session :meth:`mailflow.store.repository.Store.transaction` yields.
The daemon and the timed jobs receive it, pass it to the store's functions, and judge the
database's failures through the names here: trouble that passes by itself (the database
busy or restarting, a concurrent update), a PostgreSQL deadlock, any store error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

__all__ = ["PASSING", "UNAVAILABLE", "Session", "StoreError", "deadlocked", "savepoint"]

# Any failure of the store (the database down included).
StoreError = SQLAlchemyError
# The database busy, down or restarting (a deadlock included).
UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError,)
# As UNAVAILABLE, or a row updated concurrently: a unit of work that fails so is rolled back
# whole and made again later; it is never a reason to quarantine a mail.
PASSING: tuple[type[Exception], ...] = (*UNAVAILABLE, StaleDataError)
# PostgreSQL's SQLSTATE for "deadlock detected".
_DEADLOCK = "40P01"


def deadlocked(exc: BaseException) -> bool:
    """Tell whether PostgreSQL broke a deadlock by aborting this transaction."""
    return isinstance(exc, OperationalError) and (
        getattr(exc.orig, "sqlstate", None) == _DEADLOCK
    )


@contextmanager
def savepoint(session: Session, *, fresh: bool = False) -> Iterator[Session]:
    """Run a block inside a savepoint of ``session``: rolled back alone if it raises.

    ``fresh``: start from an empty identity map, as if the block had a session of its own
    (the rows read before stay readable, detached).
    """
    if fresh:
        session.expunge_all()
    with session.begin_nested():
        yield session
