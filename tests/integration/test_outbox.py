"""The transactional outbox against the real relay and Dovecot: retries, failures, reports.

Each test plays a request by real mail, makes the relay answer 451/550 or refuse
connections while a `run --once` pass flushes the outbox, and reads the outcome in the
rows and in people's real mailboxes. The scenario's clock is moved by hand to step over
(or stay before) a row's ``next_attempt_at``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import select, update
from testbed.mail import parse
from testbed.proc import finished_pid
from testbed.site import INFO_REQUEST, START, Scenario, code_of
from testbed.smtp import SmtpRelay

from mailflow.app import outbox as outbox_module
from mailflow.app.outbox import Outbox, Send
from mailflow.config import load_settings
from mailflow.daemon.runtime import build_runtime
from mailflow.store.claims import Holder, Process, store_time
from mailflow.store.schema import DaemonRow, OutboxRow, OutboxStatus
from mailflow.transport.smtp import OnResult, Outgoing, Reply, SendResult, SmtpAuthError

ACK = "Solicitud recibida"
ACTION = "Acción requerida"
REPORT = "No se pudo entregar"


def _rows(scenario: Scenario) -> list[OutboxRow]:
    with scenario.runtime.store.transaction() as session:
        return list(session.scalars(select(OutboxRow).order_by(OutboxRow.id)))


def _row(scenario: Scenario, kind: str, address: str) -> OutboxRow:
    """Return the one outbox row of ``kind`` first addressed to ``address``."""
    found = [r for r in _rows(scenario) if r.kind == kind and address in _rcpt(r)]
    assert len(found) == 1, [(r.kind, r.recipients, r.status) for r in _rows(scenario)]
    return found[0]


def _rcpt(row: OutboxRow) -> str:
    # recipients shrinks to those still to try; the To header keeps who it was for.
    return str(parse(row.raw)["To"])


def _subjects(scenario: Scenario, person: str, word: str) -> list[EmailMessage]:
    return [m for m in scenario.site.inbox(person) if word in str(m["Subject"])]


def _sent_by_daemon(relay: SmtpRelay, scenario: Scenario, recipient: str) -> list[str]:
    """Return the Message-IDs the relay took from the daemon for ``recipient``, in order."""
    shared = scenario.site.shared
    return [
        str(parse(m.raw)["Message-ID"])
        for m in relay.accepted
        if m.mail_from == shared and recipient in m.rcpt_tos
    ]


def _refusals(relay: SmtpRelay, recipient: str) -> int:
    return sum(1 for r in relay.refused if r.recipient == recipient)


def _open_request(scenario: Scenario) -> None:
    scenario.site.send("analista", "Solicitud de publicación: feria", INFO_REQUEST)


def test_451_for_one_recipient_is_retried_later_with_the_same_message_id(
    scenario: Scenario, relay: SmtpRelay
) -> None:
    site = scenario.site
    directora = site.addr("directora")
    relay.fail_next(451, recipient=directora)
    _open_request(scenario)
    scenario.now = START
    scenario.run()

    # The other recipient's mail of the same pass went out; the directora's waits.
    ack = site.wait_for("analista", lambda m: ACK in str(m["Subject"]))
    row = _row(scenario, "action_needed", directora)
    assert row.status == OutboxStatus.PENDING
    assert row.attempts == 1
    assert row.next_attempt_at == START + timedelta(minutes=1)
    assert row.last_error is not None
    assert "451" in row.last_error
    assert site.inbox("directora") == []

    # A pass before next_attempt_at leaves it alone.
    scenario.now = START + timedelta(seconds=30)
    scenario.run()
    assert _refusals(relay, directora) == 1
    assert site.inbox("directora") == []

    scenario.now = START + timedelta(minutes=2)
    scenario.run()
    mail = site.wait_for("directora", lambda m: ACTION in str(m["Subject"]))
    assert code_of(mail) == code_of(ack)
    assert mail["Message-ID"] == row.message_id  # fixed when the row was written
    assert _row(scenario, "action_needed", directora).status == OutboxStatus.SENT

    scenario.run()  # nothing is sent twice
    assert _sent_by_daemon(relay, scenario, directora) == [row.message_id]
    assert len(_subjects(scenario, "analista", ACK)) == 1
    assert len(_subjects(scenario, "directora", ACTION)) == 1


def test_550_fails_the_row_and_reports_once_to_the_jefatura_ugs(
    scenario: Scenario, relay: SmtpRelay
) -> None:
    site = scenario.site
    directora = site.addr("directora")
    relay.fail_next(550, recipient=directora)
    _open_request(scenario)
    scenario.run()

    row = _row(scenario, "action_needed", directora)
    assert row.status == OutboxStatus.FAILED
    assert row.last_error is not None
    assert "550" in row.last_error
    # The notice went out in the same pass, to the Jefatura UGS's real inbox.
    report = site.wait_for("jefe.ugs", lambda m: REPORT in str(m["Subject"]))
    text = report.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert directora in text
    assert "550" in text
    assert ACTION in text  # which mail it was: its subject, not a template name
    assert report["Auto-Submitted"] == "auto-generated"

    for _ in range(3):
        scenario.run()
    assert len(_subjects(scenario, "jefe.ugs", REPORT)) == 1
    assert _refusals(relay, directora) == 1  # a 5xx is never retried
    assert site.inbox("directora") == []
    assert [r.kind for r in _rows(scenario) if r.kind == "delivery_failed"] == ["delivery_failed"]
    assert all(r.status != OutboxStatus.PENDING for r in _rows(scenario))


def test_a_failing_failure_report_is_not_reported_again(
    scenario: Scenario, relay: SmtpRelay
) -> None:
    site = scenario.site
    jefe = site.addr("jefe.ugs")
    relay.fail_next(550, recipient=site.addr("directora"))
    relay.fail_next(550, recipient=jefe)  # the first mail to jefe.ugs is the report
    _open_request(scenario)
    for _ in range(3):
        scenario.run()

    reports = [r for r in _rows(scenario) if r.kind == "delivery_failed"]
    assert len(reports) == 1
    assert reports[0].status == OutboxStatus.FAILED
    assert _refusals(relay, jefe) == 1
    assert site.inbox("jefe.ugs") == []
    assert all(r.status != OutboxStatus.PENDING for r in _rows(scenario))


def test_smtp_down_during_a_pass_loses_nothing_and_the_next_pass_sends_once(
    scenario: Scenario, relay: SmtpRelay
) -> None:
    site = scenario.site
    _open_request(scenario)
    with relay.refusing_connections():
        scenario.run()

    rows = _rows(scenario)
    assert {r.kind for r in rows} == {"acknowledgement", "action_needed"}
    assert all(r.status == OutboxStatus.PENDING and r.attempts == 1 for r in rows)
    assert all(r.last_error for r in rows)
    assert len(scenario.runtime.requests.summaries()) == 1  # the request itself is recorded
    assert site.inbox("analista") == []
    assert site.inbox("directora") == []

    scenario.run()
    scenario.run()
    assert all(r.status == OutboxStatus.SENT for r in _rows(scenario))
    for person, word in (("analista", ACK), ("directora", ACTION)):
        assert len(_subjects(scenario, person, word)) == 1, person
        assert len(_sent_by_daemon(relay, scenario, site.addr(person))) == 1, person
    assert _subjects(scenario, "jefe.ugs", REPORT) == []


def test_temporary_failures_for_48_hours_give_up_and_report(
    scenario: Scenario, relay: SmtpRelay
) -> None:
    site = scenario.site
    directora = site.addr("directora")
    relay.fail_next(451, recipient=directora, count=100)
    _open_request(scenario)
    scenario.now = START
    scenario.run()

    scenario.now = START + timedelta(hours=47, minutes=59)
    scenario.run()
    row = _row(scenario, "action_needed", directora)
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 2)
    assert _subjects(scenario, "jefe.ugs", REPORT) == []

    scenario.now = START + timedelta(hours=48, minutes=1)  # the retry due at 48:01
    scenario.run()
    row = _row(scenario, "action_needed", directora)
    assert (row.status, row.attempts) == (OutboxStatus.FAILED, 3)
    report = site.wait_for("jefe.ugs", lambda m: REPORT in str(m["Subject"]))
    text = report.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert directora in text
    assert "451" in text

    scenario.now += timedelta(hours=5)
    scenario.run()
    # Given up means never tried again (the relay also refuses the directora's reminders
    # of the overdue stage, so its refusal count says nothing about this row).
    row = _row(scenario, "action_needed", directora)
    assert (row.status, row.attempts) == (OutboxStatus.FAILED, 3)
    assert len(_subjects(scenario, "jefe.ugs", REPORT)) == 1


def test_rows_sent_before_an_operator_error_are_recorded_as_sent(scenario: Scenario) -> None:
    """A login refused mid-batch must not make the mails that left go out again."""
    _open_request(scenario)
    scenario.run()  # delivers both mails; make them due again to replay a flush
    rt = scenario.runtime
    with rt.store.transaction() as session:
        for row in session.scalars(select(OutboxRow)):
            row.status, row.attempts = OutboxStatus.PENDING, 0

    def half_then_refused(items: Sequence[Outgoing], on_result: OnResult) -> list[SendResult]:
        first, *rest = items
        error = SmtpAuthError("535 login refused")
        error.results = [SendResult(first.key, accepted=first.recipients)] + [
            SendResult(i.key, refused=dict.fromkeys(i.recipients, Reply(-1, "(not sent)")))
            for i in rest
        ]
        raise error

    out = rt.outbox
    broken = Outbox(rt.store, half_then_refused, out.composer, out.envelope_from, out.report_to)
    try:
        broken.flush(scenario.now)
    except SmtpAuthError:
        pass
    else:
        raise AssertionError("the operator's error must reach the caller")
    first, second = _rows(scenario)
    assert (first.status, first.attempts) == (OutboxStatus.SENT, 1)
    assert (second.status, second.attempts) == (OutboxStatus.PENDING, 1)


def test_two_flushes_at_once_never_send_one_row_twice(scenario: Scenario, relay: SmtpRelay) -> None:
    """Two daemons sharing the store (docs/design.md §8) never take the same row."""
    _open_request(scenario)
    with relay.refusing_connections():
        scenario.run()  # intake recorded, both mails deferred
    rt, out = scenario.runtime, scenario.runtime.outbox
    taken: list[list[int | str]] = []
    inside, release = threading.Event(), threading.Event()

    def slow(items: Sequence[Outgoing], on_result: OnResult) -> list[SendResult]:
        taken.append([i.key for i in items])
        inside.set()
        release.wait(30)
        return [SendResult(i.key, accepted=i.recipients) for i in items]

    def quick(items: Sequence[Outgoing], on_result: OnResult) -> list[SendResult]:
        taken.append([i.key for i in items])
        return [SendResult(i.key, accepted=i.recipients) for i in items]

    first = Outbox(rt.store, slow, out.composer, out.envelope_from, out.report_to)
    second = Outbox(rt.store, quick, out.composer, out.envelope_from, out.report_to)
    now = scenario.now + timedelta(hours=1)
    worker = threading.Thread(target=first.flush, args=(now,))
    worker.start()
    try:
        assert inside.wait(15)
        report = second.flush(now)  # while the first is still talking to its server
    finally:
        release.set()
        worker.join(30)
    assert report.sent == 0
    assert len(taken) == 1
    assert len(taken[0]) == 2
    assert all(r.status == OutboxStatus.SENT for r in _rows(scenario))


class _KilledError(Exception):
    """Stands for a kill -9 of the daemon in the middle of a flush."""


def _dying(send: Send, at: int, pause: float = 0.0) -> Send:
    """Return ``send`` killed right after the server accepted its ``at``-th mail.

    That mail is never recorded (the kill fell between the server's 250 and the commit);
    ``pause`` makes every decision take that long, as a slow server would.
    """

    def dying(items: Sequence[Outgoing], on_result: OnResult) -> list[SendResult]:
        told = 0

        def tell(result: SendResult) -> None:
            nonlocal told
            told += 1
            if told == at:
                raise _KilledError(f"killed after mail {at}")
            time.sleep(pause)
            on_result(result)

        return send(items, tell)

    return dying


def _crash_then_flush_again(
    scenario: Scenario, relay: SmtpRelay, dying: Send
) -> tuple[int, list[str]]:
    """Flush with ``dying``, then normally; return the rows recorded sent by the first
    flush and the Message-IDs the relay took more than once."""
    rt, out = scenario.runtime, scenario.runtime.outbox
    # The dying daemon's process is gone once it is killed: a pid no process has.
    here = Process.this()
    killed = Holder(rt.store, process=Process(here.host, here.machine, finished_pid(), "0"))
    broken = Outbox(rt.store, dying, out.composer, out.envelope_from, out.report_to, holder=killed)
    with pytest.raises(_KilledError):
        broken.flush(scenario.now)
    recorded = {r.message_id for r in _rows(scenario) if r.status == OutboxStatus.SENT}
    # The next daemon finds the unrecorded rows claimed by a daemon that is gone: it
    # releases them at once, and sends them again.
    rt.outbox.flush(scenario.now)
    assert all(r.status == OutboxStatus.SENT for r in _rows(scenario))
    ids = [str(parse(m.raw)["Message-ID"]) for m in relay.accepted]
    assert set(ids) == {r.message_id for r in _rows(scenario)}
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    assert not set(repeated) & recorded, "a mail recorded as sent went out again"
    return len(recorded), repeated


def test_a_crash_mid_flush_repeats_only_the_mails_of_the_last_group(
    scenario: Scenario, relay: SmtpRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results are recorded in groups of RECORD_EVERY while the batch goes on (issue 7)."""
    monkeypatch.setattr(outbox_module, "RECORD_AFTER_SECONDS", 3600.0)  # the count alone
    scenario.queue_mails(30)

    recorded, repeated = _crash_then_flush_again(
        scenario, relay, _dying(scenario.runtime.outbox.send, at=25)
    )

    # 24 results reached the outbox: the first group of 20 is recorded, four were not.
    assert recorded == 20
    assert len(repeated) == 5  # the four and the one accepted just before the kill


def test_a_slow_flush_records_what_was_accepted_every_quarter_second(
    scenario: Scenario, relay: SmtpRelay
) -> None:
    scenario.queue_mails(8)

    recorded, repeated = _crash_then_flush_again(
        scenario, relay, _dying(scenario.runtime.outbox.send, at=5, pause=0.3)
    )

    assert recorded >= 4  # each of the four told results was recorded on its own
    assert len(repeated) == 5 - recorded


class _Watchdog:
    """Counts the daemon's pings to systemd's watchdog."""

    def __init__(self) -> None:
        self.pings = 0

    def watchdog(self, force: bool = False) -> None:
        self.pings += 1


def test_a_long_flush_pings_the_watchdog_after_each_group_even_after_a_reload(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "RECORD_AFTER_SECONDS", 3600.0)  # the count alone
    rt = scenario.runtime
    runner = rt.runner(lambda: scenario.now)
    spy = _Watchdog()
    runner.notifier = spy  # type: ignore[assignment]
    scenario.queue_mails(45)

    rt.outbox.flush(scenario.now)
    assert spy.pings == 3  # groups of 20, 20 and the last 5

    holder = runner.outbox.holder
    reloaded = build_runtime(load_settings(scenario.site.config_path, {}))
    runner.rewire(reloaded.wiring(previous=runner.source.tokens))
    try:
        scenario.queue_mails(25)
        runner.outbox.flush(scenario.now)
        assert spy.pings == 3 + 2
        # The daemon keeps its identity: what it claimed before the reload stays its own.
        assert runner.outbox.holder is holder and holder.store is reloaded.store
    finally:
        runner.source.close()
        reloaded.store.close()


def test_a_mail_being_sent_names_its_holder_until_its_result_is_recorded(
    scenario: Scenario,
) -> None:
    scenario.queue_mails(2)
    rt, out = scenario.runtime, scenario.runtime.outbox
    during: list[set[str | None]] = []

    def looking(items: Sequence[Outgoing], on_result: OnResult) -> list[SendResult]:
        during.append({r.claimed_by for r in _rows(scenario)})
        return [SendResult(i.key, accepted=i.recipients) for i in items]

    looker = Outbox(
        rt.store, looking, out.composer, out.envelope_from, out.report_to, holder=out.holder
    )
    assert looker.flush(scenario.now).sent == 2

    assert during == [{out.holder.id}]
    assert {r.claimed_by for r in _rows(scenario)} == {None}
    with rt.store.transaction() as session:  # the holder is registered, with a heartbeat
        assert session.get(DaemonRow, out.holder.id) is not None


class _Clock:
    """A monotonic clock the test moves (a process frozen, then thawed)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_daemon_taken_for_gone_mid_flush_stops_and_each_mail_leaves_once(
    scenario: Scenario, relay: SmtpRelay
) -> None:
    """A daemon frozen mid-flush (SIGSTOP, a paused VM) past the bound, then thawed."""
    scenario.queue_mails(10)
    rt, out = scenario.runtime, scenario.runtime.outbox
    clock = _Clock()
    here = Process.this()
    elsewhere = Process("otro", "otro 0 0 pid:[1]", here.pid, here.start)  # only beats count
    frozen = Holder(rt.store, process=elsewhere, clock=clock)

    def freezing(items: Sequence[Outgoing], on_result: OnResult) -> list[SendResult]:
        told = 0

        def tell(result: SendResult) -> None:
            nonlocal told
            told += 1
            on_result(result)
            if told == 3:  # frozen for 40 s: meanwhile another daemon took it for gone
                clock.now += 40
                with rt.store.transaction() as session:
                    session.execute(
                        update(DaemonRow)
                        .where(DaemonRow.id == frozen.id)
                        .values(heartbeat_at=store_time(session) - timedelta(seconds=40))
                    )
                with rt.store.transaction() as session:
                    out.holder.enter(session)
                    assert len(out.holder.take_over(session)) == 10

        return out.send(items, tell)

    thawed = Outbox(
        rt.store, freezing, out.composer, out.envelope_from, out.report_to, holder=frozen
    )
    report = thawed.flush(scenario.now)

    # The mail it was sending when it froze is the last one: it stopped before the next.
    assert report.sent == 4
    assert len(relay.accepted) == 4
    assert out.flush(scenario.now).sent == 6
    ids = [str(parse(m.raw)["Message-ID"]) for m in relay.accepted]
    assert sorted(ids) == sorted(r.message_id for r in _rows(scenario))  # each once
    assert {r.status for r in _rows(scenario)} == {OutboxStatus.SENT}
