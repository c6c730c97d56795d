"""Decide which time-driven work is due at ``now``: reminders, escalations, digests, window ends.

Pure functions over plain values (the clock, what was already claimed and the calendar are
arguments); :mod:`mailflow.jobs.scheduler` carries the results out. Each piece of work has an
idempotency key; the scheduler claims it in the same transaction as the mails it queues,
so whatever the number of passes or daemons, each key is done exactly once.

The rules, and why:

* **Reminders** go out on business days at ``reminder_time`` (local), one per overdue stage
  per day: the key is ``reminder:<code>:<stage>:<day>``. Only *today* is ever considered,
  so after downtime the daemon sends one reminder, not one per missed day.
* **Escalation**: once a stage visit has had ``reminders_before_escalation`` reminders and is
  still overdue, the next day's notice goes to the roles' superiors (with a copy to the
  assignees, which stands for that day's reminder), once per visit.
* **Digest**: key ``digest:<ISO year>-W<week>``, due once ``now`` passes the week's slot
  (``digest_weekday`` at ``digest_time``; moved to the next business day of the same week
  when that day is a holiday, so a Carnival Monday does not bury it). A missed slot is
  caught up later in the same week, once; a week that is over is not.
* **Window end**: key ``window_end:<code>``, at the reminder time of the first business day
  after ``Publicar hasta``: the administrator withdraws or archives the post in office.
* **Publicar desde**: a publishing stage is not overdue before the end of that day.
* **Gap report**: key ``gap_report:<day>``, at the reminder time of business days when
  some UIDs vanished from the mailbox before mailflow fetched them and no report told of
  them yet: the administrator hears of mail nobody processed once a day, not per pass.
* **Epoch**: the first pass ever records when the scheduler started; slots before it were
  never missed (mailflow was not running them), so a fresh install does not send last
  Monday's digest on its first Wednesday.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from mailflow.core.calendar import BusinessCalendar
from mailflow.core.people import (
    JEFATURA_SOLICITANTE,
    SOLICITANTE,
    Directory,
    RequestParties,
    assignees,
)

# The request-dependent roles have no [roles] section to name a superior: the requester
# answers to the head of their unit, who answers to the executive direction.
_DYNAMIC_SUPERIORS = {
    SOLICITANTE: JEFATURA_SOLICITANTE,
    JEFATURA_SOLICITANTE: "direccion_ejecutiva",
}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class Kind(StrEnum):
    """Name each kind of time-driven work; the values are stored in ``reminders.kind``."""

    REMINDER = "reminder"
    ESCALATION = "escalation"
    DIGEST = "digest"
    WINDOW_END = "window_end"
    GAP_REPORT = "gap_report"


@dataclass(frozen=True)
class Rules:
    """Hold the ``[schedule]`` settings the decisions depend on."""

    reminder_time: time = time(9, 0)
    reminders_before_escalation: int = 2
    digest_weekday: int = 0  # date.weekday(): Monday is 0
    digest_time: time = time(8, 0)


@dataclass(frozen=True)
class Watch:
    """Describe one open stage: its due date and what was already done on this visit."""

    request_id: int
    code: str
    stage: int
    due: datetime | None
    publish_from: date | None = None
    publishes: bool = False  # the stage is the one that publishes (accepts PUBLICADO)
    reminders_sent: int = 0  # overdue days already notified on this visit
    escalated: bool = False


@dataclass(frozen=True)
class Window:
    """Describe a published request whose publication period ends on ``until``."""

    request_id: int
    code: str
    until: date


@dataclass(frozen=True)
class Work:
    """One piece of due work; ``claims`` are (key, kind) pairs, the first one decides."""

    kind: Kind
    claims: tuple[tuple[str, Kind], ...]
    day: date
    request_id: int | None = None
    code: str | None = None
    stage: int | None = None
    number: int = 0  # for reminders and escalations: the how-many-th overdue day notice

    @property
    def key(self) -> str:
        """Return the key that makes this work happen at most once."""
        return self.claims[0][0]


def reminder_key(code: str, stage: int, day: date) -> str:
    """Return the key of the reminder of one stage on one day."""
    return f"{Kind.REMINDER}:{code}:{stage}:{day.isoformat()}"


def escalation_key(code: str, stage: int, day: date) -> str:
    """Return the key of an escalation of one stage, made on ``day``."""
    return f"{Kind.ESCALATION}:{code}:{stage}:{day.isoformat()}"


def digest_key(day: date) -> str:
    """Return the key of the digest of the ISO week of ``day``, e.g. ``digest:2026-W49``."""
    year, week, _ = day.isocalendar()
    return f"{Kind.DIGEST}:{year}-W{week:02d}"


def window_end_key(code: str) -> str:
    """Return the key of the end-of-window notice of one request."""
    return f"{Kind.WINDOW_END}:{code}"


def gap_report_key(day: date) -> str:
    """Return the key of the report of vanished mail made on ``day``."""
    return f"{Kind.GAP_REPORT}:{day.isoformat()}"


def weekday_number(name: str) -> int:
    """Return ``date.weekday()``'s number of an English weekday name (``"monday"`` is 0)."""
    return WEEKDAYS.index(name.lower())


def week_of(day: date) -> tuple[date, date]:
    """Return the Monday and the Sunday of the ISO week of ``day``."""
    monday = day - timedelta(days=day.weekday())
    return monday, monday + timedelta(days=6)


def reminder_slot(calendar: BusinessCalendar, day: date, rules: Rules) -> datetime:
    """Return the moment the reminders of ``day`` are due, in local time."""
    return datetime.combine(day, rules.reminder_time, tzinfo=calendar.zone)


