"""Test the store against real SQLite files and real PostgreSQL databases.

Every test taking ``db_url`` runs once per database (the ``db_url`` fixture of
tests/conftest.py: a fresh, empty database each time).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from mailflow.core.model import Status
from mailflow.store.ledger import same_message_id
from mailflow.store.repository import (
    MailboxPosition,
    Store,
    claim_once,
    current_revision,
    get_mailbox_state,
    head_revision,
    ledger_seen,
    make_engine,
    next_request_code,
    set_mailbox_state,
    upgrade,
)
from mailflow.store.schema import (
    Base,
    HistoryRow,
    InboundOutcome,
    InboundRow,
    OutboxRow,
    OutboxStatus,
    RequestRow,
)

NOW = dt.datetime(2026, 12, 1, 13, 0, tzinfo=dt.UTC)
LA_PAZ = ZoneInfo("America/La_Paz")
T = TypeVar("T")


def request_row(code: str = "RRSS-2026-0001", **overrides: object) -> RequestRow:
    """Build a request row with plausible values."""
    values: dict[str, object] = {
        "code": code,
        "procedure": "informacion_especifica",
        "title": "Feria de servicios",
        "status": Status.EN_CURSO,
        "stage": 1,
        "stage_roles": ["solicitante"],
        "stage_entered_at": NOW,
        "requester": "ana@institucion.gob.bo",
        "fields": {"titulo": "Feria de servicios"},
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(overrides)
    return RequestRow(**values)


def inbound_row(uid: int = 1, **overrides: object) -> InboundRow:
    """Build a ledger row with plausible values."""
    values: dict[str, object] = {
        "mailbox": "INBOX",
        "uidvalidity": 1700000000,
        "uid": uid,
        "message_id": f"<m{uid}@example.org>",
        "sha256": "0" * 64,
        "received_at": NOW,
        "processed_at": NOW,
        "outcome": InboundOutcome.PROCESSED,
    }
    values.update(overrides)
    return InboundRow(**values)


def run_together(workers: int, work: Callable[[], T]) -> list[T]:
    """Run ``work`` in ``workers`` threads released at the same instant; return the results."""
    barrier = threading.Barrier(workers)

    def start() -> T:
        barrier.wait(timeout=30)
        return work()

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(start) for _ in range(workers)]
        return [future.result(timeout=120) for future in futures]


# -- migrations ---------------------------------------------------------------------------


def test_upgrade_from_empty_creates_every_table(db_url: str) -> None:
    assert current_revision(db_url) is None

    upgrade(db_url)

    assert current_revision(db_url) == head_revision()
    engine = make_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_upgrade_twice_changes_nothing(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)

    assert current_revision(db_url) == head_revision()


def test_concurrent_upgrades_from_empty_both_succeed(db_url: str) -> None:
    # Separate processes, like two daemons starting at once.
    script = "import sys; from mailflow.store.repository import upgrade; upgrade(sys.argv[1])"
    daemons = [subprocess.Popen([sys.executable, "-c", script, db_url]) for _ in range(2)]

    assert [daemon.wait(timeout=120) for daemon in daemons] == [0, 0]

    assert current_revision(db_url) == head_revision()


def test_models_match_migrations(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()

    assert diff == []


@pytest.mark.parametrize(
    ("make_row", "column", "values"),
    [
        (lambda value: request_row(status=value), "status", list(Status)),
        (lambda value: inbound_row(outcome=value), "outcome", list(InboundOutcome)),
        (
            lambda value: OutboxRow(
                message_id="<x@example.org>",
                kind="acuse",
                recipients=["ana@institucion.gob.bo"],
                raw=b"Subject: x\r\n\r\nx\r\n",
                status=value,
                created_at=NOW,
            ),
            "status",
            list(OutboxStatus),
        ),
    ],
    ids=["requests.status", "inbound.outcome", "outbox.status"],
)
def test_check_constraints_take_enum_values_only(
    store: Store,
    make_row: Callable[[str], RequestRow | InboundRow | OutboxRow],
    column: str,
    values: list[StrEnum],
) -> None:
    for value in values:
        # Never committed: each value is tried on its own against the migrated schema.
        with Session(store.engine) as session:
            row = make_row(value)
            session.add(row)
            session.flush()
            table = row.__table__
            stored = session.scalar(select(table.c[column]).where(table.c.id == row.id))
            assert stored == value.value

    with pytest.raises(IntegrityError), store.transaction() as session:
        session.add(make_row(values[0].name))  # the Python name, not the value


# -- engine -------------------------------------------------------------------------------


def test_sqlite_engine_creates_its_folder_and_sets_pragmas(tmp_path: Path) -> None:
    path = f"{tmp_path}/not/yet/there/mailflow.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
            }
    finally:
        engine.dispose()

    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "synchronous": 2,  # FULL
        "busy_timeout": 30000,
    }


def test_released_savepoint_rolls_back_with_its_transaction(store: Store) -> None:
    # On SQLite this holds only because the engine, not the driver, emits BEGIN.
    with pytest.raises(RuntimeError), store.transaction() as session:
        with session.begin_nested():
            set_mailbox_state(session, "INBOX", 1, 10)
        raise RuntimeError("crash after the savepoint")

    with store.transaction() as session:
        assert get_mailbox_state(session, "INBOX") is None


def test_the_mailbox_position_never_goes_back_unless_the_folder_was_renumbered(
    store: Store,
) -> None:
    # Several daemons on one store: one that is behind must not take the position back.
    for uid in (10, 7):
        with store.transaction() as session:
            set_mailbox_state(session, "INBOX", 1, uid)
    with store.transaction() as session:
        assert get_mailbox_state(session, "INBOX") == (1, 10)
    # A new UIDVALIDITY starts the count again.
    with store.transaction() as session:
        set_mailbox_state(session, "INBOX", 2, 3)
    with store.transaction() as session:
        assert get_mailbox_state(session, "INBOX") == (2, 3)


def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(IntegrityError), store.transaction() as session:
        session.add(HistoryRow(request_id=999, at=NOW, actor="sistema", action="x", stage=1))


# -- columns ------------------------------------------------------------------------------


def test_timestamps_come_back_as_aware_utc(store: Store) -> None:
    local = dt.datetime(2026, 12, 1, 9, 0, tzinfo=LA_PAZ)
    with store.transaction() as session:
        session.add(request_row(created_at=local, due_at=local + dt.timedelta(days=1)))

    with store.transaction() as session:
        row = session.execute(select(RequestRow)).scalar_one()
        due_before = session.scalar(
            select(func.count()).where(
                RequestRow.due_at < dt.datetime(2026, 12, 2, 14, tzinfo=dt.UTC)
            )
        )

    assert row.created_at == local
    assert row.created_at.tzinfo == dt.UTC
    assert row.created_at.hour == 13
    assert due_before == 1


def test_naive_timestamps_are_refused(store: Store) -> None:
    with pytest.raises(StatementError, match="naive datetime"), store.transaction() as session:
        session.add(request_row(created_at=dt.datetime(2026, 12, 1, 9, 0)))


def test_none_in_a_json_column_is_sql_null(store: Store) -> None:
    with store.transaction() as session:
        session.add(request_row(cronograma=None))

    with store.transaction() as session:
        nulls = session.scalar(
            select(func.count()).select_from(RequestRow).where(RequestRow.cronograma.is_(None))
        )
    assert nulls == 1


def test_stale_request_update_is_refused(store: Store) -> None:
    with store.transaction() as session:
        session.add(request_row())

    # A row read in one transaction and written in a later one, after someone else
    # changed it, must not overwrite that change.
    with Session(store.engine, expire_on_commit=False) as stale:
        mine = stale.execute(select(RequestRow)).scalar_one()
        stale.commit()
        with store.transaction() as session:
            session.execute(select(RequestRow)).scalar_one().stage = 2
        mine.stage = 3
        with pytest.raises(StaleDataError):
            stale.commit()

    with store.transaction() as session:
        row = session.execute(select(RequestRow)).scalar_one()
    assert (row.stage, row.version) == (2, 2)


# -- request codes ------------------------------------------------------------------------


def test_request_codes_are_consecutive_per_prefix_and_year(store: Store) -> None:
    with store.transaction() as session:
        codes = [next_request_code(session, "RRSS", 2026) for _ in range(3)]
    with store.transaction() as session:
        codes.append(next_request_code(session, "RRSS", 2026))
        codes.append(next_request_code(session, "RRSS", 2027))
        codes.append(next_request_code(session, "UGS", 2026))

    assert codes == [
        "RRSS-2026-0001",
        "RRSS-2026-0002",
        "RRSS-2026-0003",
        "RRSS-2026-0004",
        "RRSS-2027-0001",
        "UGS-2026-0001",
    ]


def test_a_rolled_back_code_is_handed_out_again(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as session:
        next_request_code(session, "RRSS", 2026)
        raise RuntimeError("processing failed")

    with store.transaction() as session:
        assert next_request_code(session, "RRSS", 2026) == "RRSS-2026-0001"


def test_concurrent_transactions_get_distinct_consecutive_codes(store: Store) -> None:
    def allocate() -> str:
        with store.transaction() as session:
            code = next_request_code(session, "RRSS", 2026)
            time.sleep(0.05)  # hold the lock so that the others queue behind it
            return code

    codes = run_together(6, allocate)

    assert sorted(codes) == [f"RRSS-2026-{n:04d}" for n in range(1, 7)]


# -- reminders ----------------------------------------------------------------------------


def test_a_reminder_is_claimed_once(store: Store) -> None:
    key = "reminder:RRSS-2026-0001:3:2026-12-01"
    with store.transaction() as session:
        first = claim_once(session, key, kind="reminder", now=NOW, stage=3)
    with store.transaction() as session:
        second = claim_once(session, key, kind="reminder", now=NOW, stage=3)

    assert (first, second) == (True, False)


def test_concurrent_claims_of_one_reminder_succeed_once(store: Store) -> None:
    def claim() -> bool:
        with store.transaction() as session:
            claimed = claim_once(session, "digest:2026-W49", kind="digest", now=NOW)
            time.sleep(0.1)  # keep the claim uncommitted while the other tries
            return claimed

    assert sorted(run_together(2, claim)) == [False, True]


def test_a_rolled_back_claim_can_be_claimed_again(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as session:
        assert claim_once(session, "digest:2026-W49", kind="digest", now=NOW)
        raise RuntimeError("sending the digest failed")

    with store.transaction() as session:
        assert claim_once(session, "digest:2026-W49", kind="digest", now=NOW)


def test_a_refused_claim_leaves_the_transaction_usable(store: Store) -> None:
    with store.transaction() as session:
        claim_once(session, "digest:2026-W49", kind="digest", now=NOW)

    with store.transaction() as session:
        assert not claim_once(session, "digest:2026-W49", kind="digest", now=NOW)
        set_mailbox_state(session, "INBOX", 1, 5)

    with store.transaction() as session:
        assert get_mailbox_state(session, "INBOX") == MailboxPosition(1, 5)


# -- ledger and mailbox state -------------------------------------------------------------


def test_ledger_holds_one_row_per_mailbox_uidvalidity_and_uid(store: Store) -> None:
    with store.transaction() as session:
        session.add(inbound_row(uid=7))
        session.add(inbound_row(uid=7, uidvalidity=1700000001))  # the mailbox was rebuilt
        session.add(inbound_row(uid=7, mailbox="Archivo"))

    with store.transaction() as session:
        assert ledger_seen(session, "INBOX", 1700000000, 7)
        assert not ledger_seen(session, "INBOX", 1700000000, 8)
        assert not ledger_seen(session, "INBOX", 1700000002, 7)

    with pytest.raises(IntegrityError), store.transaction() as session:
        session.add(inbound_row(uid=7, message_id="<other@example.org>"))


def test_message_ids_are_found_in_any_mailbox(store: Store) -> None:
    with store.transaction() as session:
        session.add(inbound_row(uid=1, mailbox="Archivo", message_id="<a@example.org>"))

    with store.transaction() as session:
        # The service's own check: another ledger row than the one being handled (id 0).
        assert same_message_id(session, "<a@example.org>", other_than=0) is not None
        assert same_message_id(session, "<b@example.org>", other_than=0) is None


def test_mailbox_state_round_trips_unsigned_32_bit_values(store: Store) -> None:
    top = 2**32 - 1  # IMAP UIDs are unsigned 32-bit: beyond PostgreSQL's integer
    with store.transaction() as session:
        assert get_mailbox_state(session, "INBOX") is None
        set_mailbox_state(session, "INBOX", 1700000000, 41)
    with store.transaction() as session:
        set_mailbox_state(session, "INBOX", top, top)

    with store.transaction() as session:
        assert get_mailbox_state(session, "INBOX") == MailboxPosition(top, top)
        assert session.execute(text("SELECT count(*) FROM mailbox_state")).scalar_one() == 1


def test_upgrading_gives_held_openings_their_columns(db_url: str) -> None:
    from mailflow.store.repository import make_engine, upgrade
    from mailflow.store.schema import HeldState
    from mailflow.store.threads import held_openings

    upgrade(db_url, "0007")
    engine = make_engine(db_url)
    at = "2026-11-02 13:00:00+00:00"
    until = "2026-11-05T16:30:00-04:00"
    details = {
        1: f"held for CONFIRMO until {until} (directa)",
        2: f"held for CONFIRMO until {until} (eliminacion, daily cap reached: not asked)",
        3: f"held for CONFIRMO, expired: held for CONFIRMO until {until} (directa)",
        4: "opened RRSS-2026-0001",
    }
    try:
        with engine.begin() as db:
            for id_, detail in details.items():
                db.execute(
                    text(
                        "INSERT INTO inbound (id, mailbox, uidvalidity, uid, sha256, "
                        "received_at, processed_at, outcome, detail) VALUES "
                        "(:id, 'INBOX', 1, :id, :sha, :at, :at, 'processed', :detail)"
                    ),
                    {"id": id_, "sha": str(id_) * 64, "at": at, "detail": detail},
                )
                db.execute(
                    text(
                        "INSERT INTO archive_entries (sha256, kind, direction, person, at, "
                        "size, inbound_id) VALUES (:sha, 'eml', 'in', 'a@x.bo', :at, 1, :id)"
                    ),
                    {"id": id_, "sha": str(id_) * 64, "at": at},
                )
        upgrade(db_url)
        with Session(engine) as session:
            held = held_openings(session)
            states = {i: h for i, h in session.execute(select(InboundRow.id, InboundRow.held))}
    finally:
        engine.dispose()
    assert states == {1: "waiting", 2: "not_asked", 3: "expired", 4: None}
    assert [(h.inbound_id, h.state, h.procedure, h.asked) for h in held] == [
        (1, HeldState.WAITING, "directa", True),
        (2, HeldState.NOT_ASKED, "eliminacion", False),
    ]
    assert held[0].until == dt.datetime(2026, 11, 5, 20, 30, tzinfo=dt.UTC)
