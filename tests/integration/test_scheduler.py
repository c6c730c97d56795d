"""Reminders, escalations, digests and window ends by real mail, pass after pass, with restarts.

The scenario's clock is set before each `run --once` pass (as `--now` does); several passes
a day, a daemon restarted mid-week and days of downtime must still give one reminder per
overdue business day, one digest per week and one window-end notice.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

from sqlalchemy import select
from testbed.site import INFO_REQUEST, TZ, Scenario, about, code_of

from mailflow.config import load_settings
from mailflow.daemon.runtime import build_runtime
from mailflow.store.schema import HistoryRow, RequestRow

REMINDER, ESCALATION, DIGEST, WINDOW = (
    "Recordatorio",
    "se informa al superior",
    "Resumen semanal",
    "Fin del período de publicación",
)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


def run_at(scenario: Scenario, moments: Iterable[datetime]) -> None:
    for moment in moments:
        scenario.now = moment
        scenario.run()


def several_a_day(days: Iterable[date]) -> list[datetime]:
    """Return passes before, at, just after and long after the 09:00 slot, every day."""
    return [at(d, h, m) for d in days for h, m in ((7, 0), (9, 0), (9, 1), (13, 30), (18, 0))]


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def restart(scenario: Scenario) -> None:
    """Stop the daemon and start a new one on the same database (a restart)."""
    scenario.runtime.store.close()
    scenario.runtime = build_runtime(load_settings(scenario.site.config_path, {}))


def mails(scenario: Scenario, person: str, word: str, count: int) -> list[EmailMessage]:
    """Wait until ``person`` has ``count`` mails whose subject holds ``word``; return them."""
    deadline = time.monotonic() + 15
    while True:
        found = [m for m in scenario.site.inbox(person) if word in str(m["Subject"])]
        if len(found) >= count or time.monotonic() > deadline:
            time.sleep(0.3)  # anything extra would have arrived by now
            return [m for m in scenario.site.inbox(person) if word in str(m["Subject"])]
        time.sleep(0.2)


def sent_on(message: EmailMessage) -> date:
    return parsedate_to_datetime(str(message["Date"])).astimezone(TZ).date()


def text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def open_request_at_stage_3(scenario: Scenario, when: datetime) -> str:
    """Open an información específica request and have the Dirección approve it.

    Its publication period is INFO_REQUEST's (10 to 20 December 2026) unless that is over.
    """
    site = scenario.site
    body = INFO_REQUEST
    if when.date() > date(2026, 12, 20):
        body = body.replace("10/12/2026", "11/01/2027").replace("20 de diciembre", "29 de enero")
        body = body.replace("de 2026\n", "de 2027\n")
    site.send("analista", "Solicitud", body)
    run_at(scenario, [when])
    code = code_of(site.wait_for("analista", lambda m: "Solicitud recibida" in str(m["Subject"])))
    site.reply("directora", site.wait_for("directora", about(code, "Acción requerida")), "APRUEBO")
    run_at(scenario, [when + timedelta(minutes=30)])
    assert scenario.show(code)["stage"]["number"] == 3
    return code


def test_christmas_reminders_escalation_digest_and_restart(scenario: Scenario) -> None:
    site = scenario.site
    code = open_request_at_stage_3(scenario, at(date(2026, 12, 22), 10))
    shown = scenario.show(code)
    assert shown["stage"]["due"] == "2026-12-23T16:30:00-04:00"  # one business day

    run_at(scenario, several_a_day(days(date(2026, 12, 23), date(2026, 12, 28))))
    restart(scenario)
    run_at(scenario, several_a_day(days(date(2026, 12, 28), date(2027, 1, 3))))

    reminders = mails(scenario, "jefe.ugs", REMINDER, 4)
    # Thursday 24, then Monday 28 (Christmas Friday and the weekend skipped), the escalation
    # on Tuesday 29 in place of a reminder, Wednesday 30, Thursday 31; none on New Year's Day.
    assert [sent_on(m) for m in reminders] == [
        date(2026, 12, 24),
        date(2026, 12, 28),
        date(2026, 12, 30),
        date(2026, 12, 31),
    ]
    first = text(reminders[0])
    assert "RRSS" in first and "DERIVO" in first  # it can be answered with the keyword
    assert "El plazo venció el miércoles 23 de diciembre de 2026, 16:30" in first
    [told] = mails(scenario, "directora", ESCALATION, 1)
    assert sent_on(told) == date(2026, 12, 29)
    assert "jefe.ugs@" in text(told) and "Historial de la solicitud" in text(told)
    assert "DERIVO" not in text(told).split("Historial")[0]  # the superior cannot act
    [copy] = mails(scenario, "jefe.ugs", ESCALATION, 1)
    assert "DERIVO" in text(copy)
    assert mails(scenario, "directora", REMINDER, 0) == []

    history = [h for h in scenario.show(code)["history"] if h["actor"] == "sistema"]
    assert [h["action"] for h in history] == ["RECORDATORIO"] * 2 + ["ESCALAMIENTO"] + [
        "RECORDATORIO"
    ] * 2
    assert [h["at"][:10] for h in history][2] == "2026-12-29"

    # One digest in week 53 (Monday 28, 08:00), before and after the restart; none for
    # week 52, whose Monday slot came before mailflow first ran (Tuesday 22).
    for person in ("jefe.ugs", "directora"):
        [digest] = mails(scenario, person, DIGEST, 1)
        assert sent_on(digest) == date(2026, 12, 28)
        assert code in text(digest) and "VENCIDA" in text(digest)

    # Answering the reminder acts on the stage: the reminders stop.
    site.reply("jefe.ugs", reminders[-1], "DERIVO al profesional.")
    run_at(scenario, several_a_day([date(2027, 1, 4)]))
    assert scenario.show(code)["stage"]["number"] == 4
    assert len(mails(scenario, "jefe.ugs", REMINDER, 5)) == 4


def test_window_end_once_and_a_missed_digest_caught_up_once(scenario: Scenario) -> None:
    site = scenario.site
    code = open_request_at_stage_3(scenario, at(date(2026, 12, 1), 10))
    url = "https://www.facebook.com/ejemplo/posts/42"
    with scenario.runtime.store.transaction() as session:
        row = session.scalar(select(RequestRow).where(RequestRow.code == code))
        assert row is not None and row.publish_until == date(2026, 12, 20)
        # Published (as the nine stages of test_daemon do by mail), window until Sunday 20.
        row.status, row.due_at = "publicado", None
        session.add(
            HistoryRow(
                request_id=row.id,
                at=at(date(2026, 12, 10), 10),
                actor=site.addr("community"),
                action="PUBLICADO",
                stage=9,
                details={"urls": [url]},
            )
        )
    # Down from Friday 18 to Wednesday 23: Monday's digest and the window's end were missed.
    run_at(scenario, [at(date(2026, 12, 18), 10), at(date(2026, 12, 20), 10)])
    assert mails(scenario, "community", WINDOW, 0) == []
    run_at(scenario, several_a_day([date(2026, 12, 23)]))
    restart(scenario)
    run_at(scenario, several_a_day([date(2026, 12, 24), date(2026, 12, 26)]))

    [notice] = mails(scenario, "community", WINDOW, 1)
    assert sent_on(notice) == date(2026, 12, 23)
    assert url in text(notice) and "domingo 20 de diciembre de 2026" in text(notice)
    history = scenario.show(code)["history"]
    assert [h["action"] for h in history].count("FIN_VENTANA") == 1
    # Each missed digest once, at the first pass of its week: week 51's (Monday 14; the
    # daemon was down until Friday 18) and week 52's (back on Wednesday 23 at 07:00).
    digests = mails(scenario, "directora", DIGEST, 2)
    assert [(sent_on(m), str(m["Subject"]).split(":")[0]) for m in digests] == [
        (date(2026, 12, 18), "Resumen semanal de Redes Sociales, semana 51"),
        (date(2026, 12, 23), "Resumen semanal de Redes Sociales, semana 52"),
    ]


def test_run_once_with_now_sends_what_is_due(scenario: Scenario) -> None:
    code = open_request_at_stage_3(scenario, at(date(2026, 2, 12), 10))  # Thursday before Carnival
    script = Path(sys.executable).parent / "mailflow"

    config = str(scenario.site.config_path)

    def once(now: str) -> None:
        done = subprocess.run(
            [str(script), "--config", config, "--now", now, "run", "--once"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    # Due Friday 13 at 16:30; Carnival Monday 16 and Tuesday 17: the first reminder is Wednesday.
    for now in ("2026-02-14T09:30", "2026-02-16T09:30", "2026-02-17T10:00", "2026-02-18T09:30"):
        once(now)
    once("2026-02-18T11:00")
    reminders = mails(scenario, "jefe.ugs", REMINDER, 1)
    assert [sent_on(m) for m in reminders] == [date(2026, 2, 18)]
    assert code in str(reminders[0]["Subject"])
    # The digest of the Carnival week waits for its first business day, Wednesday 18.
    [digest] = mails(scenario, "directora", DIGEST, 1)
    assert sent_on(digest) == date(2026, 2, 18)
