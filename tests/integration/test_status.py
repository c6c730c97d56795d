"""`mailflow status`: what the daemon records, and when monitoring is told it is unhealthy."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from testbed.daemon import Daemon
from testbed.mail import build_message
from testbed.proc import finished_pid
from testbed.site import INFO_REQUEST, START, Scenario
from testbed.smtp import SmtpRelay

from mailflow.ops.health import Heartbeat, Limits, check, status_name
from mailflow.ops.metrics import StoreCollector
from mailflow.store.claims import Holder, Process
from mailflow.store.schema import OutboxRow

only_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _status(scenario: Scenario, now: datetime) -> tuple[int, dict]:
    result = scenario.cli("--now", now.isoformat(), "status", "--json", timeout=60)
    assert result.stderr == "", result.stderr  # no secret needed, no SMTP warning
    return result.returncode, json.loads(result.stdout)


def _name(scenario: Scenario) -> str:
    imap = scenario.runtime.settings.imap
    return status_name(imap.username, imap.host, imap.folder)


@only_sqlite
def test_status_follows_the_daemon_from_start_to_stop(scenario: Scenario) -> None:
    site = scenario.site
    now = START + timedelta(hours=1)
    code, report = _status(scenario, now)
    assert code == 1
    assert report["problems"] == [f"ningún daemon ha trabajado nunca en {_name(scenario)}"]

    daemon = Daemon(site.config_path, now, site.root / "daemon.log")
    try:
        daemon.wait_log("selected INBOX")
        time.sleep(1.0)  # let it settle into IDLE, so that the request wakes it up
        sent = site.send("analista", "Solicitud de publicación: feria", INFO_REQUEST)
        site.wait_for("analista", lambda m: "Solicitud recibida" in str(m["Subject"]))
        deadline = time.monotonic() + 30
        while True:  # the heartbeat row is written a few seconds apart at most
            code, report = _status(scenario, now)
            if code == 0 and report["daemon"]["last_message"]["outcome"] == "processed":
                break
            assert time.monotonic() < deadline, (report, daemon.log())
            time.sleep(0.5)
        daemon_info = report["daemon"]
        assert daemon_info["pid"] == daemon.process.pid
        assert daemon_info["imap_connected"] is True
        assert daemon_info["last_wake_at"] is not None  # the request woke it from IDLE
        assert daemon_info["last_message"]["message_id"] == sent["Message-ID"]
        assert daemon_info["last_message"]["request"].startswith("RRSS-")
        assert report["outbox"]["pending"] == 0
        assert report["overdue_stages"] == 0
        # It is registered as a holder of claims, its heartbeat renewed by its presence.
        [me] = report["daemons"]
        assert (me["pid"], me["gone"], me["claims"]) == (daemon.process.pid, None, 0)
        assert me["heartbeat_age_seconds"] < 10
        assert report["claims"] == {"held": 0, "held_by_gone": 0, "released": 0}

        # Plain text for people, same verdict.
        text = scenario.cli("--now", now.isoformat(), "status", timeout=60)
        assert text.returncode == 0 and text.stdout.startswith("sano"), text.stdout

        assert daemon.terminate(timeout=10) == 0
    finally:
        daemon.kill()
    code, report = _status(scenario, now)
    assert code == 1
    assert report["problems"][0].startswith("el daemon se detuvo el")
    assert report["daemons"] == []  # a clean stop unregisters it
    # Eight days later the stage-2 deadline has passed: reported, but not a daemon fault.
    code, report = _status(scenario, now + timedelta(days=8))
    assert report["overdue_stages"] == 1
    assert not any("overdue" in p for p in report["problems"])


class Wall:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@only_sqlite
def test_a_stale_heartbeat_or_imap_down_is_unhealthy(scenario: Scenario) -> None:
    store = scenario.runtime.store
    wall = Wall()
    beat = Heartbeat(store, "box", wait_seconds=60, clock=wall)
    beat.started()
    beat.beat(connected=True)

    def problems() -> list[str]:
        return check(store, "box", wall=wall.now, now=START).problems

    assert problems() == []
    wall.now += timedelta(seconds=179)  # within 3 x the 60 s wait
    assert problems() == []
    wall.now += timedelta(seconds=2)
    assert problems() == [
        f"sin latido desde hace 181 s (más de 180 s): el daemon (pid {os.getpid()} "
        f"en {socket.gethostname()}) está trabado o ya no existe"
    ]

    beat.beat(connected=False)  # alive, but IMAP is down
    wall.now += timedelta(seconds=299)
    beat.beat(connected=False)
    assert problems() == []
    wall.now += timedelta(seconds=2)
    beat.beat(connected=False)
    assert problems() == ["IMAP desconectado desde hace 301 s"]
    beat.beat(connected=True)
    assert problems() == []


@only_sqlite
def test_mail_stuck_in_the_outbox_is_unhealthy(scenario: Scenario) -> None:
    store = scenario.runtime.store
    wall = Wall()
    Heartbeat(store, "box", wait_seconds=60, clock=wall).started()
    site = scenario.site
    raw = build_message(site.addr("analista"), [site.shared], "Solicitud", INFO_REQUEST).as_bytes()
    scenario.runtime.replay(raw, START)  # queued, never flushed: the SMTP server is "down"

    limits = Limits(outbox_age_seconds=3600)
    report = check(store, "box", wall=wall.now, now=START + timedelta(minutes=59), limits=limits)
    assert report.healthy and report.outbox["pending"] == 2
    report = check(store, "box", wall=wall.now, now=START + timedelta(minutes=61), limits=limits)
    assert report.problems == ["2 correos esperan salir, el más antiguo desde hace 61 min"]
    assert report.outbox["oldest_pending"] == START.astimezone(UTC).isoformat()


@only_sqlite
def test_metrics_endpoint_on_loopback(scenario: Scenario) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families
    from testbed.ports import free_port

    site = scenario.site
    port = free_port()
    config = site.config_path.read_text(encoding="utf-8")
    site.config_path.write_text(
        config + f'\n[metrics]\nenabled = true\nlisten = "127.0.0.1:{port}"\n', encoding="utf-8"
    )
    now = START + timedelta(hours=1)
    daemon = Daemon(site.config_path, now, site.root / "daemon.log")
    try:
        site.send("analista", "Solicitud de publicación: feria", INFO_REQUEST)
        site.wait_for("directora", lambda m: "Acción requerida" in str(m["Subject"]))
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                text = r.read().decode()
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
            if samples.get(("mailflow_mails_sent_total", ()), 0) >= 2:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        assert samples[("mailflow_messages_total", (("outcome", "processed"),))] == 1
        assert samples[("mailflow_outbox_pending", ())] == 0
        assert samples[("mailflow_mails_failed_total", ())] == 0
        assert samples[("mailflow_overdue_stages", ())] == 0
        assert samples[("mailflow_imap_connected", ())] == 1
        assert samples[("mailflow_outbox_claims_released_total", ())] == 0
        assert samples[("mailflow_outbox_claimed_by_gone_daemons", ())] == 0
        assert daemon.terminate(timeout=10) == 0, daemon.log()
    finally:
        daemon.kill()


def test_metrics_may_only_listen_on_loopback() -> None:
    from pydantic import ValidationError

    from mailflow.config import Metrics

    assert Metrics(enabled=True, listen="127.0.0.1:9464").listen == "127.0.0.1:9464"
    for bad in ("0.0.0.0:9464", "192.0.2.1:9464", "127.0.0.1", "127.0.0.1:99999"):
        with pytest.raises(ValidationError):
            Metrics(enabled=True, listen=bad)


@only_sqlite
def test_status_before_the_first_start_neither_crashes_nor_creates_the_store(
    scenario: Scenario, tmp_path: Path
) -> None:
    site = scenario.site
    missing = tmp_path / "never" / "mailflow.db"
    missing.parent.mkdir()
    text = site.config_path.read_text(encoding="utf-8")
    site.config_path.write_text(
        text.replace(scenario.site.db_url, f"sqlite:///{missing}"), encoding="utf-8"
    )
    code, report = _status(scenario, START)
    assert code == 1
    assert report["problems"][0].startswith(
        f"la base de datos {missing} no existe: el daemon nunca arrancó"
    )
    assert not missing.exists()


@only_sqlite
def test_claims_held_by_a_daemon_that_is_gone_are_shown_then_released_and_counted(
    scenario: Scenario, relay: SmtpRelay
) -> None:
    rt = scenario.runtime
    readers = scenario.queue_mails(3)
    here = Process.this()
    killed = Holder(rt.store, process=replace(here, pid=finished_pid(), start="0"))
    with rt.store.transaction() as session:
        session.execute(update(OutboxRow).values(claimed_by=killed.enter(session)))
    pid, why = killed.process.pid, "su proceso ya no está en marcha"

    code, report = _status(scenario, START)
    assert code == 1
    assert (
        f"3 correos tomados por el daemon pid {pid} en {here.host}, que ya no está ({why}): "
        "un daemon en marcha los envía enseguida"
    ) in report["problems"]
    assert report["claims"] == {"held": 0, "held_by_gone": 3, "released": 0}
    [gone] = report["daemons"]
    assert (gone["id"], gone["pid"], gone["gone"], gone["claims"]) == (killed.id, pid, why, 3)
    text = scenario.cli("--now", START.isoformat(), "status", timeout=60).stdout
    assert (
        "correos tomados para enviar: 0 por daemons en marcha, 3 por daemons que ya no "
        "están; liberados hasta ahora: 0"
    ) in text
    assert f"  ya no está: pid {pid} en {here.host} ({why}), 3 correos tomados" in text

    scenario.run()  # any daemon's pass releases them and sends them

    assert sorted(m.rcpt_tos[0] for m in relay.accepted) == sorted(readers)
    code, report = _status(scenario, START)
    assert report["claims"] == {"held": 0, "held_by_gone": 0, "released": 3}
    assert report["daemons"] == []
    assert not [p for p in report["problems"] if "tomado" in p]
    collector = StoreCollector(lambda: rt.store, _name(scenario), lambda: START)
    figures = {s.name: s.value for family in collector.collect() for s in family.samples}
    assert figures["mailflow_outbox_claims_released_total"] == 3
    assert figures["mailflow_outbox_claimed_by_gone_daemons"] == 0
