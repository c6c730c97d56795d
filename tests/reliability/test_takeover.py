"""kill -9 a daemon in the middle of a flush: the mail it had claimed leaves within a minute.

A backlog of mails is queued in the outbox and `mailflow run` starts sending it; once the
relay has taken a few of them (the daemon still holds its claim on the others) the daemon
is SIGKILLed. Then, within ``BOUND`` seconds, every mail must have reached the relay:

* after a restart of the daemon (README, "Benchmarks and reliability"): measured from the
  restart;
* with a second daemon already running on the same store: measured from the kill.

The relay's log is the judge: every mail arrives, a mail arrives twice only with the same
Message-ID and bytes and only when it had already arrived before the kill (the crash fell
between the relay's 250 and the commit), and no reader gets one mail under two Message-IDs.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from testbed.daemon import Daemon
from testbed.mail import message_id_of, parse
from testbed.site import START, Scenario
from testbed.smtp import SmtpRelay

from mailflow.store.schema import DaemonRow, OutboxRow, OutboxStatus

from .conftest import full_size

BOUND = 60.0  # seconds: README, "Benchmarks and reliability"
NOW = START + timedelta(hours=1)

Spawn = Callable[[Path, datetime], Daemon]


def _ours(scenario: Scenario, relay: SmtpRelay) -> list[tuple[str, str, bytes]]:
    """Return (Message-ID, reader, bytes) of each mail the relay took from the daemons."""
    shared = scenario.site.shared
    return [
        (message_id_of(m.raw), m.rcpt_tos[0], m.raw)
        for m in relay.accepted
        if m.mail_from == shared
    ]


def _sent_count(scenario: Scenario, relay: SmtpRelay) -> int:
    shared = scenario.site.shared
    return sum(1 for m in relay.accepted if m.mail_from == shared)


def _claims(scenario: Scenario) -> dict[int, set[str]]:
    """Return the Message-IDs of the pending mails each daemon (by pid) has claimed."""
    with scenario.runtime.store.transaction() as session:
        rows = session.execute(
            select(DaemonRow.pid, OutboxRow.message_id)
            .join(OutboxRow, OutboxRow.claimed_by == DaemonRow.id)
            .where(OutboxRow.status == OutboxStatus.PENDING)
        )
        claims: dict[int, set[str]] = {}
        for pid, message_id in rows:
            claims.setdefault(pid, set()).add(message_id)
        return claims


def _kill_mid_flush(
    scenario: Scenario, relay: SmtpRelay, daemons: list[Daemon]
) -> tuple[Daemon, set[str]]:
    """Kill a daemon that is flushing once the relay took a few of its mails.

    Return it and the mails it had claimed a moment before the kill: a mail may be sent
    again only if it is one of those.
    """
    target = random.randint(3, 25)
    deadline = time.monotonic() + 120
    while True:
        assert all(d.alive for d in daemons), [d.log() for d in daemons]
        assert time.monotonic() < deadline, f"no flush to kill: {len(relay.accepted)} sent"
        if _sent_count(scenario, relay) >= target and (claims := _claims(scenario)):
            break
        time.sleep(0.005)
    pid, claimed = next(iter(claims.items()))
    flushing = next(d for d in daemons if d.process.pid == pid)
    flushing.kill()
    return flushing, claimed


def _wait_all_sent(scenario: Scenario, relay: SmtpRelay, expected: set[str], since: float) -> float:
    """Wait until the relay took every Message-ID of ``expected``; return the seconds taken."""
    while not expected <= {mid for mid, _, _ in _ours(scenario, relay)}:
        waited = time.monotonic() - since
        assert waited < BOUND + 30, (
            f"{len(expected - {mid for mid, _, _ in _ours(scenario, relay)})} mail(s) of "
            f"{len(expected)} still not sent {waited:.0f} s later; claims by pid: "
            f"{_claims(scenario)}"
        )
        time.sleep(0.05)
    return time.monotonic() - since


def _queued(scenario: Scenario) -> set[str]:
    with scenario.runtime.store.transaction() as session:
        return set(session.scalars(select(OutboxRow.message_id)))


def _check_once_each(scenario: Scenario, relay: SmtpRelay, claimed: set[str]) -> int:
    """Assert each mail reached its reader once, a repeat only of one the killed daemon had
    claimed (same Message-ID and bytes); return the number of repeats."""
    ours = _ours(scenario, relay)
    assert [mid for mid, _, _ in ours] == [
        str(parse(m.raw)["Message-ID"])
        for m in relay.accepted
        if m.mail_from == scenario.site.shared
    ]
    copies: dict[str, list[bytes]] = {}
    for message_id, _, raw in ours:
        copies.setdefault(message_id, []).append(raw)
    assert set(copies) == _queued(scenario)
    assert all(len(set(raws)) == 1 for raws in copies.values()), "a repeat is the same bytes"
    ids_per_reader = Counter(reader for _, reader in {(mid, r) for mid, r, _ in ours})
    assert set(ids_per_reader.values()) == {1}, "one mail under two Message-IDs"
    repeated = {mid for mid, raws in copies.items() if len(raws) > 1}
    assert repeated <= claimed, "a mail repeated that the killed daemon had not claimed"
    with scenario.runtime.store.transaction() as session:
        statuses = set(session.scalars(select(OutboxRow.status)))
        claims = list(
            session.scalars(select(OutboxRow.id).where(OutboxRow.claimed_by.is_not(None)))
        )
    assert statuses == {OutboxStatus.SENT} and claims == []
    assert all(d.ok for m in relay.accepted for d in m.deliveries), "not in the mailboxes"
    return len(ours) - len(copies)


def _both_beat_since_both_started(scenario: Scenario) -> bool:
    with scenario.runtime.store.transaction() as session:
        rows = session.scalars(select(DaemonRow)).all()
    # A beat a second after the later registration committed saw both rows.
    later = max(r.started_at for r in rows) + timedelta(seconds=1) if rows else None
    return len(rows) == 2 and later is not None and min(r.heartbeat_at for r in rows) > later


def _size() -> int:
    return 400 if full_size() else 120


def test_a_restart_sends_what_the_killed_daemon_had_claimed_within_a_minute(
    scenario: Scenario, relay: SmtpRelay, spawn: Spawn
) -> None:
    site = scenario.site
    scenario.queue_mails(_size())
    first = spawn(site.config_path, NOW)

    _, claimed = _kill_mid_flush(scenario, relay, [first])
    relay.wait_quiet(60)  # a DATA the relay was finishing lands in its log
    before_kill = _sent_count(scenario, relay)
    restarted = time.monotonic()
    second = spawn(site.config_path, NOW)
    took = _wait_all_sent(scenario, relay, _queued(scenario), restarted)

    assert took < BOUND
    assert second.terminate() == 0, second.log()
    repeats = _check_once_each(scenario, relay, claimed)
    print(
        f"\n{_size()} mails, {before_kill} sent before the kill, {len(claimed)} claimed by "
        f"the killed daemon; all sent {took:.1f} s after the restart; {repeats} repeat(s)"
    )


def test_a_second_daemon_takes_over_the_killed_daemons_claims_within_a_minute(
    scenario: Scenario, relay: SmtpRelay, spawn: Spawn
) -> None:
    site = scenario.site
    daemons = [spawn(site.config_path, NOW) for _ in range(2)]
    for daemon in daemons:
        daemon.wait_log(" watching ")
    # Each has seen the other at a beat of its presence (5 s apart) and waits in short slices.
    deadline = time.monotonic() + 30
    while not _both_beat_since_both_started(scenario):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    scenario.queue_mails(_size())
    site.send("analista", "Consulta", "Buenos días, ¿cómo envío una solicitud?")  # wakes both

    killed, claimed = _kill_mid_flush(scenario, relay, daemons)
    killed_at = time.monotonic()
    before_kill = _sent_count(scenario, relay)
    took = _wait_all_sent(scenario, relay, _queued(scenario), killed_at)

    assert took < BOUND
    [survivor] = [d for d in daemons if d is not killed]
    assert survivor.terminate() == 0, survivor.log()
    assert "released" in survivor.log()
    repeats = _check_once_each(scenario, relay, claimed)
    print(
        f"\n{_size()} mails, about {before_kill} sent before the kill, {len(claimed)} claimed "
        f"by the killed daemon; all sent {took:.1f} s after the kill; {repeats} repeat(s)"
    )
