"""The names code outside the store uses to talk about a transaction and its failures.

Only :mod:`mailflow.store` imports SQLAlchemy (docs/design.md §8). Code elsewhere receives
an open transaction from :meth:`mailflow.store.repository.Store.transaction` and passes it
back to the store's functions; it names its type, and the database's errors, through here.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

# Any failure of the database (connection lost, lock timeout, constraint): the caller
# logs it or lets the pass fail, and never needs to know which driver raised it.
DatabaseError = SQLAlchemyError

__all__ = ["DatabaseError", "Session"]