def digest_slot(calendar: BusinessCalendar, day: date, rules: Rules) -> datetime:
    """Return when the digest of the week of ``day`` is due, in local time.

    The configured weekday, or the next business day of the same week when it is a
    holiday; the configured weekday itself when no business day is left in the week.
    """
    monday, sunday = week_of(day)
    chosen = monday + timedelta(days=rules.digest_weekday)
    candidate = chosen
    while candidate <= sunday and not calendar.is_business_day(candidate):
        candidate += timedelta(days=1)
    if candidate <= sunday:
        chosen = candidate
    return datetime.combine(chosen, rules.digest_time, tzinfo=calendar.zone)


def effective_due(watch: Watch, calendar: BusinessCalendar) -> datetime | None:
    """Return when the stage is really due: never before ``Publicar desde`` when it publishes."""
    if watch.due is None:
        return None
    if watch.publishes and watch.publish_from is not None:
        return max(watch.due, calendar.end_of_day(watch.publish_from))
    return watch.due


def overdue_days(calendar: BusinessCalendar, due: datetime, day: date) -> int:
    """Count the business days after the due day up to ``day`` (0: not overdue by then)."""
    return max(calendar.business_days_between(calendar.local(due).date(), day), 0)


def _today_slot(
    calendar: BusinessCalendar, rules: Rules, now: datetime, epoch: datetime
) -> datetime | None:
    """Return today's reminder slot if it is a business day and the slot has come."""
    today = calendar.local(now).date()
    if not calendar.is_business_day(today):
        return None
    slot = reminder_slot(calendar, today, rules)
    if now < slot or slot < epoch:
        return None
    return slot


def plan_reminders(
    watches: Iterable[Watch],
    calendar: BusinessCalendar,
    rules: Rules,
    now: datetime,
    *,
    epoch: datetime,
    done: Set[str] = frozenset(),
) -> list[Work]:
    """Return today's reminder or escalation for each stage overdue at today's slot."""
    slot = _today_slot(calendar, rules, now, epoch)
    if slot is None:
        return []
    today = slot.date()
    work = []
    for watch in watches:
        due = effective_due(watch, calendar)
        key = reminder_key(watch.code, watch.stage, today)
        if due is None or slot <= due or key in done:
            continue
        claims: tuple[tuple[str, Kind], ...] = ((key, Kind.REMINDER),)
        kind = Kind.REMINDER
        if watch.reminders_sent >= rules.reminders_before_escalation and not watch.escalated:
            kind = Kind.ESCALATION
            claims += ((escalation_key(watch.code, watch.stage, today), Kind.ESCALATION),)
        work.append(
            Work(
                kind,
                claims,
                day=today,
                request_id=watch.request_id,
                code=watch.code,
                stage=watch.stage,
                number=watch.reminders_sent + 1,
            )
        )
    return work


def plan_digest(
    calendar: BusinessCalendar,
    rules: Rules,
    now: datetime,
    *,
    epoch: datetime,
    done: Set[str] = frozenset(),
) -> Work | None:
    """Return this week's digest if its slot has come and it was not sent yet."""
    today = calendar.local(now).date()
    slot = digest_slot(calendar, today, rules)
    key = digest_key(today)
    if now < slot or slot < epoch or key in done:
        return None
    return Work(Kind.DIGEST, ((key, Kind.DIGEST),), day=slot.date())


def plan_window_ends(
    windows: Iterable[Window],
    calendar: BusinessCalendar,
    rules: Rules,
    now: datetime,
    *,
    epoch: datetime,
    done: Set[str] = frozenset(),
) -> list[Work]:
    """Return one notice per published request whose ``Publicar hasta`` day has passed."""
    slot = _today_slot(calendar, rules, now, epoch)
    if slot is None:
        return []
    today = slot.date()
    return [
        Work(
            Kind.WINDOW_END,
            ((window_end_key(w.code), Kind.WINDOW_END),),
            day=today,
            request_id=w.request_id,
            code=w.code,
        )
        for w in windows
        if w.until < today and window_end_key(w.code) not in done
    ]


def plan_gap_report(
    calendar: BusinessCalendar,
    rules: Rules,
    now: datetime,
    *,
    epoch: datetime,
    waiting: int,
    done: Set[str] = frozenset(),
) -> Work | None:
    """Return today's report of vanished mail if ``waiting`` gaps were not reported yet."""
    slot = _today_slot(calendar, rules, now, epoch)
    if slot is None or waiting <= 0:
        return None
    key = gap_report_key(slot.date())
    if key in done:
        return None
    return Work(Kind.GAP_REPORT, ((key, Kind.GAP_REPORT),), day=slot.date())


def superiors_of(
    directory: Directory,
    roles: Iterable[str],
    request: RequestParties,
    on_date: date,
    *,
    exclude: Iterable[str] = (),
) -> tuple[str, ...]:
    """Return who is above ``roles`` on ``on_date``: each role's nearest superior with people.

    Walks up each chain of ``superior`` (substitutes and vacancies resolved as the engine
    does) past anybody in ``exclude`` (the assignees themselves: a vacant role already
    falls to its superior, who must not be told about their own delay).
    """
    skip = {a.strip().casefold() for a in exclude}
    found: dict[str, str] = {}
    for role_id in roles:
        seen = {role_id}
        current = _superior_role(directory, role_id)
        while current is not None and current not in seen:
            seen.add(current)
            people = [
                a
                for a in assignees(directory, current, request, on_date)
                if a.strip().casefold() not in skip
            ]
            if people:
                found.update((a.casefold(), a) for a in people)
                break
            current = _superior_role(directory, current)
    return tuple(found.values())


def _superior_role(directory: Directory, role_id: str) -> str | None:
    role = directory.roles.get(role_id)
    if role is not None and role.superior is not None:
        return role.superior
    return _DYNAMIC_SUPERIORS.get(role_id)
