"""Open mailflow's database, migrate it, and answer the queries every adapter shares.

The tables are declared in :mod:`mailflow.store.schema`. Design (docs/design.md §8): one inbound message
is handled in one :meth:`Store.transaction` (the runner shares one among a group of messages,
a savepoint each), which records the ledger row, the state change and the outgoing mails
together; a crash before the commit leaves nothing behind, so the message is simply
processed again.

SQLite (the default) runs in WAL mode with every transaction started as ``BEGIN IMMEDIATE``;
PostgreSQL (``postgresql+psycopg://``) lets several daemons share one database, relying on
row locks, unique constraints and ``INSERT … ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, create_engine, event, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailflow.store.schema import (
    Base,
    CodeSequenceRow,
    InboundRow,
    MailboxGapRow,
    MailboxStateRow,
    ReminderRow,
)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000
_ALEMBIC_LOCK = threading.Lock()


class MailboxPosition(NamedTuple):
    """Say how far a mailbox has been read: its UIDVALIDITY and the last UID handled."""

    uidvalidity: int
    last_uid: int


def store_url(url: str | URL) -> URL:
    """Parse a ``[store] url``, choosing psycopg 3 for PostgreSQL; refuse other databases."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql" and "+" not in parsed.drivername:
        # Bare postgresql:// would mean psycopg2, which mailflow does not install.
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend not in {"sqlite", "postgresql"}:
        raise ValueError(f"unsupported store {backend!r}: use sqlite:/// or postgresql+psycopg://")
    return parsed


def make_engine(url: str | URL) -> Engine:
    """Create an engine for a SQLite file or a PostgreSQL database, configured for mailflow."""
    parsed = store_url(url)
    if parsed.get_backend_name() == "postgresql":
        # A long-running daemon outlives database restarts: test connections before use.
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:" and not parsed.query.get("uri"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Set the per-connection pragmas and take transaction control away from sqlite3."""
    # The driver's legacy mode does not BEGIN before SELECT, DDL or SAVEPOINT, which
    # breaks savepoints and transactional DDL; _sqlite_on_begin emits BEGIN instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # First, so that switching to WAL waits for a lock instead of failing.
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit survives a power cut. NORMAL could lose the last commits after the
        # message was already moved to processed_folder (never fetched again) and after
        # the sender was told the request's code.
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    """Start every SQLite transaction holding the write lock."""
    # A deferred transaction that reads, then writes, fails at once with SQLITE_BUSY when
    # another connection wrote meanwhile; IMMEDIATE waits (busy_timeout) at BEGIN instead.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class Store:
    """Hand out database transactions: one per unit of work (one inbound message)."""

    def __init__(self, engine: Engine) -> None:
        """Wrap an engine made by :func:`make_engine`."""
        self.engine = engine
        # Rows stay readable after the commit: the caller flags the mail and sends the
        # outbox only then.
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str | URL) -> Store:
        """Open the store at ``url`` (it is not migrated: call :func:`upgrade` first)."""
        return cls(make_engine(url))

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Yield a session committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def alembic_config(url: str | URL | None = None) -> Config:
    """Build the Alembic configuration in code, so it works from an installed wheel.

    Useful from a shell too, e.g. to write a revision:
    ``command.revision(alembic_config(url), "add x", autogenerate=True)``.
    """
    config = Config()
    # ConfigParser interpolates '%'; the URL (which may hold %-escaped passwords) is
    # therefore passed as an attribute, never as an option.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.attributes["url"] = store_url(url)
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision``; safe to repeat and to race.

    Concurrent calls (two daemons starting) are serialized by an advisory lock on
    PostgreSQL and by ``BEGIN IMMEDIATE`` on SQLite; the later one finds nothing to do.
    An in-memory SQLite URL is useless here: the migrated database dies with the call.
    """
    # Alembic keeps the running environment in module globals: one migration per process
    # at a time. It logs each step it runs on the "alembic.runtime.migration" logger.
    with _ALEMBIC_LOCK:
        command.upgrade(alembic_config(url), revision)


def current_revision(url: str | URL) -> str | None:
    """Return the migration the database at ``url`` is at, or None if it has none."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def store_problem(url: str | URL) -> str | None:
    """Return why a read-only command cannot read the store (never creating a SQLite file)."""
    parsed = store_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        return (
            f"la base de datos {parsed.database} no existe: el daemon nunca arrancó con esta "
            "configuración (o [store] url apunta a otro lugar)"
        )
    try:
        revision = current_revision(parsed)
    except SQLAlchemyError as exc:
        return f"no se puede leer la base de datos: {exc}".splitlines()[0]
    if revision != head_revision():
        return (
            f"la base de datos está en la migración {revision}, esta versión de mailflow "
            f"espera {head_revision()}: arranque el daemon o ejecute `mailflow db upgrade`"
        )
    return None


