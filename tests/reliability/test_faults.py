"""Server faults under the real daemon loop: the archive's disk fills up, Dovecot restarts,
the database is locked or restarted. After each, everything is processed once and delivered.

The loop is `Runner.run_forever` in a thread of the test (short retry pauses) or the real
`mailflow run` subprocess; the servers are the test bed's.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg.errors import DeadlockDetected
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from testbed.daemon import Daemon
from testbed.faults import NotPermittedError, SlowProxy, fill, small_disk
from testbed.loop import Clock, running
from testbed.mail import fetch_raw, parse
from testbed.postgres import Postgres
from testbed.site import INFO_REQUEST, START, Scenario, Site
from testbed.smtp import SmtpRelay

from mailflow.config import load_settings
from mailflow.daemon.catchup import Wiring
from mailflow.daemon.runner import Runner
from mailflow.daemon.runtime import Runtime, build_runtime
from mailflow.store import repository
from mailflow.store.schema import InboundRow, OutboxRow, OutboxStatus, RequestRow
from mailflow.transport.imap import ImapSource

from .conftest import full_size

ACK = "Solicitud recibida"
only_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def runner_of(rt: Runtime, port: int | None = None) -> Runner:
    """Return the real loop over a runtime, with short waits and retries."""
    imap = rt.settings.imap
    if port is not None:
        imap = imap.model_copy(update={"port": port})
    return Runner(
        Wiring(rt.service, rt.store, ImapSource(imap), rt.outbox),
        Clock(START),
        wait_seconds=0.5,
        retry_seconds=0.3,
    )


def ledger(scenario: Scenario) -> list[tuple[int, str]]:
    with scenario.runtime.store.transaction() as session:
        return [tuple(r) for r in session.execute(select(InboundRow.uid, InboundRow.outcome))]  # type: ignore[misc]


def unsent(scenario: Scenario) -> int:
    with scenario.runtime.store.transaction() as session:
        query = select(func.count(OutboxRow.id)).where(OutboxRow.status != OutboxStatus.SENT)
        return int(session.scalar(query) or 0)


def acks(site: Site) -> dict[str, int]:
    """Return how many acknowledgements the analista got, per subject."""
    counts: dict[str, int] = {}
    for mail in site.inbox("analista"):
        if ACK in str(mail["Subject"]):
            key = str(mail["Subject"]).split("] ", 1)[-1]
            counts[key] = counts.get(key, 0) + 1
    return counts


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait for ``check``; a database that is restarting just means "not yet"."""

    def ok() -> bool:
        try:
            return check()
        except OperationalError:
            return False

    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def request(title: str) -> str:
    return INFO_REQUEST.replace("Feria de servicios digitales 2026", title)


# -- the archive's disk is full ------------------------------------------------------------


