"""The weekly digest's content: order, ages, due dates, windows, per-person counts."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from mailflow.core.calendar import BusinessCalendar
from mailflow.jobs.digest import OpenRequest, Publication, PublicationWindow, build_digest, short
from mailflow.mail.render import Renderer
from mailflow.ops.sample import sample_context

TZ = ZoneInfo("America/La_Paz")
CAL = BusinessCalendar()
NOW = datetime(2026, 12, 28, 8, 0, tzinfo=TZ)  # Monday after Christmas


def at(day: date, hour: int = 16, minute: int = 30) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=TZ)


def opened(code: str, due: datetime | None, *people: str, stage: int = 2) -> OpenRequest:
    return OpenRequest(
        code, f"Título {code}", "Publicación de promoción", stage, f"Etapa {stage}",
        people, at(date(2026, 12, 21), 9), due,
    )  # fmt: skip


def test_overdue_first_most_overdue_on_top_then_by_due_date() -> None:
    digest = build_digest(
        CAL,
        NOW,
        [
            opened("RRSS-2026-0003", at(date(2026, 12, 30)), "a@x.bo"),
            opened("RRSS-2026-0001", at(date(2026, 12, 24)), "a@x.bo"),
            opened("RRSS-2026-0004", None, "b@x.bo", stage=1),
            opened("RRSS-2026-0002", at(date(2026, 12, 22)), "b@x.bo", stage=3),
        ],
        [],
        [],
    )
    assert [r["code"] for r in digest["open"]] == [
        "RRSS-2026-0002",
        "RRSS-2026-0001",
        "RRSS-2026-0003",
        "RRSS-2026-0004",
    ]
    first = digest["open"][0]
    # 23, 24 and 28 December (today): Christmas and the weekend do not count.
    assert first["overdue"] and first["overdue_days"] == 3
    assert first["age"] == 4  # opened Monday 21: 22, 23, 24 and 28; Christmas does not count
    assert first["due_label"] == "mar 22/12 16:30"
    assert digest["overdue_count"] == 2 and digest["open_count"] == 4
    assert digest["on_time_percent"] == 33  # 1 of the 3 with a due date
    assert [(s["stage"], s["count"], s["overdue"]) for s in digest["stages"]] == [
        (1, 1, 0),
        (2, 2, 1),
        (3, 1, 1),
    ]
    assert max(s["ok_px"] + s["late_px"] for s in digest["stages"]) == 200


def test_windows_publications_and_people() -> None:
    digest = build_digest(
        CAL,
        NOW,
        [opened("RRSS-2026-0001", at(date(2026, 12, 24)), "a@x.bo", "b@x.bo")],
        [
            Publication(
                "RRSS-2026-0009",
                "Feria",
                ("https://fb.com/1",),
                "b@x.bo",
                at(date(2026, 12, 23), 11),
            ),
        ],
        [
            PublicationWindow(
                "RRSS-2026-0009", "Feria", "publicado", date(2026, 12, 20), date(2026, 12, 31)
            ),
            PublicationWindow(
                "RRSS-2026-0010", "Expo", "en_curso", date(2027, 1, 2), date(2027, 1, 20)
            ),
        ],
    )
    assert digest["week"] == 53
    assert [w["code"] for w in digest["ending"]] == ["RRSS-2026-0009"]
    assert [w["code"] for w in digest["starting"]] == ["RRSS-2026-0010"]
    assert digest["starting"][0]["start"] == "sáb 02/01"
    assert digest["people"] == [
        {"person": "b@x.bo", "pending": 1, "overdue": 1, "published": 1},
        {"person": "a@x.bo", "pending": 1, "overdue": 1, "published": 0},
    ]


def test_an_empty_week_still_renders() -> None:
    digest = build_digest(CAL, NOW, [], [], [])
    context = {**sample_context("Agencia"), "request": None, "fyi": True, "digest": digest}
    out = Renderer().render("digest", context)
    assert "No hay solicitudes abiertas." in out.text
    assert "Nada publicado." in out.html
    assert "0 abiertas, 0 vencidas" in out.subject
    assert digest["on_time_percent"] == 100


def test_short_dates() -> None:
    assert short(None) == "—"
    assert short(date(2026, 12, 25)) == "vie 25/12"
    assert short(at(date(2026, 12, 28), 9, 5)) == "lun 28/12 09:05"
