"""Mail that disappears from the shared mailbox before mailflow reads it is noticed.

People work in shared mailboxes: someone moves or deletes a message before the daemon
fetched it. Against the real Dovecot, another IMAP session deletes messages before a pass
and in the middle of one (while the first fetched messages are being handled, before the
later ones are fetched, the last one included). Every message is then either processed or
recorded as a gap, never neither; `mailflow status` lists the gaps, the metrics count
them, and the administrator gets one report a day with the count and the time window.
"""

from __future__ import annotations

import email.policy
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from testbed.mail import append, build_message, imap
from testbed.site import INFO_REQUEST, Scenario

from mailflow.ops.metrics import StoreCollector
from mailflow.store.repository import record_gaps
from mailflow.store.schema import InboundRow, MailboxGapRow, RequestRow

only_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
# More than two fetch batches (50 each): the later ones are fetched while the first is
# being handled, which is when the other session deletes some of them.
MESSAGES = 120
REQUEST_EVERY = 20  # every 20th message is a real request, the rest out-of-office replies
REPORT = "del buzón compartido"


def _raw(scenario: Scenario, n: int) -> bytes:
    site = scenario.site
    if n % REQUEST_EVERY == 0:
        message = build_message(
            site.addr("analista"), [site.shared], f"Solicitud {n}", INFO_REQUEST
        )
    else:
        message = build_message(
            site.addr(f"persona{n}"),
            [site.shared],
            f"Respuesta automática: fuera de la oficina ({n})",
            "Estaré fuera de la oficina hasta el lunes.",
            headers={"Auto-Submitted": "auto-replied"},
        )
    return message.as_bytes(policy=email.policy.SMTP)


def _delete(scenario: Scenario, uids: list[int]) -> None:
    """Delete messages from the shared INBOX as a person would, in a session of their own."""
    with imap(scenario.site.dovecot, scenario.site.shared) as client:
        client.select_folder("INBOX")
        client.delete_messages(uids)
        client.expunge()


def _ledger(scenario: Scenario) -> dict[int, str]:
    with scenario.runtime.store.transaction() as session:
        rows = session.execute(select(InboundRow.uid, InboundRow.outcome)).all()
    return {uid: outcome for uid, outcome in rows}


def _gaps(scenario: Scenario) -> list[MailboxGapRow]:
    with scenario.runtime.store.transaction() as session:
        return list(session.scalars(select(MailboxGapRow).order_by(MailboxGapRow.uid)))


@pytest.fixture
def deleting_mid_pass(scenario: Scenario) -> Iterator[list[int]]:
    """Make the first message a pass handles trigger deletions; yield the UIDs to delete."""
    service = scenario.runtime.service
    handle = service.handle_in
    doomed: list[int] = []

    def handle_in(*args: Any, **kwargs: Any) -> Any:
        if doomed and not getattr(handle_in, "done", False):
            handle_in.done = True  # type: ignore[attr-defined]
            _delete(scenario, doomed)
        return handle(*args, **kwargs)

    service.handle_in = handle_in  # type: ignore[method-assign]
    yield doomed
    service.handle_in = handle  # type: ignore[method-assign]


@only_sqlite
def test_mail_deleted_before_and_during_a_pass_is_reported_and_nothing_else_is_lost(
    scenario: Scenario, deleting_mid_pass: list[int]
) -> None:
    site = scenario.site
    first = append(site.dovecot, site.shared, _raw(scenario, REQUEST_EVERY))
    scenario.run()  # the mailbox has a position now: gaps are measured from it
    assert _ledger(scenario) == {first: "processed"}

    uids = [append(site.dovecot, site.shared, _raw(scenario, n)) for n in range(1, MESSAGES + 1)]
    before = [uids[9], uids[10]]  # gone before the pass: the SEARCH never lists them
    _delete(scenario, before)
    # Gone while the first batch is handled: fetched later, in the 2nd and 3rd batches;
    # the last one too, after which no message comes to reveal the hole.
    during = [uids[59], uids[60], uids[99], uids[-1]]
    deleting_mid_pass.extend(during)
    scenario.run()

    deleted = sorted(before + during)
    assert [g.uid for g in _gaps(scenario)] == deleted
    ledger = _ledger(scenario)
    survivors = [u for u in uids if u not in deleted]
    # Nothing else lost: every message still there was handled, exactly once.
    assert sorted(ledger) == sorted([first, *survivors])
    assert not set(ledger) & set(deleted)
    opened = [n for n in range(1, MESSAGES + 1) if n % REQUEST_EVERY == 0]
    kept = [n for n, uid in zip(range(1, MESSAGES + 1), uids, strict=True) if uid in survivors]
    with scenario.runtime.store.transaction() as session:
        requests = len(session.scalars(select(RequestRow.id)).all())
    assert requests == 1 + len([n for n in opened if n in kept])

    # Another pass notices nothing new: a gap is recorded once.
    scenario.run()
    assert len(_gaps(scenario)) == len(deleted)

    # `mailflow status` lists them, and so do the metrics.
    status = json.loads(scenario.cli("status", "--json").stdout)
    assert status["gaps"]["total"] == len(deleted)
    assert status["gaps"]["unreported"] == len(deleted)
    assert [g["uid"] for g in status["gaps"]["recent"]] == deleted
    text = scenario.cli("status").stdout
    assert f"desaparecieron del buzón sin procesar: {len(deleted)} en total" in text
    collector = StoreCollector(lambda: scenario.runtime.store, "x", lambda: scenario.now)
    figures = {m.name: m.samples[0].value for m in collector.collect() if m.samples}
    assert figures["mailflow_mailbox_gaps"] == len(deleted)

    # The next business day at the reminder time, the administrator hears of them once.
    scenario.now = scenario.now.replace(hour=9, minute=30) + timedelta(days=1)
    scenario.run()
    [report] = [m for m in site.inbox("community") if REPORT in str(m["Subject"])]
    assert str(report["Subject"]).startswith(f"{len(deleted)} correos del buzón compartido")
    body = report.get_body(("plain",)).get_content()
    assert "Entre el martes 1 de diciembre de 2026" in body  # the time window
    assert "y el miércoles 2 de diciembre de 2026, 09:30" in body
    assert all(f"UID {uid}," in body for uid in deleted)
    assert "no deben mover ni borrar correos" in body
    scenario.run()  # later that day: no second report
    assert len([m for m in site.inbox("community") if REPORT in str(m["Subject"])]) == 1
    assert all(g.reported_at is not None for g in _gaps(scenario))
    assert json.loads(scenario.cli("status", "--json").stdout)["gaps"]["unreported"] == 0


def test_a_uid_in_the_ledger_is_no_gap_and_a_gap_is_recorded_once(scenario: Scenario) -> None:
    """Another daemon on the store handled the message and moved it away: no gap."""
    now = scenario.now
    with scenario.runtime.store.transaction() as session:
        session.add(
            InboundRow(
                mailbox="INBOX", uidvalidity=7, uid=41, message_id="<x@y>", sha256="0" * 64,
                received_at=now, processed_at=now, outcome="processed",
            )
        )  # fmt: skip
    with scenario.runtime.store.transaction() as session:
        assert record_gaps(session, "INBOX", 7, [41, 42, 43], now) == [42, 43]
    with scenario.runtime.store.transaction() as session:
        assert record_gaps(session, "INBOX", 7, [42, 43, 44], now) == [44]
        assert record_gaps(session, "INBOX", 8, [42], now) == [42]  # another UIDVALIDITY
    assert [g.uid for g in _gaps(scenario)] == [42, 42, 43, 44]