def head_revision() -> str:
    """Return the newest migration shipped with this version of mailflow."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def _insert_if_absent(session: Session, table_name: str, values: dict[str, Any]) -> bool:
    """Insert one row unless it collides with an existing key; True if it was inserted.

    ``ON CONFLICT DO NOTHING`` neither raises nor, on PostgreSQL, aborts the enclosing
    transaction; a concurrent insert of the same key waits for the other transaction and
    then reports the row as already present.
    """
    table = Base.metadata.tables[table_name]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        pg_stmt = postgresql.insert(table).values(values).on_conflict_do_nothing()
        result = session.execute(pg_stmt.returning(*table.primary_key.columns))
    elif dialect == "sqlite":
        lite_stmt = sqlite.insert(table).values(values).on_conflict_do_nothing()
        result = session.execute(lite_stmt.returning(*table.primary_key.columns))
    else:
        raise NotImplementedError(f"no insert-if-absent for {dialect}")
    return result.first() is not None


def next_request_code(session: Session, prefix: str, year: int) -> str:
    """Allocate the next request code for ``prefix`` and ``year``, e.g. ``RRSS-2026-0042``.

    The number belongs to the caller's transaction: concurrent callers wait on the
    sequence row until it commits, and a rolled-back transaction gives its number back.
    """
    # UPDATE … RETURNING locks the row and reads the committed value after any wait,
    # which a SELECT followed by an UPDATE would not. The row exists but for the first
    # request of a year: one statement then, not an insert attempt before every update.
    bump = (
        update(CodeSequenceRow)
        .where(CodeSequenceRow.prefix == prefix, CodeSequenceRow.year == year)
        .values(last_number=CodeSequenceRow.last_number + 1)
        .returning(CodeSequenceRow.last_number)
        .execution_options(synchronize_session=False)
    )
    number = session.execute(bump).scalar_one_or_none()
    if number is None:
        # A concurrent creator makes ON CONFLICT wait for its commit, then do nothing.
        _insert_if_absent(
            session,
            CodeSequenceRow.__tablename__,
            {"prefix": prefix, "year": year, "last_number": 0},
        )
        number = session.execute(bump).scalar_one()
    return f"{prefix}-{year}-{number:04d}"


def claim_once(
    session: Session,
    key: str,
    *,
    kind: str,
    now: dt.datetime,
    request_id: int | None = None,
    stage: int | None = None,
    for_date: dt.date | None = None,
) -> bool:
    """Claim the work ``key`` that must happen once; True only for the one caller that gets it.

    A reminder, an escalation, a digest, a held opening's step, the scheduler's epoch, an
    answer within its daily cap: each is claimed by its key (``kind`` says which). Claim
    in the same transaction as the work's effects (the outbox rows): if it rolls back,
    the claim goes with it and the work is done on the next pass.
    """
    values = {
        "key": key,
        "kind": kind,
        "created_at": now,
        "request_id": request_id,
        "stage": stage,
        "for_date": for_date,
    }
    return _insert_if_absent(session, ReminderRow.__tablename__, values)


def ledger_seen(session: Session, mailbox: str, uidvalidity: int, uid: int) -> bool:
    """Tell whether the message at this mailbox, UIDVALIDITY and UID is in the ledger."""
    found = session.scalar(
        select(InboundRow.id)
        .where(
            InboundRow.mailbox == mailbox,
            InboundRow.uidvalidity == uidvalidity,
            InboundRow.uid == uid,
        )
        .limit(1)
    )
    return found is not None


def get_mailbox_state(session: Session, mailbox: str) -> MailboxPosition | None:
    """Return how far ``mailbox`` has been read, or None if it never was."""
    row = session.get(MailboxStateRow, mailbox)
    return None if row is None else MailboxPosition(row.uidvalidity, row.last_uid)


def set_mailbox_state(session: Session, mailbox: str, uidvalidity: int, last_uid: int) -> None:
    """Record how far ``mailbox`` has been read."""
    row = session.get(MailboxStateRow, mailbox)
    if row is None:
        session.add(MailboxStateRow(mailbox=mailbox, uidvalidity=uidvalidity, last_uid=last_uid))
    elif row.uidvalidity != uidvalidity:
        row.uidvalidity = uidvalidity
        row.last_uid = last_uid
    else:
        # Several daemons: one that is behind must not take the position back.
        row.last_uid = max(row.last_uid, last_uid)


# -- gaps: UIDs that disappeared before they were fetched --------------------------------

# At most this many gaps are recorded per pass (one row each); more are only counted in the
# log line. A mailbox emptied by hand must not turn one pass into a million inserts.
MAX_GAPS_PER_PASS = 10_000


def record_gaps(
    session: Session, mailbox: str, uidvalidity: int, uids: Iterable[int], now: dt.datetime
) -> list[int]:
    """Record UIDs that vanished before they were fetched; return those newly recorded.

    A UID in the ledger is no gap: another daemon handled it, then moved it away. A UID
    already recorded (a later pass noticing the same hole) is not recorded twice.
    """
    wanted = sorted(set(uids))[:MAX_GAPS_PER_PASS]
    if not wanted:
        return []
    handled = set(
        session.scalars(
            select(InboundRow.uid).where(
                InboundRow.mailbox == mailbox,
                InboundRow.uidvalidity == uidvalidity,
                InboundRow.uid.in_(wanted),
            )
        )
    )
    recorded = []
    for uid in wanted:
        if uid in handled:
            continue
        values = {"mailbox": mailbox, "uidvalidity": uidvalidity, "uid": uid, "noticed_at": now}
        if _insert_if_absent(session, MailboxGapRow.__tablename__, values):
            recorded.append(uid)
    return recorded


def gaps_to_report(session: Session) -> list[MailboxGapRow]:
    """Return the gaps no daily report has told yet, oldest first, locked for the report."""
    query = (
        select(MailboxGapRow)
        .where(MailboxGapRow.reported_at.is_(None))
        .order_by(MailboxGapRow.noticed_at, MailboxGapRow.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def count_gaps_to_report(session: Session) -> int:
    """Return how many gaps wait for the daily report."""
    found = session.scalar(
        select(func.count(MailboxGapRow.id)).where(MailboxGapRow.reported_at.is_(None))
    )
    return int(found or 0)


def recent_gaps(session: Session, since: dt.datetime) -> tuple[int, list[MailboxGapRow]]:
    """Return how many gaps were ever noticed, and those noticed since ``since``."""
    total = session.scalar(select(func.count(MailboxGapRow.id)))
    rows = session.scalars(
        select(MailboxGapRow)
        .where(MailboxGapRow.noticed_at >= since)
        .order_by(MailboxGapRow.noticed_at, MailboxGapRow.id)
        .limit(50)
    )
    return int(total or 0), list(rows)
