"""Business days and due dates across real Bolivian holidays, weekends and the cut-off."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from mailflow.core.calendar import BusinessCalendar

LA_PAZ = ZoneInfo("America/La_Paz")
CAL = BusinessCalendar()


def at(text: str) -> datetime:
    """Return a La Paz local datetime from an ISO string without offset."""
    return datetime.fromisoformat(text).replace(tzinfo=LA_PAZ)


@pytest.mark.parametrize(
    ("received", "days", "due"),
    [
        # Carnival 2026: Monday 16 and Tuesday 17 February.
        ("2026-02-13T10:00", 1, "2026-02-18T16:30"),
        ("2026-02-13T10:00", 2, "2026-02-19T16:30"),
        # Good Friday 2026: 3 April.
        ("2026-04-02T10:00", 1, "2026-04-06T16:30"),
        # Corpus Christi 2026: Thursday 4 June.
        ("2026-06-03T10:00", 1, "2026-06-05T16:30"),
        # Aymara New Year 2026 falls on Sunday 21 June; Monday 22 is the observed holiday.
        ("2026-06-19T10:00", 1, "2026-06-23T16:30"),
        # Aymara New Year 2027 on Monday 21 June itself.
        ("2027-06-18T10:00", 1, "2027-06-22T16:30"),
        # Independence Day, Thursday 6 August 2026.
        ("2026-08-05T10:00", 1, "2026-08-07T16:30"),
        # Christmas, Friday 25 December 2026, then a weekend: docs/design.md's example due date.
        ("2026-12-24T10:00", 1, "2026-12-28T16:30"),
        # Plain weekend.
        ("2026-03-06T09:00", 1, "2026-03-09T16:30"),
        ("2026-03-06T09:00", 0, "2026-03-06T16:30"),
        ("2026-03-02T09:00", 5, "2026-03-09T16:30"),
    ],
)
def test_due_after_skips_holidays_and_weekends(received: str, days: int, due: str) -> None:
    assert CAL.due_after(at(received), days) == at(due)


@pytest.mark.parametrize(
    ("received", "counts_from"),
    [
        ("2026-12-24T07:00", date(2026, 12, 24)),  # before office hours: that day
        ("2026-12-24T16:29", date(2026, 12, 24)),
        ("2026-12-24T16:30", date(2026, 12, 28)),  # at the cut-off: next business day
        ("2026-12-24T23:59", date(2026, 12, 28)),
        ("2026-03-07T10:00", date(2026, 3, 9)),  # Saturday
        ("2026-02-16T10:00", date(2026, 2, 18)),  # Carnival Monday
        ("2026-06-22T10:00", date(2026, 6, 23)),  # Aymara New Year, observed Monday
    ],
)
def test_received_on_applies_cut_off(received: str, counts_from: date) -> None:
    assert CAL.received_on(at(received)) == counts_from


def test_after_cut_off_counts_from_next_business_day() -> None:
    assert CAL.due_after(at("2026-12-24T17:00"), 1) == at("2026-12-29T16:30")


def test_utc_input_is_judged_in_local_time() -> None:
    # 20:00 UTC is 16:00 in La Paz (UTC-4): still office hours.
    assert CAL.received_on(datetime(2026, 12, 24, 20, 0, tzinfo=UTC)) == date(2026, 12, 24)
    assert CAL.received_on(datetime(2026, 12, 24, 21, 0, tzinfo=UTC)) == date(2026, 12, 28)
    due = CAL.due_after(datetime(2026, 12, 24, 14, 0, tzinfo=UTC), 1)
    assert due.isoformat() == "2026-12-28T16:30:00-04:00"


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 2, 16),
        date(2026, 2, 17),
        date(2026, 4, 3),
        date(2026, 6, 4),
        date(2026, 6, 22),
        date(2026, 8, 6),
        date(2026, 12, 25),
        date(2026, 3, 7),
        date(2026, 3, 8),
    ],
)
def test_non_business_days(day: date) -> None:
    assert not CAL.is_business_day(day)


def test_extra_holidays_from_config() -> None:
    # 16 July, La Paz departmental day: not national, so only with the extra date.
    la_paz_day = date(2026, 7, 16)
    regional = BusinessCalendar(extra_holidays=(la_paz_day,))
    assert CAL.is_business_day(la_paz_day)
    assert not regional.is_business_day(la_paz_day)
    assert regional.due_after(at("2026-07-15T10:00"), 1) == at("2026-07-17T16:30")
    assert CAL.due_after(at("2026-07-15T10:00"), 1) == at("2026-07-16T16:30")
    assert la_paz_day in regional.holidays_in(2026)


def test_office_hours_from_config() -> None:
    cal = BusinessCalendar(office_start=time(8, 0), office_end=time(18, 0))
    assert cal.received_on(at("2026-03-02T17:00")) == date(2026, 3, 2)
    assert cal.due_after(at("2026-03-02T17:00"), 1) == at("2026-03-03T18:00")


def test_business_days_between() -> None:
    assert CAL.business_days_between(date(2026, 12, 24), date(2026, 12, 29)) == 2
    assert CAL.business_days_between(date(2026, 12, 29), date(2026, 12, 24)) == -2
    assert CAL.business_days_between(date(2026, 2, 13), date(2026, 2, 18)) == 1


def test_next_business_day_and_add() -> None:
    assert CAL.next_business_day(date(2026, 12, 24)) == date(2026, 12, 28)
    assert CAL.add_business_days(date(2026, 12, 24), 0) == date(2026, 12, 24)
    with pytest.raises(ValueError, match="business days"):
        CAL.add_business_days(date(2026, 12, 24), -1)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        CAL.due_after(datetime(2026, 12, 24, 10, 0), 1)


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="office hours"):
        BusinessCalendar(office_start=time(17, 0), office_end=time(8, 0))
    with pytest.raises(KeyError):
        BusinessCalendar(timezone="Mars/Olympus_Mons")


def test_holidays_in_lists_national_days() -> None:
    days = list(CAL.holidays_in(2026))
    assert date(2026, 6, 22) in days
    assert days == sorted(days)
