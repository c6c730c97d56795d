"""Role resolution: members, substitutes by date, vacancies, dynamic roles, authorization."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest

from mailflow.core.model import Quorum
from mailflow.core.people import (
    Directory,
    Role,
    Substitute,
    Unit,
    assignees,
    check_directory,
    holders_of,
    may_act,
    unit_of,
)


@dataclass(frozen=True)
class Req:
    requester: str
    unit: str | None = None


LEAVE = Substitute("suplente@x.bo", date(2026, 3, 1), date(2026, 3, 15), replaces="jefe@x.bo")
DIRECTORY = Directory(
    roles={
        "direccion_ejecutiva": Role("direccion_ejecutiva", "Dirección Ejecutiva", ("de@x.bo",)),
        "jefatura_ugs": Role(
            "jefatura_ugs", "Jefatura UGS", ("Jefe@X.bo",), (LEAVE,), "direccion_ejecutiva"
        ),
        "profesional_promocion": Role("profesional_promocion", members=(), superior="jefatura_ugs"),
        "equipo_diseno": Role(
            "equipo_diseno",
            members=("d1@x.bo",),
            substitutes=(Substitute("extra@x.bo", date(2026, 1, 1), date(2026, 1, 31)),),
        ),
        "comite_rrss": Role("comite_rrss", members=("c1@x.bo", "c2@x.bo"), quorum=Quorum.ALL),
        "jefatura_solicitante": Role("jefatura_solicitante", superior="direccion_ejecutiva"),
    },
    units={
        "uti": Unit("uti", "Unidad de TI", head="jefe.uti@x.bo", members=("ana@x.bo",)),
        "vacia": Unit("vacia", "Unidad sin jefe", head=None, members=("beto@x.bo",)),
    },
)
REQ = Req("ana@x.bo", "uti")
DAY = date(2026, 2, 10)


@pytest.mark.parametrize(
    ("role", "on", "expected"),
    [
        ("jefatura_ugs", DAY, ("Jefe@X.bo",)),
        # On leave (inclusive range): the substitute holds the role, the member does not.
        ("jefatura_ugs", date(2026, 3, 1), ("suplente@x.bo",)),
        ("jefatura_ugs", date(2026, 3, 15), ("suplente@x.bo",)),
        ("jefatura_ugs", date(2026, 3, 16), ("Jefe@X.bo",)),
        # A substitute without `replaces` adds a holder for the range.
        ("equipo_diseno", date(2026, 1, 20), ("d1@x.bo", "extra@x.bo")),
        ("equipo_diseno", DAY, ("d1@x.bo",)),
        # Vacant ("acéfalo"): falls to the superior, and on to its substitute when on leave.
        ("profesional_promocion", DAY, ("Jefe@X.bo",)),
        ("profesional_promocion", date(2026, 3, 5), ("suplente@x.bo",)),
        ("solicitante", DAY, ("ana@x.bo",)),
        ("jefatura_solicitante", DAY, ("jefe.uti@x.bo",)),
        ("comite_rrss", DAY, ("c1@x.bo", "c2@x.bo")),
        ("no_such_role", DAY, ()),
    ],
)
def test_assignees(role: str, on: date, expected: tuple[str, ...]) -> None:
    assert assignees(DIRECTORY, role, REQ, on) == expected


def test_jefatura_solicitante_of_headless_or_unknown_unit_falls_to_superior() -> None:
    assert assignees(DIRECTORY, "jefatura_solicitante", Req("beto@x.bo", "vacia"), DAY) == (
        "de@x.bo",
    )
    assert assignees(DIRECTORY, "jefatura_solicitante", Req("z@y.bo", None), DAY) == ("de@x.bo",)


def test_miembro_unidad_lists_every_unit_person() -> None:
    people = assignees(DIRECTORY, "miembro_unidad", REQ, DAY)
    assert set(people) == {"jefe.uti@x.bo", "ana@x.bo", "beto@x.bo"}


def test_superior_cycle_resolves_to_nobody() -> None:
    directory = Directory(roles={"a": Role("a", superior="b"), "b": Role("b", superior="a")})
    assert assignees(directory, "a", REQ, DAY) == ()
    assert any("ciclo" in p for p in check_directory(directory))


def test_may_act_is_case_insensitive_and_names_the_role() -> None:
    decision = may_act(DIRECTORY, " jefe@x.BO ", ("jefatura_ugs",), REQ, DAY)
    assert decision.allowed
    assert decision.role == "jefatura_ugs"


def test_may_act_refuses_with_reason() -> None:
    decision = may_act(DIRECTORY, "intruso@x.bo", ("jefatura_ugs", "comite_rrss"), REQ, DAY)
    assert not decision.allowed
    assert decision.role is None
    assert "jefatura_ugs" in decision.reason
    assert "intruso@x.bo" in decision.reason


def test_may_act_refuses_member_on_leave() -> None:
    assert not may_act(DIRECTORY, "jefe@x.bo", ("jefatura_ugs",), REQ, date(2026, 3, 5)).allowed
    assert may_act(DIRECTORY, "suplente@x.bo", ("jefatura_ugs",), REQ, date(2026, 3, 5)).allowed
    assert not may_act(DIRECTORY, "suplente@x.bo", ("jefatura_ugs",), REQ, DAY).allowed


def test_may_act_picks_the_first_matching_role() -> None:
    decision = may_act(DIRECTORY, "ana@x.bo", ("jefatura_solicitante", "solicitante"), REQ, DAY)
    assert decision.role == "solicitante"


def test_holders_of_deduplicates() -> None:
    both = holders_of(DIRECTORY, ("jefatura_ugs", "profesional_promocion"), REQ, DAY)
    assert both == ("Jefe@X.bo",)


def test_unit_of() -> None:
    assert unit_of(DIRECTORY, "ANA@x.bo") == "uti"
    assert unit_of(DIRECTORY, "jefe.uti@x.bo") == "uti"
    assert unit_of(DIRECTORY, "nadie@x.bo") is None


def test_check_directory_reports_every_problem() -> None:
    directory = Directory(
        roles={
            "a": Role("a", superior="ghost"),
            "b": Role("b", substitutes=(Substitute("s@x.bo", date(2026, 2, 1), date(2026, 1, 1)),)),
        }
    )
    problems = check_directory(directory)
    assert problems == [
        'roles.a.superior: rol desconocido "ghost"',
        "roles.b.substitutes[0]: until 2026-01-01 es anterior a from 2026-02-01",
    ]
    assert check_directory(DIRECTORY) == []


def test_jefatura_solicitante_falls_to_the_direccion_without_configuration() -> None:
    """The config cannot name dynamic roles, so a DE request never waits for no one."""
    roles = {k: v for k, v in DIRECTORY.roles.items() if k != "jefatura_solicitante"}
    directory = Directory(roles=roles, units=DIRECTORY.units)
    assert assignees(directory, "jefatura_solicitante", Req("de@x.bo", None), DAY) == ("de@x.bo",)
    assert assignees(directory, "jefatura_solicitante", REQ, DAY) == ("jefe.uti@x.bo",)
