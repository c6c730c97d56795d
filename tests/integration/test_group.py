"""A backlog is handled in groups: one transaction and one archive flush per group, a
savepoint per message, so one bad message is quarantined alone and a transient error
rolls the whole group back to be handled again, once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from testbed.faults import FailOnCall, connection_lost
from testbed.mail import fetch_raw, parse
from testbed.site import INFO_REQUEST, Scenario

from mailflow.app import service as service_module
from mailflow.daemon import catchup
from mailflow.store.schema import InboundRow, MailboxStateRow, OutboxRow, OutboxStatus, RequestRow
from mailflow.transport import imap as imap_module
from mailflow.transport.imap import ImapSource

TOTAL = 5


@pytest.fixture(autouse=True)
def _one_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the backlog in one group on a slow machine (five messages, one round trip)."""
    monkeypatch.setattr(catchup, "GROUP_SECONDS", 60.0)


def _backlog(scenario: Scenario) -> None:
    for n in range(TOTAL):
        scenario.site.send("analista", f"Solicitud {n}", INFO_REQUEST)


def _state(scenario: Scenario) -> tuple[Counter[str], list[str], Counter[str], list[int]]:
    """Return the ledger's outcomes, the request codes, the outbox statuses, the positions."""
    with scenario.runtime.store.transaction() as session:
        return (
            Counter(session.scalars(select(InboundRow.outcome))),
            sorted(session.scalars(select(RequestRow.code))),
            Counter(session.scalars(select(OutboxRow.status))),
            list(session.scalars(select(MailboxStateRow.last_uid))),
        )


