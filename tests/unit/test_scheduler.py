"""Deadlines and time-driven work across Bolivian holidays, decided by the pure core.

Each test simulates a daemon making passes every few minutes over days (or being down for
days), claiming what :mod:`mailflow.core.deadlines` says is due exactly as the scheduler does:
the returned keys go into ``done``.
"""

from __future__ import annotations

import time as process_clock
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailflow.core.calendar import BusinessCalendar
from mailflow.core.deadlines import (
    Kind,
    Rules,
    Watch,
    Window,
    Work,
    digest_key,
    digest_slot,
    effective_due,
    plan_digest,
    plan_gap_report,
    plan_reminders,
    plan_window_ends,
    superiors_of,
    weekday_number,
)
from mailflow.core.people import Directory, Role, Substitute, Unit

TZ = ZoneInfo("America/La_Paz")
CAL = BusinessCalendar()
RULES = Rules()  # reminders 09:00, escalate after 2, digest Monday 08:00
EPOCH = datetime(2020, 1, 1, tzinfo=TZ)
CODE = "RRSS-2026-0001"


def at(day: date, hour: int = 9, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=TZ)


def passes(start: datetime, end: datetime, every: timedelta) -> Iterator[datetime]:
    moment = start
    while moment < end:
        yield moment
        moment += every


def watch_from(done: set[str], due: datetime, **extra: object) -> Watch:
    """Describe the watched stage with what ``done`` says this visit already got."""
    sent = sum(1 for k in done if k.startswith(f"reminder:{CODE}:3:"))
    escalated = any(k.startswith(f"escalation:{CODE}:3:") for k in done)
    return Watch(1, CODE, 3, due, reminders_sent=sent, escalated=escalated, **extra)  # type: ignore[arg-type]


def run_reminders(
    due: datetime,
    moments: Iterator[datetime],
    *,
    rules: Rules = RULES,
    daemons: int = 1,
    **extra: object,
) -> list[Work]:
    """Make every pass (by every daemon) and return the work done, claimed once per key."""
    done: set[str] = set()
    out = []
    for now in moments:
        for _ in range(daemons):
            watches = [watch_from(done, due, **extra)]
            for work in plan_reminders(watches, CAL, rules, now, epoch=EPOCH, done=done):
                if work.key in done:  # the claim of another daemon won
                    continue
                done.update(key for key, _ in work.claims)
                out.append(work)
    return out


# -- due dates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("received", "days", "due"),
    [
        # Christmas week 2026: Friday 25 is a holiday.
        (at(date(2026, 12, 23), 10), 1, at(date(2026, 12, 24), 16, 30)),
        (at(date(2026, 12, 24), 10), 1, at(date(2026, 12, 28), 16, 30)),
        (at(date(2026, 12, 24), 17), 1, at(date(2026, 12, 29), 16, 30)),  # after the cut-off
        (at(date(2026, 12, 31), 10), 1, at(date(2027, 1, 4), 16, 30)),  # New Year's Day
        # Carnival 2026: Monday 16 and Tuesday 17 of February.
        (at(date(2026, 2, 13), 10), 1, at(date(2026, 2, 18), 16, 30)),
        (at(date(2026, 2, 16), 10), 1, at(date(2026, 2, 19), 16, 30)),
        # Aymara New Year 2026: Sunday 21 June, observed on Monday 22.
        (at(date(2026, 6, 19), 10), 1, at(date(2026, 6, 23), 16, 30)),
        (at(date(2026, 6, 19), 10), 5, at(date(2026, 6, 29), 16, 30)),  # a cronograma default
    ],
)
def test_due_dates_skip_weekends_and_bolivian_holidays(
    received: datetime, days: int, due: datetime
) -> None:
    assert CAL.due_after(received, days) == due


def test_a_publishing_stage_is_not_due_before_publicar_desde() -> None:
    due = at(date(2026, 12, 2), 16, 30)
    watch = Watch(1, CODE, 9, due, publish_from=date(2026, 12, 10), publishes=True)
    assert effective_due(watch, CAL) == at(date(2026, 12, 10), 16, 30)
    other = Watch(1, CODE, 8, due, publish_from=date(2026, 12, 10), publishes=False)
    assert effective_due(other, CAL) == due
    work = run_reminders(
        due,
        passes(at(date(2026, 12, 3), 8), at(date(2026, 12, 12)), timedelta(hours=1)),
        publish_from=date(2026, 12, 10),
        publishes=True,
    )
    assert [w.day for w in work] == [date(2026, 12, 11)]