@only_sqlite
def test_a_full_archive_disk_stops_intake_loudly_and_catches_up_when_space_returns(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    site = scenario.site
    archive = scenario.runtime.service.archive
    try:
        disk = small_disk(archive.root, "1m")
        disk.__enter__()
    except NotPermittedError as exc:
        pytest.skip(str(exc))
    try:
        site.send("analista", "Solicitud A", request("Feria A"))
        scenario.run()
        assert ledger(scenario) == [(1, "processed")]
        old = {p: p.read_bytes() for p in archive.files()}
        assert old
        filler = fill(archive.root)
        site.send("analista", "Solicitud B", request("Feria B"))
        site.send("analista", "Solicitud C", request("Feria C"))
        caplog.set_level(logging.INFO, logger="mailflow")
        runner = runner_of(scenario.runtime)
        with running(runner):
            wait_until(lambda: "CRITICAL" in {r.levelname for r in caplog.records}, "CRITICAL")
            wait_until(lambda: caplog.text.count("archive still failing") >= 3, "retries")
            # Intake stopped: the new mail is neither processed nor quarantined, and stays
            # on the server; what was archived before is untouched; the old mail went out.
            assert ledger(scenario) == [(1, "processed")]
            assert len(fetch_raw(site.dovecot, site.shared)) == 3
            assert {p: p.read_bytes() for p in archive.files() if p != filler} == old
            assert unsent(scenario) == 0
            critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
            assert len(critical) == 1, critical  # once, not at every retry
            assert "NOT being processed" in critical[0]
            assert "Free space" in critical[0]
            assert str(archive.root) in critical[0]
            filler.unlink()  # space returns
            wait_until(lambda: len(ledger(scenario)) == 3 and unsent(scenario) == 0, "catch-up")
            wait_until(lambda: sum(acks(site).values()) == 3, "acknowledgements")
        assert sorted(ledger(scenario)) == [(1, "processed"), (2, "processed"), (3, "processed")]
        assert set(acks(site).values()) == {1}
        assert "takes files again" in caplog.text
        assert archive.verify([]).altered == []
    finally:
        disk.__exit__(None, None, None)


# -- Dovecot restarts ---------------------------------------------------------------------


def _config_via(site: Site, port: int) -> Path:
    """Write a copy of the site's config whose IMAP port is ``port`` (a proxy's)."""
    text = site.config_text()
    old = f"port = {site.dovecot.imap_port}\n"
    assert text.count(old) == 1
    path = site.root / f"mailflow-{port}.toml"
    path.write_text(text.replace(old, f"port = {port}\n"), encoding="utf-8")
    return path


@only_sqlite
def test_dovecot_restarted_during_idle_loses_nothing(
    scenario: Scenario, spawn: Callable[[Path, datetime], Daemon]
) -> None:
    site = scenario.site
    site.send("analista", "Solicitud A", request("Feria A"))
    daemon = spawn(site.config_path, START)
    daemon.wait_log("outcome=processed")
    wait_until(lambda: unsent(scenario) == 0, "the first mails sent")
    time.sleep(0.5)  # back in IDLE
    site.dovecot.restart()
    site.send("analista", "Solicitud B", request("Feria B"))
    daemon.wait_log("outcome=processed", count=2, timeout=60)
    wait_until(lambda: sum(acks(site).values()) == 2 and unsent(scenario) == 0, "B's mails")
    assert daemon.terminate() == 0, daemon.log()
    assert sorted(ledger(scenario)) == [(1, "processed"), (2, "processed")]
    assert set(acks(site).values()) == {1}
    assert "Traceback" not in daemon.log()


@only_sqlite
def test_dovecot_restarted_in_the_middle_of_a_large_fetch_loses_nothing(
    scenario: Scenario, spawn: Callable[[Path, datetime], Daemon]
) -> None:
    site = scenario.site
    proxy = SlowProxy(site.dovecot.host, site.dovecot.imap_port, rate=2_000_000)
    try:
        daemon = spawn(_config_via(site, proxy.port), START)
        daemon.wait_log("IDLE")
        photo = ("foto.jpg", bytes(range(256)) * 24_000, "image/jpeg")  # 6 MB, 8 MB in base64
        site.send("analista", "Solicitud con foto", request("Feria F"), attachments=(photo,))
        proxy.wait_downstream(2_000_000)  # a quarter of the FETCH has gone through
        assert ledger(scenario) == []
        # Dovecot goes down; its imap process would still flush megabytes from the kernel's
        # buffers: reset the connection, as a crashed server's would be.
        proxy.cut()
        first = proxy.downstream
        site.dovecot.restart()
        daemon.wait_log("outcome=processed", timeout=90)
        wait_until(lambda: sum(acks(site).values()) == 1 and unsent(scenario) == 0, "mails")
        assert daemon.terminate() == 0, daemon.log()
    finally:
        proxy.close()
    assert ledger(scenario) == [(1, "processed")]
    assert set(acks(site).values()) == {1}
    assert "Traceback" not in daemon.log()
    assert first < 6_000_000 < proxy.downstream - first  # cut in the middle, then whole


# -- the database locked or restarted -------------------------------------------------------


def _backlog(site: Site, count: int) -> None:
    for n in range(count):
        site.send("analista", f"Solicitud {n}", request(f"Feria {n}"))


def _all_done(scenario: Scenario, count: int) -> bool:
    return len(ledger(scenario)) == count and unsent(scenario) == 0


@only_sqlite
def test_sqlite_locked_by_another_connection_for_a_while_delays_but_loses_nothing(
    scenario: Scenario, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = scenario.site
    path = site.db_url.removeprefix("sqlite:///")
    # A busy timeout shorter than the lock, so the daemon's writes fail with "locked" and
    # the loop has to ride it out (30 s in production; the lock below would be minutes).
    # The test reads through a read-only connection of its own: WAL never blocks readers.
    monkeypatch.setattr(repository, "SQLITE_BUSY_TIMEOUT_MS", 200)
    fresh = Scenario(site)
    try:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as a backup tool or admin might
        _backlog(site, 4)
        caplog.set_level(logging.INFO, logger="mailflow")
        with running(runner_of(fresh.runtime)):
            wait_until(lambda: caplog.text.count("database is locked") >= 3, "lock errors")
            assert _readonly(path) == ({}, 0)  # nothing processed, nothing quarantined
            holder.execute("ROLLBACK")
            holder.close()
            wait_until(lambda: _readonly(path) == ({"processed": 4}, 0), "catch-up")
            wait_until(lambda: sum(acks(site).values()) == 4, "acknowledgements")
    finally:
        fresh.close()
    assert set(acks(site).values()) == {1}


def _readonly(path: str) -> tuple[dict[str, int], int]:
    """Return the ledger's outcomes and the unsent outbox rows, read without a write lock."""
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        outcomes = dict(reader.execute("SELECT outcome, count(*) FROM inbound GROUP BY outcome"))
        query = "SELECT count(*) FROM outbox WHERE status != ?"
        return outcomes, int(reader.execute(query, (OutboxStatus.SENT,)).fetchone()[0])
    finally:
        reader.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_restarted_mid_work_loses_nothing_and_doubles_nothing(
    scenario: Scenario, postgres: Postgres, caplog: pytest.LogCaptureFixture
) -> None:
    site = scenario.site
    total = 30 if full_size() else 12
    _backlog(site, total)
    caplog.set_level(logging.INFO, logger="mailflow")
    rt = scenario.runtime
    process = rt.service._process
    uids: list[int] = []

    def restarting(session: Any, ledger: InboundRow, *args: Any, **kwargs: Any) -> Any:
        """Restart PostgreSQL inside the third message's transaction (its ledger row in)."""
        uids.append(ledger.uid)
        if len(uids) == 3:
            postgres.restart()
        return process(session, ledger, *args, **kwargs)

    rt.service._process = restarting  # type: ignore[method-assign]
    with running(runner_of(rt)):
        wait_until(lambda: _all_done(scenario, total), "catch-up", timeout=120)
        wait_until(lambda: sum(acks(site).values()) == total, "acknowledgements")
    assert Counter(outcome for _, outcome in ledger(scenario)) == {"processed": total}
    assert set(acks(site).values()) == {1}
    # The third message's whole group (the messages since the last commit, one transaction)
    # rolled back and was handled again after the restart; nothing else was. It used to be
    # the third message alone, when each message had a transaction of its own.
    again = sorted(uid for uid, n in Counter(uids).items() if n > 1)
    assert uids[2] in again and set(again) <= set(uids[:3])
    assert Counter(Counter(uids).values()) == {1: total - len(again), 2: len(again)}
    with scenario.runtime.store.transaction() as session:
        assert session.scalar(select(func.count(RequestRow.id))) == total
    errors = [r.getMessage()[:120] for r in caplog.records if r.levelno >= logging.ERROR]
    print(f"\nridden out across a PostgreSQL restart: {errors}")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_deadlocked_group_is_handled_again_at_once(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    """Daemons sharing PostgreSQL can deadlock (ledger claims and the code sequence's row
    lock in one group's transaction); the loser's group is handled again at once, not
    after ``retry_seconds``, and nothing is doubled."""
    site = scenario.site
    total = 5
    _backlog(site, total)
    rt = scenario.runtime
    handle_in = rt.service.handle_in
    uids: list[int] = []

    def deadlocking(session: Any, item: Any, now: datetime) -> Any:
        uids.append(item.uid)
        if len(uids) == 3:  # what PostgreSQL raises in the transaction it aborts
            raise OperationalError("UPDATE", {}, DeadlockDetected("deadlock detected"))
        return handle_in(session, item, now)

    rt.service.handle_in = deadlocking  # type: ignore[method-assign]
    caplog.set_level(logging.WARNING, logger="mailflow")
    scenario.run()  # one pass, no error: the deadlock was ridden out inside it
    wait_until(lambda: _all_done(scenario, total), "catch-up")
    wait_until(lambda: sum(acks(site).values()) == total, "acknowledgements")
    assert Counter(outcome for _, outcome in ledger(scenario)) == {"processed": total}
    assert set(acks(site).values()) == {1}
    again = sorted(uid for uid, n in Counter(uids).items() if n > 1)
    assert uids[2] in again and set(again) <= set(uids[:3])
    assert len(uids) == total + len(again)
    assert "deadlocked, handling it again" in caplog.text


# -- the SMTP server down for a long time ---------------------------------------------------


@only_sqlite
def test_smtp_down_for_hours_421_then_refused_then_back_sends_everything_once(
    scenario: Scenario, relay: SmtpRelay
) -> None:
    """Rows wait through hours of 421 greetings and refused connections, none given up or
    reported, and go out once each when the server is back."""
    site = scenario.site
    front = SlowProxy(relay.host, relay.port)
    front.greeting = b"421 4.3.2 Service not available, closing transmission channel\r\n"
    text = site.config_text()
    old = f"port = {relay.port}\n"
    assert text.count(old) == 1
    path = site.root / "via-front.toml"
    path.write_text(text.replace(old, f"port = {front.port}\n"), encoding="utf-8")
    fronted = build_runtime(load_settings(path, {}))  # the same site, SMTP via the front
    try:
        _backlog(site, 3)
        runner = runner_of(fronted)
        clock = runner.clock
        assert isinstance(clock, Clock)
        with running(runner):
            wait_until(lambda: len(ledger(scenario)) == 3, "intake while SMTP is down")
            for hour in range(12):  # half a day: six hours of 421, six of refused connections
                if hour == 6:
                    front.greeting = None
                    front.refuse()
                clock.now += timedelta(hours=1)
                time.sleep(1.2)  # a few passes at this hour
            with scenario.runtime.store.transaction() as session:
                rows = list(session.scalars(select(OutboxRow)))
                assert {r.status for r in rows} == {OutboxStatus.PENDING}
                assert {r.kind for r in rows} == {"acknowledgement", "action_needed"}
                assert min(r.attempts for r in rows) >= 3  # retried all along
                errors = " ".join(r.last_error or "" for r in rows)
            assert not [m for m in relay.accepted if m.mail_from == site.shared]
            front.listen()  # back
            clock.now += timedelta(hours=1)
            wait_until(lambda: unsent(scenario) == 0, "the outbox flushed", timeout=60)
    finally:
        fronted.store.close()
        front.close()
    assert "421" in errors or "refused" in errors.lower()
    sent = Counter(
        str(parse(m.raw)["Message-ID"]) for m in relay.accepted if m.mail_from == site.shared
    )
    assert len(sent) == 6
    assert set(sent.values()) == {1}
    assert sum(acks(site).values()) == 3
    assert site.inbox("jefe.ugs") == []  # nothing was given up, so nothing reported