def _count_settles(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the archive's durability flushes (one per batch), with the files of each."""
    archive = scenario.runtime.service.archive
    original = archive._settle_all
    settles: list[int] = []

    def settle_all(pending: dict[Path, Path], root_fd: int | None) -> None:
        settles.append(len(pending))
        original(pending, root_fd)

    monkeypatch.setattr(archive, "_settle_all", settle_all)
    return settles


def test_a_poisonous_message_is_quarantined_alone_and_the_group_goes_on(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _backlog(scenario)
    settles = _count_settles(scenario, monkeypatch)
    # The third message's rows and mails are written, then it breaks.
    poison = ValueError("poisonous message")
    FailOnCall(monkeypatch, scenario.runtime.service, "_process", 3, poison, after=True)
    scenario.run()
    outcomes, codes, outbox, positions = _state(scenario)
    assert outcomes == Counter({"processed": TOTAL - 1, "quarantined": 1})
    # Its savepoint took its request and mails back; the others' stayed, in one commit.
    assert len(codes) == TOTAL - 1
    assert outbox == Counter({OutboxStatus.SENT: 2 * (TOTAL - 1)})
    # One archive flush for the group: five messages and the two mails each queued (the
    # poisonous one's are left unreferenced, which is harmless). Empty batches flush nothing.
    assert [n for n in settles if n] == [3 * TOTAL]
    assert positions == [TOTAL]
    with scenario.runtime.store.transaction() as session:
        detail = session.scalar(
            select(InboundRow.detail).where(InboundRow.outcome == "quarantined")
        )
    assert detail == "ValueError: poisonous message"
    # Said once, with its traceback, after the commit.
    assert caplog.text.count("could not be processed; quarantined") == 1
    assert "ValueError: poisonous message" in caplog.text


def test_a_transient_error_mid_group_redoes_the_whole_group_once(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    _backlog(scenario)
    process = FailOnCall(monkeypatch, scenario.runtime.service, "_process", 4, connection_lost())
    with pytest.raises(OperationalError):
        scenario.run()
    # Nothing of the group is committed, not even the three messages done before.
    assert _state(scenario) == (Counter(), [], Counter(), [])

    scenario.run()
    outcomes, codes, outbox, positions = _state(scenario)
    assert process.calls == 4 + TOTAL
    assert outcomes == Counter({"processed": TOTAL})
    # The rolled-back group gave its code numbers back: no gap, no duplicate.
    year = codes[0].split("-")[1]
    prefix = codes[0].split("-")[0]
    assert codes == [f"{prefix}-{year}-{n:04d}" for n in range(1, TOTAL + 1)]
    assert outbox == Counter({OutboxStatus.SENT: 2 * TOTAL})
    assert positions == [TOTAL]


def test_a_message_claimed_by_another_daemon_is_skipped_alone(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    _backlog(scenario)
    source = ImapSource(scenario.runtime.settings.imap, tokens=scenario.runtime.tokens)
    source.connect()
    try:
        mailbox, uidvalidity = source.mailbox, source.uidvalidity
    finally:
        source.close()
    now = scenario.now
    with scenario.runtime.store.transaction() as session:  # the other daemon's claim of UID 3
        session.add(
            InboundRow(
                mailbox=mailbox,
                uidvalidity=uidvalidity,
                uid=3,
                sha256="0" * 64,
                received_at=now,
                processed_at=now,
                outcome="processed",
            )
        )
    # As if that claim were committed only after this daemon looked in the ledger: the
    # claim's IntegrityError is what tells it, inside the group.
    monkeypatch.setattr(service_module, "ledger_seen", lambda *_: False)
    scenario.run()
    outcomes, codes, outbox, positions = _state(scenario)
    assert outcomes == Counter({"processed": TOTAL})  # four of ours, the other's one
    assert len(codes) == TOTAL - 1
    assert outbox == Counter({OutboxStatus.SENT: 2 * (TOTAL - 1)})
    assert positions == [TOTAL]
    with scenario.runtime.store.transaction() as session:
        assert session.scalar(select(func.count()).where(InboundRow.uid == 3)) == 1


def test_a_group_ends_where_a_round_trip_to_the_server_would_begin(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No wait on the network inside a group's transaction (SQLite's write lock, row locks)."""
    monkeypatch.setattr(imap_module, "BATCH_BYTES", 1)  # one message per FETCH round trip
    _backlog(scenario)
    settles = _count_settles(scenario, monkeypatch)
    scenario.run()
    outcomes, codes, outbox, positions = _state(scenario)
    assert outcomes == Counter({"processed": TOTAL})
    assert len(codes) == TOTAL
    assert outbox == Counter({OutboxStatus.SENT: 2 * TOTAL})
    assert len([n for n in settles if n]) == TOTAL  # a group, a transaction, per round trip
    assert positions == [TOTAL]


def test_groups_committed_before_a_failure_are_moved_to_the_processed_folder(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Groups of two; the second fails. The first is committed and the position is past it,
    # so it is never fetched again: unless it is moved now it stays in INBOX for good.
    monkeypatch.setattr(catchup, "GROUP_MESSAGES", 2)
    _backlog(scenario)
    FailOnCall(monkeypatch, scenario.runtime.service, "handle_in", 3, connection_lost())
    runner = scenario.runtime.runner(lambda: scenario.now)
    runner.processed_folder = "Procesados"

    with pytest.raises(OperationalError):
        runner.run_once()

    site = scenario.site
    subjects = [
        str(parse(raw)["Subject"]) for raw in fetch_raw(site.dovecot, site.shared, "Procesados")
    ]
    assert subjects == ["Solicitud 0", "Solicitud 1"]
    assert len(fetch_raw(site.dovecot, site.shared)) == TOTAL - 2


def test_a_quarantine_is_logged_only_once_its_group_is_committed(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _backlog(scenario)
    service = scenario.runtime.service
    poison = FailOnCall(monkeypatch, service, "_process", 2, ValueError("poisonous message"))
    FailOnCall(monkeypatch, service, "handle_in", 4, connection_lost())
    with pytest.raises(OperationalError):
        scenario.run()
    # The group rolled back: nothing was quarantined, so nothing may say it was.
    assert "quarantined" not in caplog.text
    assert _state(scenario)[0] == Counter()

    monkeypatch.setattr(service, "_process", poison.original)  # the trouble was passing
    scenario.run()
    assert "quarantined" not in caplog.text
    assert _state(scenario)[0] == Counter({"processed": TOTAL})