# -- reminders and escalation ----------------------------------------------------------------


def test_christmas_week_one_reminder_per_overdue_business_day_then_escalation() -> None:
    due = at(date(2026, 12, 24), 16, 30)  # stage entered Wednesday 23, one business day
    moments = passes(at(date(2026, 12, 23), 10), at(date(2027, 1, 6)), timedelta(minutes=20))
    work = run_reminders(due, moments, daemons=3)
    days = [w.day for w in work]
    assert days == [
        date(2026, 12, 28),  # Friday 25 (Christmas) and the weekend are skipped
        date(2026, 12, 29),
        date(2026, 12, 30),
        date(2026, 12, 31),
        date(2027, 1, 4),  # Friday 1 (New Year's Day) and the weekend are skipped
        date(2027, 1, 5),
    ]
    assert [w.kind for w in work] == [
        Kind.REMINDER,
        Kind.REMINDER,
        Kind.ESCALATION,  # after 2 reminders, once
        Kind.REMINDER,
        Kind.REMINDER,
        Kind.REMINDER,
    ]
    assert [w.number for w in work] == [1, 2, 3, 4, 5, 6]
    assert work[0].key == "reminder:RRSS-2026-0001:3:2026-12-28"
    assert work[2].claims[1] == ("escalation:RRSS-2026-0001:3:2026-12-30", Kind.ESCALATION)


def test_reminders_wait_for_the_configured_hour() -> None:
    due = at(date(2026, 12, 24), 16, 30)
    rules = Rules(reminder_time=time(11, 15))
    early = run_reminders(
        due,
        passes(at(date(2026, 12, 28), 0), at(date(2026, 12, 28), 11, 15), timedelta(minutes=5)),
        rules=rules,
    )
    assert early == []
    work = run_reminders(
        due,
        passes(at(date(2026, 12, 28), 0), at(date(2026, 12, 28), 23), timedelta(minutes=5)),
        rules=rules,
    )
    assert len(work) == 1


def test_carnival_and_aymara_new_year_get_no_reminders() -> None:
    for due, holidays_ in (
        (at(date(2026, 2, 12), 16, 30), (date(2026, 2, 16), date(2026, 2, 17))),
        (at(date(2026, 6, 18), 16, 30), (date(2026, 6, 22),)),
    ):
        start = due + timedelta(hours=1)
        work = run_reminders(due, passes(start, start + timedelta(days=8), timedelta(minutes=30)))
        days = [w.day for w in work]
        assert not set(days) & set(holidays_)
        assert all(CAL.is_business_day(d) for d in days)
        assert len(days) == len(set(days))


def test_downtime_is_caught_up_with_one_reminder_not_one_per_missed_day() -> None:
    due = at(date(2026, 12, 24), 16, 30)
    before = list(passes(at(date(2026, 12, 28), 8), at(date(2026, 12, 28), 10), timedelta(hours=1)))
    # Down from Monday 10:00 until Thursday 14:00, then passes again.
    after = list(passes(at(date(2026, 12, 31), 14), at(date(2026, 12, 31), 18), timedelta(hours=1)))
    work = run_reminders(due, iter(before + after))
    assert [(w.day, w.kind, w.number) for w in work] == [
        (date(2026, 12, 28), Kind.REMINDER, 1),
        (date(2026, 12, 31), Kind.REMINDER, 2),  # one, although three days were missed
    ]


def test_nothing_is_due_before_the_epoch() -> None:
    due = at(date(2026, 12, 24), 16, 30)
    now = at(date(2026, 12, 28), 10)
    watches = [Watch(1, CODE, 3, due)]
    assert plan_reminders(watches, CAL, RULES, now, epoch=now - timedelta(minutes=30)) == []
    assert plan_reminders(watches, CAL, RULES, now, epoch=at(date(2026, 12, 28), 8))


def test_a_stage_without_deadline_is_never_reminded() -> None:
    watch = Watch(1, CODE, 1, None)
    assert plan_reminders([watch], CAL, RULES, at(date(2026, 12, 28), 10), epoch=EPOCH) == []


# -- digest ----------------------------------------------------------------------------------


