"""Two and three `mailflow run` on one store and one mailbox: each message handled once,
each mail sent once.

The daemons race for the same backlog (every one fetches every UID): the inbound ledger's
unique key makes one of them own each message, ``SELECT … FOR UPDATE SKIP LOCKED`` makes
one of them own each outbox row (PostgreSQL), and BEGIN IMMEDIATE serializes the writers
(SQLite). The relay's log is the judge of "sent once".
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select
from testbed.daemon import Daemon
from testbed.mail import parse
from testbed.site import INFO_REQUEST, START, Scenario, about
from testbed.smtp import SmtpRelay

from mailflow.store.schema import InboundRow, OutboxRow, OutboxStatus, RequestRow

from .conftest import full_size

ACTION = "Acción requerida"


def _counts(scenario: Scenario) -> tuple[int, int, int]:
    """Return (ledger rows, requests, outbox rows not yet sent)."""
    with scenario.runtime.store.transaction() as session:
        return (
            int(session.scalar(select(func.count(InboundRow.id))) or 0),
            int(session.scalar(select(func.count(RequestRow.id))) or 0),
            int(
                session.scalar(
                    select(func.count(OutboxRow.id)).where(OutboxRow.status != OutboxStatus.SENT)
                )
                or 0
            ),
        )


def _wait_done(scenario: Scenario, inbound: int, daemons: list[Daemon]) -> None:
    deadline = time.monotonic() + 120
    while (counts := _counts(scenario))[0] < inbound or counts[2]:
        for daemon in daemons:
            assert daemon.alive, daemon.log()
        assert time.monotonic() < deadline, f"stuck at {counts}"
        time.sleep(0.1)


@pytest.mark.parametrize("how_many", [2, 3])
def test_several_daemons_on_one_store_handle_each_message_once_and_send_each_mail_once(
    scenario: Scenario,
    relay: SmtpRelay,
    spawn: Callable[[Path, datetime], Daemon],
    how_many: int,
) -> None:
    site = scenario.site
    backlog = 60 if full_size() else 16
    for n in range(backlog):
        title = f"Feria {n}"
        site.send(
            "analista",
            f"Solicitud {n}",
            INFO_REQUEST.replace("Feria de servicios digitales 2026", title),
        )
    daemons = [spawn(site.config_path, START + timedelta(hours=1)) for _ in range(how_many)]
    _wait_done(scenario, backlog, daemons)
    # While they all sit in IDLE on the same mailbox, every request gets an answer at once.
    actions: list[EmailMessage] = site.inbox("directora")
    codes = sorted({str(m["Subject"]).split("[")[1].split("]")[0] for m in actions})
    assert len(codes) == backlog
    for code in codes:
        mail = next(m for m in actions if about(code, ACTION)(m))
        site.reply("directora", mail, "APRUEBO")
    _wait_done(scenario, 2 * backlog, daemons)
    for daemon in daemons:
        assert daemon.terminate() == 0, daemon.log()

    with scenario.runtime.store.transaction() as session:
        ledger = session.execute(select(InboundRow.uid, InboundRow.outcome)).all()
        rows = session.execute(select(OutboxRow.message_id, OutboxRow.attempts)).all()
        stages = Counter(session.scalars(select(RequestRow.stage)))
    assert len(ledger) == 2 * backlog
    assert Counter(outcome for _, outcome in ledger) == {"processed": 2 * backlog}
    assert stages == {3: backlog}  # each APRUEBO applied once: stage 2 -> 3
    sent = Counter(
        str(parse(m.raw)["Message-ID"]) for m in relay.accepted if m.mail_from == site.shared
    )
    assert set(sent) == {mid for mid, _ in rows}
    assert set(sent.values()) == {1}, [mid for mid, n in sent.items() if n > 1]
    assert {attempts for _, attempts in rows} == {1}
    shares = [d.log().count("outcome=") for d in daemons]
    print(
        f"\n{how_many} daemons, {2 * backlog} messages, {len(sent)} mails; "
        f"handled per daemon: {shares}"
    )
