"""Compute business days and due dates in the institution's time zone.

"1 día" in the manual means one business day: weekends, national holidays (the ``holidays``
package) and the institution's extra dates do not count, and a mail that arrives after
office hours counts from the next business day. A due date is the end of office hours of the
last business day, in local time.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

# Saturday and Sunday, as date.weekday() numbers them.
_WEEKEND = frozenset({5, 6})


@functools.lru_cache(maxsize=64)
def _national_holidays(country: str, year: int) -> frozenset[date]:
    """Return one country's holidays (observed days included) for one year, memoized."""
    return frozenset(holidays.country_holidays(country, years=year))


@dataclass(frozen=True)
class BusinessCalendar:
    """Answer business-day questions for one institution; every input is an argument."""

    timezone: str = "America/La_Paz"
    country: str = "BO"
    extra_holidays: tuple[date, ...] = ()
    office_start: time = time(8, 30)
    office_end: time = time(16, 30)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Check the office hours and resolve the time zone once (fails on unknown names)."""
        if self.office_start >= self.office_end:
            raise ValueError(
                f"office hours start {self.office_start} is not before end {self.office_end}"
            )
        object.__setattr__(self, "_zone", ZoneInfo(self.timezone))
        object.__setattr__(self, "extra_holidays", tuple(sorted(set(self.extra_holidays))))

    @property
    def zone(self) -> ZoneInfo:
        """Return the institution's time zone."""
        return self._zone

    def local(self, moment: datetime) -> datetime:
        """Convert an aware datetime to local time; naive ones are a programming error."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"naive datetime {moment.isoformat()}: pass an aware one")
        return moment.astimezone(self._zone)

    def is_holiday(self, day: date) -> bool:
        """Tell whether ``day`` is a national or configured holiday."""
        return day in self.extra_holidays or day in _national_holidays(self.country, day.year)

    def is_business_day(self, day: date) -> bool:
        """Tell whether ``day`` is a working day (no weekend, no holiday)."""
        return day.weekday() not in _WEEKEND and not self.is_holiday(day)

    def next_business_day(self, day: date) -> date:
        """Return the first business day strictly after ``day``."""
        day += timedelta(days=1)
        while not self.is_business_day(day):
            day += timedelta(days=1)
        return day

    def add_business_days(self, day: date, count: int) -> date:
        """Return the business day ``count`` business days after ``day`` (``day`` if 0)."""
        if count < 0:
            raise ValueError(f"cannot count {count} business days")
        for _ in range(count):
            day = self.next_business_day(day)
        return day

    def received_on(self, moment: datetime) -> date:
        """Return the business day a mail received at ``moment`` counts from.

        A mail before office hours on a business day counts that day; after the cut-off,
        or on a weekend or holiday, it counts from the next business day.
        """
        local = self.local(moment)
        day = local.date()
        if self.is_business_day(day) and local.time() < self.office_end:
            return day
        return self.next_business_day(day)

    def end_of_day(self, day: date) -> datetime:
        """Return the end of office hours of ``day`` as an aware local datetime."""
        return datetime.combine(day, self.office_end, tzinfo=self._zone)

    def due_after(self, moment: datetime, business_days: int) -> datetime:
        """Return when something received at ``moment`` with ``business_days`` to act is due."""
        start = self.received_on(moment)
        return self.end_of_day(self.add_business_days(start, business_days))

    def business_days_between(self, start: date, end: date) -> int:
        """Count business days in the half-open range (start, end]; negative if reversed."""
        if end < start:
            return -self.business_days_between(end, start)
        days = (start + timedelta(days=n) for n in range(1, (end - start).days + 1))
        return sum(1 for day in days if self.is_business_day(day))

    def holidays_in(self, year: int) -> Iterable[date]:
        """Return the year's non-working holidays, national and extra, sorted."""
        extra = {d for d in self.extra_holidays if d.year == year}
        return sorted(_national_holidays(self.country, year) | extra)