def run_digests(moments: Iterator[datetime], rules: Rules = RULES) -> list[Work]:
    done: set[str] = set()
    out = []
    for now in moments:
        work = plan_digest(CAL, rules, now, epoch=EPOCH, done=done)
        if work is not None:
            done.add(work.key)
            out.append(work)
    return out


def test_one_digest_per_week_whatever_the_passes() -> None:
    work = run_digests(
        passes(at(date(2026, 11, 30), 0), at(date(2027, 1, 11), 0), timedelta(minutes=15))
    )
    assert [w.key for w in work] == [
        "digest:2026-W49",
        "digest:2026-W50",
        "digest:2026-W51",
        "digest:2026-W52",
        "digest:2026-W53",
        "digest:2027-W01",
    ]
    assert all(w.day.weekday() == 0 for w in work)


@pytest.mark.parametrize(
    ("day", "slot"),
    [
        (date(2026, 2, 18), at(date(2026, 2, 18), 8)),  # Carnival Monday and Tuesday
        (date(2026, 6, 24), at(date(2026, 6, 23), 8)),  # Aymara New Year observed Monday
        (date(2026, 12, 23), at(date(2026, 12, 21), 8)),  # Christmas week: Monday works
    ],
)
def test_the_digest_moves_to_the_next_business_day_of_its_week(day: date, slot: datetime) -> None:
    assert digest_slot(CAL, day, RULES) == slot


def test_a_missed_digest_is_sent_once_later_in_the_week_but_not_the_next_week() -> None:
    # Down all Monday; back on Wednesday: this week's digest goes out once.
    work = run_digests(passes(at(date(2026, 12, 2), 10), at(date(2026, 12, 5)), timedelta(hours=1)))
    assert [(w.key, w.day) for w in work] == [("digest:2026-W49", date(2026, 11, 30))]
    # Down for the whole of week 50: nothing for it when back on Monday of week 51 at 07:00.
    assert plan_digest(CAL, RULES, at(date(2026, 12, 14), 7), epoch=EPOCH) is None


def test_digest_weekday_and_time_come_from_the_config() -> None:
    rules = Rules(digest_weekday=weekday_number("friday"), digest_time=time(15, 0))
    assert plan_digest(CAL, rules, at(date(2026, 12, 4), 14, 59), epoch=EPOCH) is None
    work = plan_digest(CAL, rules, at(date(2026, 12, 4), 15), epoch=EPOCH)
    assert work is not None and work.key == digest_key(date(2026, 12, 4))
    # Christmas Friday: no business day is left in the week, so Friday it stays.
    assert digest_slot(CAL, date(2026, 12, 25), rules) == at(date(2026, 12, 25), 15)


def test_the_digest_slot_is_la_paz_time_whatever_the_server_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server runs in Tokyo and its clock reads UTC: Monday 08:00 is still La Paz's
    # (12:00 UTC). A restart on Tuesday finds Monday's claim and sends nothing again; a
    # daemon that was down all Monday sends it once on Tuesday.
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    process_clock.tzset()
    try:
        utc = ZoneInfo("UTC")
        monday = date(2026, 11, 30)
        before = datetime.combine(monday, time(11, 59), tzinfo=utc)
        slot = datetime.combine(monday, time(12, 0), tzinfo=utc)
        assert plan_digest(CAL, RULES, before, epoch=EPOCH) is None
        work = plan_digest(CAL, RULES, slot, epoch=EPOCH)
        assert work is not None and work.key == "digest:2026-W49"
        tuesday = datetime.combine(date(2026, 12, 1), time(14, 0), tzinfo=utc)
        assert plan_digest(CAL, RULES, tuesday, epoch=EPOCH, done={work.key}) is None
        late = plan_digest(CAL, RULES, tuesday, epoch=EPOCH)
        assert late is not None and (late.key, late.day) == (work.key, monday)
    finally:
        monkeypatch.undo()
        process_clock.tzset()


# -- publication windows ---------------------------------------------------------------------


def test_window_end_notice_once_on_the_first_business_day_after_publicar_hasta() -> None:
    windows = [Window(7, "RRSS-2026-0007", date(2026, 12, 24))]
    done: set[str] = set()
    out = []
    for now in passes(at(date(2026, 12, 24)), at(date(2027, 1, 2)), timedelta(minutes=30)):
        for work in plan_window_ends(windows, CAL, RULES, now, epoch=EPOCH, done=done):
            done.add(work.key)
            out.append(work)
    assert [(w.key, w.day) for w in out] == [("window_end:RRSS-2026-0007", date(2026, 12, 28))]


