"""Build the weekly digest's template context from plain snapshots of the store (pure).

What the heads read on Monday: how many requests are open and how many are late, a bar per
stage (open and overdue), the open requests with their age and due date (overdue first,
the most overdue on top), what was published last week with its links, the publication
windows that start or end this week, and per person what they have pending, overdue and
published.

The chart is an HTML table of coloured cells, not a PNG: Outlook (the institution's likely
client) renders cell widths and ``bgcolor`` faithfully, it needs no multipart/related
structure in :func:`mailflow.mail.render.compose`, and it is not hidden by clients that block
images by default. The text part prints the same bars with ``█``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from mailflow.core.calendar import BusinessCalendar
from mailflow.core.deadlines import overdue_days, week_of

_DAYS = ("lun", "mar", "mié", "jue", "vie", "sáb", "dom")
BAR_PX = 200  # the longest bar of the HTML chart
BAR_CHARS = 24  # the longest bar of the text chart


@dataclass(frozen=True)
class OpenRequest:
    """One open request as the digest lists it."""

    code: str
    title: str
    procedure_name: str
    stage: int
    stage_name: str
    assignees: tuple[str, ...]
    opened: datetime
    due: datetime | None  # the effective due date (Publicar desde respected)


@dataclass(frozen=True)
class Publication:
    """One product published during the week before the digest."""

    code: str
    title: str
    urls: tuple[str, ...]
    publisher: str
    published_at: datetime


@dataclass(frozen=True)
class PublicationWindow:
    """A request whose publication period starts or ends during the digest's week."""

    code: str
    title: str
    status: str
    start: date | None
    end: date | None


def short(value: date | datetime | None) -> str:
    """Return a compact Spanish date for table cells: ``lun 07/12`` or ``lun 07/12 16:30``."""
    if value is None:
        return "—"
    text = f"{_DAYS[value.weekday()]} {value:%d/%m}"
    return f"{text} {value:%H:%M}" if isinstance(value, datetime) else text


def build_digest(
    calendar: BusinessCalendar,
    now: datetime,
    open_requests: Sequence[OpenRequest],
    published: Sequence[Publication],
    windows: Sequence[PublicationWindow],
) -> dict[str, Any]:
    """Return the ``digest`` variable of the digest templates for the week of ``now``."""
    today = calendar.local(now).date()
    monday, sunday = week_of(today)
    rows = [_open_row(calendar, r, now, today) for r in open_requests]
    rows.sort(key=lambda r: (not r["overdue"], r["due"] is None, r["due"] or now, r["code"]))
    late = sum(1 for r in rows if r["overdue"])
    with_due = sum(1 for r in rows if r["due"] is not None)
    on_time = round(100 * (with_due - late) / with_due) if with_due else 100
    return {
        "week": today.isocalendar()[1],
        "monday": monday,
        "sunday": sunday,
        "today": today,
        "open_count": len(rows),
        "overdue_count": late,
        "on_time_percent": on_time,
        "on_time_px": round(BAR_PX * on_time / 100),
        "on_time_bar": "█" * round(BAR_CHARS * on_time / 100),
        "stages": _by_stage(rows),
        "open": rows,
        "published": [
            {
                "code": p.code,
                "title": p.title,
                "urls": list(p.urls),
                "publisher": p.publisher,
                "at": calendar.local(p.published_at),
                "at_label": short(calendar.local(p.published_at)),
            }
            for p in sorted(published, key=lambda p: p.published_at)
        ],
        "starting": _windows(windows, monday, sunday, start=True),
        "ending": _windows(windows, monday, sunday, start=False),
        "people": _people(rows, published),
    }


def _open_row(
    calendar: BusinessCalendar, request: OpenRequest, now: datetime, today: date
) -> dict[str, Any]:
    due = calendar.local(request.due) if request.due is not None else None
    late = overdue_days(calendar, due, today) if due is not None and due < now else 0
    return {
        "code": request.code,
        "title": request.title,
        "procedure_name": request.procedure_name,
        "stage": request.stage,
        "stage_name": request.stage_name,
        "assignees": list(request.assignees),
        "age": max(calendar.business_days_between(calendar.local(request.opened).date(), today), 0),
        "due": due,
        "due_label": short(due),
        "overdue": due is not None and due < now,
        "overdue_days": late,
    }


def _by_stage(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group open requests by procedure and stage, with bar lengths for the chart."""
    groups: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        key = (row["procedure_name"], row["stage"])
        group = groups.setdefault(
            key,
            {
                "procedure_name": row["procedure_name"],
                "stage": row["stage"],
                "stage_name": row["stage_name"],
                "count": 0,
                "overdue": 0,
            },
        )
        group["count"] += 1
        group["overdue"] += int(row["overdue"])
    most = max((g["count"] for g in groups.values()), default=1)
    out = []
    for key in sorted(groups):
        group = groups[key]
        late_px = round(BAR_PX * group["overdue"] / most)
        ok_px = round(BAR_PX * group["count"] / most) - late_px
        late_chars = round(BAR_CHARS * group["overdue"] / most)
        ok_chars = max(round(BAR_CHARS * group["count"] / most) - late_chars, 0)
        out.append(
            {
                **group,
                "ok_px": ok_px,
                "late_px": late_px,
                "rest_px": BAR_PX - ok_px - late_px,
                "bar": "█" * ok_chars + "▒" * late_chars,
            }
        )
    return out


def _windows(
    windows: Sequence[PublicationWindow], monday: date, sunday: date, *, start: bool
) -> list[dict[str, Any]]:
    chosen = [
        w for w in windows if (day := w.start if start else w.end) and monday <= day <= sunday
    ]
    chosen.sort(key=lambda w: ((w.start if start else w.end) or monday, w.code))
    return [
        {
            "code": w.code,
            "title": w.title,
            "status": w.status,
            "start": short(w.start),
            "end": short(w.end),
        }
        for w in chosen
    ]


def _people(
    rows: Sequence[dict[str, Any]], published: Sequence[Publication]
) -> list[dict[str, Any]]:
    """Count per person: stages pending, of which overdue, and posts published last week."""
    pending: Counter[str] = Counter()
    late: Counter[str] = Counter()
    posted: Counter[str] = Counter(p.publisher.lower() for p in published)
    for row in rows:
        for person in row["assignees"]:
            pending[person.lower()] += 1
            late[person.lower()] += int(row["overdue"])
    everyone = set(pending) | set(posted)
    return [
        {"person": p, "pending": pending[p], "overdue": late[p], "published": posted[p]}
        for p in sorted(everyone, key=lambda p: (-late[p], -pending[p], -posted[p], p))
    ]
