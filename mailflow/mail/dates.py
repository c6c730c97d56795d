"""Read dates as people in Bolivia write them in Spanish: day first, months by name.

Accepted: ``01/12/2026``, ``1/12/26``, ``1.12.2026``, ``2026-12-01``, ``1 de diciembre de
2026``, ``1 diciembre 2026``, ``1ro de dic. del 2026``, ``10-dic-2026`` (Outlook and
spreadsheets), ``20 de dic.``, ``diciembre 20`` and ``dic. 20, 2026`` (month first),
``lunes 1 de diciembre`` (the year of a date written without one comes from the ``today``
the caller passes in; the core never reads the clock).
Input is folded (case, accents) and cut to 300 characters before any regex runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, timedelta

from mailflow.mail.replytext import fold

# fmt: off
_MONTHS = {
    "enero": 1, "ene": 1, "febrero": 2, "feb": 2, "marzo": 3, "mar": 3, "abril": 4, "abr": 4,
    "mayo": 5, "may": 5, "junio": 6, "jun": 6, "julio": 7, "jul": 7, "agosto": 8, "ago": 8,
    "septiembre": 9, "setiembre": 9, "sep": 9, "sept": 9, "set": 9, "octubre": 10, "oct": 10,
    "noviembre": 11, "nov": 11, "diciembre": 12, "dic": 12,
}
# fmt: on
_WEEKDAYS = ("lunes", "martes", "miercoles", "jueves", "viernes", "sabado", "domingo")
_ISO = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_NUMERIC = re.compile(r"\b(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})\b")
_WORDY = re.compile(
    r"\b(\d{1,2})(?:o|ro|er|º|°)?\s+(?:de\s+)?([a-z]{3,10})\.?(?:,?\s+(?:de\s+|del\s+)?(\d{4}))?\b"
)
# "10-dic-2026", "10/dic/26", "20-dic": the month's name between the day and the year.
_DASHED = re.compile(r"\b(\d{1,2})[-/.]([a-z]{3,10})\.?(?:[-/.](\d{4}|\d{2}))?\b")
# "diciembre 20", "dic. 20, 2026": the month first, as some people and phones write it.
_MONTH_FIRST = re.compile(r"\b([a-z]{3,10})\.?\s+(\d{1,2})\b(?:,?\s+(?:de\s+|del\s+)?(\d{4}))?")


def parse_date(text: str, today: date | None = None) -> date | None:
    """Read the first Spanish date in ``text``; a date without year takes ``today``'s year."""
    found = find_date(text, today)
    return found[0] if found else None


def find_date(text: str, today: date | None = None) -> tuple[date, str] | None:
    """Return the first date in ``text`` and the folded text around it (the date removed)."""
    folded = fold(text[:300])
    for pattern in (_ISO, _NUMERIC, _DASHED, _WORDY, _MONTH_FIRST):
        for match in pattern.finditer(folded):
            when = _to_date(pattern, match.groups(), today)
            if when is not None:
                rest = f"{folded[: match.start()]} {folded[match.end() :]}"
                return when, " ".join(rest.split())
    return None


def _to_date(
    pattern: re.Pattern[str], groups: Sequence[str | None], today: date | None
) -> date | None:
    """Build a date from one regex match, or None when it names no real day."""
    if pattern is _ISO:
        year, month, day = (int(g or 0) for g in groups)
    elif pattern is _NUMERIC:
        day, month, year = (int(g or 0) for g in groups)
        year += 2000 if year < 100 else 0
    else:
        day_text, month_text = (groups[1], groups[0]) if pattern is _MONTH_FIRST else groups[:2]
        month = _MONTHS.get(month_text or "", 0)
        day = int(day_text or 0)
        year = int(groups[2]) if groups[2] else (today.year if today else 0)
        year += 2000 if 0 < year < 100 else 0
    try:
        return date(year, month, day)
    except ValueError:
        return None


def weekday_mismatch(text: str, when: date) -> str:
    """Return a Spanish complaint when ``text`` names a weekday that ``when`` is not."""
    words = set(fold(text[:300]).replace(",", " ").split())
    named = [d for d in _WEEKDAYS if d in words]
    actual = _WEEKDAYS[when.weekday()]
    if named and actual not in named:
        return f"el {when:%d/%m/%Y} es {_WEEKDAY_NAMES[when.weekday()]}, no {named[0]}."
    return ""


_WEEKDAY_NAMES = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")
_PERIOD_SPLIT = re.compile(r"\s+(?:al|hasta(?:\s+el)?|a)\s+|\s+[-–]\s+")


def parse_period(text: str, today: date) -> tuple[date | None, date | None]:
    """Read ``del 1 al 15 de diciembre de 2026`` (or two full dates) as (desde, hasta)."""
    folded = fold(text[:300])
    parts = _PERIOD_SPLIT.split(folded, maxsplit=1)
    if len(parts) != 2:
        return None, None
    hasta = parse_date(parts[1], today)
    desde = parse_date(parts[0], today)
    day = re.search(r"\b(\d{1,2})\b", parts[0])
    if desde is None and hasta is not None and day is not None:
        try:
            desde = hasta.replace(day=int(day.group(1)))
        except ValueError:
            desde = None
        if desde is not None and desde > hasta:
            desde = (desde.replace(day=1) - timedelta(days=1)).replace(day=desde.day)
    return desde, hasta