def test_vanished_mail_is_reported_once_a_business_day_while_some_wait() -> None:
    # Three gaps noticed on Thursday 24 December 2026 at 10:00 (after the reminder time):
    # reported at once. One more noticed on Saturday: reported on Monday at the reminder
    # time, not on Christmas Friday nor on the weekend. Never twice a day.
    done: set[str] = set()
    reported = []
    waiting = 3
    for now in passes(at(date(2026, 12, 24), 10), at(date(2026, 12, 30)), timedelta(minutes=20)):
        if now == at(date(2026, 12, 26), 11):
            waiting = 1
        work = plan_gap_report(CAL, RULES, now, epoch=EPOCH, waiting=waiting, done=done)
        if work is not None:
            done.add(work.key)
            reported.append((work.key, now))
            waiting = 0
    assert reported == [
        ("gap_report:2026-12-24", at(date(2026, 12, 24), 10, 0)),
        ("gap_report:2026-12-28", at(date(2026, 12, 28), 9, 0)),
    ]
    again = plan_gap_report(
        CAL, RULES, at(date(2026, 12, 28), 15), epoch=EPOCH, waiting=2, done=done
    )
    assert again is None  # the day's report went out; the next business day's takes these
    assert all(key.startswith(f"{Kind.GAP_REPORT}:") for key, _ in reported)


# -- who is told -----------------------------------------------------------------------------

DE, UGS, PRO, SUP, JEFE, ANA = "de@x.bo", "ugs@x.bo", "pro@x.bo", "sup@x.bo", "jefe@x.bo", "a@x.bo"


class Parties:
    requester = ANA
    unit: str | None = "uti"


def directory(**roles: Role) -> Directory:
    base = {
        "direccion_ejecutiva": Role("direccion_ejecutiva", members=(DE,)),
        "jefatura_ugs": Role("jefatura_ugs", members=(UGS,), superior="direccion_ejecutiva"),
        "profesional_promocion": Role(
            "profesional_promocion", members=(PRO,), superior="jefatura_ugs"
        ),
    }
    units = {"uti": Unit("uti", head=JEFE, members=(ANA,))}
    return Directory(roles={**base, **roles}, units=units)


@pytest.mark.parametrize(
    ("roles", "directory_", "expected"),
    [
        (("profesional_promocion",), directory(), (UGS,)),
        (("jefatura_ugs",), directory(), (DE,)),
        (("direccion_ejecutiva",), directory(), ()),  # nobody above
        # The Jefatura UGS is on leave: its substitute is the professional's superior.
        (
            ("profesional_promocion",),
            directory(
                jefatura_ugs=Role(
                    "jefatura_ugs",
                    members=(UGS,),
                    substitutes=(Substitute(SUP, date(2026, 12, 1), date(2026, 12, 31), UGS),),
                    superior="direccion_ejecutiva",
                )
            ),
            (SUP,),
        ),
        # A vacant Jefatura falls to the Dirección, which is the one told.
        (
            ("profesional_promocion",),
            directory(jefatura_ugs=Role("jefatura_ugs", superior="direccion_ejecutiva")),
            (DE,),
        ),
        (("solicitante",), directory(), (JEFE,)),
        (("jefatura_solicitante",), directory(), (DE,)),
    ],
)
def test_superiors_follow_the_engine_rules(
    roles: tuple[str, ...], directory_: Directory, expected: tuple[str, ...]
) -> None:
    today = date(2026, 12, 10)
    assert superiors_of(directory_, roles, Parties(), today) == expected


def test_a_vacant_role_is_escalated_past_the_superior_acting_for_it() -> None:
    vacant = directory(profesional_promocion=Role("profesional_promocion", superior="jefatura_ugs"))
    # The Jefatura acts for the vacant role (assignee); its own superior is told.
    assert superiors_of(
        vacant, ("profesional_promocion",), Parties(), date(2026, 12, 10), exclude=(UGS,)
    ) == (DE,)


def test_two_daemons_passing_every_few_minutes_notify_each_day_once() -> None:
    due = at(date(2026, 12, 24), 16, 30)
    work = run_reminders(
        due, passes(at(date(2026, 12, 24)), at(date(2027, 1, 9)), timedelta(minutes=7)), daemons=2
    )
    assert set(Counter(w.day for w in work).values()) == {1}
