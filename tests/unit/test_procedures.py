"""Procedure definitions: the shipped TOML against the manual, and every validation error."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from mailflow.core.model import Action, DeadlineKind, Status
from mailflow.core.procedures import (
    build_procedures,
    load_procedures,
    parse_procedure,
    procedures_as_json,
    require_procedures,
)
from mailflow.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "procedures"
ROLES = (
    "direccion_ejecutiva",
    "jefatura_ugs",
    "profesional_promocion",
    "equipo_diseno",
    "administrador_rrss",
    "comite_rrss",
)
DE, UGS, PRO, DIS, ADM, COM = ROLES
SOL, JSOL = "solicitante", "jefatura_solicitante"
V, C = "variable", "cronograma"
B1 = "business_days=1"

# The manual's tables (§12), one tuple per stage: (roles, deadline). Roles in brackets in the
# manual ("Jefatura de unidad solicitante (Comité ...)") are the protected-information branch.
MANUAL: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "promocion": [
        ((DE,), V), ((UGS,), B1), ((PRO,), C), ((UGS,), B1),
        ((JSOL, COM), B1), ((PRO, DIS), C), ((UGS,), C), ((ADM,), C),
    ],
    "imagenes_diseno": [
        ((PRO,), V), ((UGS,), B1), ((DE,), B1), ((PRO, DIS), C),
        ((UGS,), B1), ((JSOL, COM), B1), ((ADM,), B1),
    ],
    "informacion_especifica": [
        ((SOL, JSOL), V), ((DE,), B1), ((UGS,), B1), ((PRO,), C), ((SOL, JSOL), B1),
        ((PRO, DIS), C), ((SOL, JSOL), B1), ((UGS,), B1), ((ADM,), B1),
    ],
    "directa": [((ADM,), V)],
    "eliminacion": [((DE,), V), ((ADM,), B1)],
}  # fmt: skip


@pytest.fixture(scope="module")
def shipped() -> dict[str, Any]:
    procedures, problems = load_procedures(SHIPPED, ROLES)
    assert problems == []
    return procedures


def test_shipped_ids_in_manual_order(shipped: dict[str, Any]) -> None:
    assert list(shipped) == list(MANUAL)


@pytest.mark.parametrize("procedure_id", list(MANUAL))
def test_shipped_stages_match_manual(shipped: dict[str, Any], procedure_id: str) -> None:
    stages = shipped[procedure_id].stages
    expected = MANUAL[procedure_id]
    assert list(stages) == list(range(1, len(expected) + 1))
    for number, (roles, deadline) in enumerate(expected, start=1):
        assert stages[number].roles == roles, f"{procedure_id} stage {number}"
        assert stages[number].deadline.describe() == deadline, f"{procedure_id} stage {number}"
        assert stages[number].name.strip()


def test_json_contract(shipped: dict[str, Any]) -> None:
    data = procedures_as_json(shipped)
    assert [p["id"] for p in data] == list(MANUAL)
    assert [len(p["stages"]) for p in data] == [8, 7, 9, 1, 2]
    promo = data[0]
    assert promo["name"] == "Publicación de promoción"
    stage5 = promo["stages"][4]
    assert stage5["number"] == 5
    assert stage5["role"] == JSOL
    assert stage5["roles"] == [JSOL, COM]
    assert stage5["actions"] == ["APRUEBO", "OBSERVO", "RECHAZO"]
    assert stage5["deadline"] == B1
    assert "roles" not in promo["stages"][1]
    stage4 = promo["stages"][3]
    assert stage4["leads_to"]["APRUEBO COMITE"] == {"stage": 5, "role": COM}
    assert promo["stages"][7]["leads_to"] == {"PUBLICADO": {"end": "publicado"}}
    assert promo["started_by"] == [DE, UGS]


def test_protected_branch_and_loops_are_data(shipped: dict[str, Any]) -> None:
    promo = shipped["promocion"].stages
    assert promo[4].transitions[Action.APRUEBO].role == JSOL
    assert promo[4].transitions[Action.APRUEBO_COMITE].role == COM
    assert promo[5].alternatives
    assert promo[5].transitions[Action.OBSERVO].to == 3
    assert promo[5].transitions[Action.RECHAZO].end is Status.RECHAZADO
    assert promo[5].rechazo_report_to == (UGS,)
    info = shipped["informacion_especifica"].stages
    assert info[5].transitions[Action.OBSERVO].to == 4
    assert info[7].transitions[Action.OBSERVO].to == 6
    assert shipped["directa"].opening_action is Action.PUBLICADO
    assert shipped["eliminacion"].stages[2].transitions[Action.ELIMINADO].end is Status.ELIMINADO


def valid() -> dict[str, Any]:
    """Return a small valid procedure document to break in one place per test."""
    return {
        "id": "mini",
        "name": "Mini",
        "started_by": [DE],
        "stages": [
            {"number": 1, "name": "Pide", "role": DE, "deadline": "variable",
             "actions": {"ENTREGO": {"to": 2}}},
            {"number": 2, "name": "Revisa", "role": UGS, "deadline": {"business_days": 1},
             "actions": {"APRUEBO": {"to": 3}, "RECHAZO": {"end": "rechazado"}}},
            {"number": 3, "name": "Publica", "role": ADM, "deadline": "cronograma",
             "actions": {"PUBLICADO": {"end": "publicado"}}},
        ],
    }  # fmt: skip


def test_valid_minimal_document() -> None:
    procedure, problems = parse_procedure(valid(), "mini.toml", ROLES)
    assert problems == []
    assert procedure is not None
    assert procedure.stages[2].deadline.kind is DeadlineKind.BUSINESS_DAYS
    assert procedure.opening_action is Action.ENTREGO


def broken(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(valid())
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (broken(["stages", 1, "actions", "APRUEBO"], {"to": 12}),
         "mini.toml: stages[2].actions.APRUEBO: lleva a la etapa 12, que no existe"),
        (broken(["stages", 1, "role"], "jefe_supremo"),
         'mini.toml: stages[2].role: rol desconocido "jefe_supremo"'),
        (broken(["stages", 1, "deadline"], KeyError),
         "mini.toml: stages[2].deadline: falta la regla de plazo"),
        (broken(["stages", 1, "deadline"], "pronto"),
         "mini.toml: stages[2].deadline: regla de plazo no válida 'pronto'"),
        (broken(["stages", 1, "deadline"], {"business_days": -1}),
         "mini.toml: stages[2].deadline: regla de plazo no válida"),
        (broken(["stages", 0, "actions"], {"ENTREGO": {"to": 3}}),
         "mini.toml: stages[2]: no se llega a ella desde la etapa 1"),
        (broken(["stages", 1, "actions"], {"APRUEBO": {"to": 2}}),
         "mini.toml: stages[2]: ninguna secuencia de acciones desde aquí termina la solicitud"),
        (broken(["stages", 1, "actions", "APRUEBA"], {"to": 3}),
         "mini.toml: stages[2].actions.APRUEBA: acción desconocida"),
        (broken(["stages", 1, "actions", "APRUEBO"], {"to": 3, "end": "publicado"}),
         'mini.toml: stages[2].actions.APRUEBO: necesita uno solo de "to"'),
        (broken(["stages", 1, "actions", "APRUEBO"], {}),
         'mini.toml: stages[2].actions.APRUEBO: necesita uno solo de "to"'),
        (broken(["stages", 1, "actions", "APRUEBO"], "tres"),
         "mini.toml: stages[2].actions.APRUEBO: debe ser un número de etapa o una tabla"),
        (broken(["stages", 1, "actions", "RECHAZO"], {"end": "archivado"}),
         'mini.toml: stages[2].actions.RECHAZO.end: "archivado" no es un estado final'),
        (broken(["stages", 1, "actions", "RECHAZO"], {"end": "en_curso"}),
         'mini.toml: stages[2].actions.RECHAZO.end: "en_curso" no es un estado final'),
        (broken(["stages", 1, "actions", "APRUEBO"], {"to": 3, "role": ADM}),
         "mini.toml: stages[2].actions.APRUEBO.role: la etapa 3 no tiene roles alternativos"),
        (broken(["stages", 1, "actions", "APRUEBO"], {"to": 3, "hasta": 1}),
         "mini.toml: stages[2].actions.APRUEBO.hasta: clave desconocida"),
        (broken(["stages", 1, "actions"], {}),
         "mini.toml: stages[2].actions: falta: una etapa debe aceptar al menos una acción"),
        (broken(["stages", 1, "dedline"], "variable"),
         "mini.toml: stages[2].dedline: clave desconocida"),
        (broken(["stages", 1, "roles"], [UGS]),
         'mini.toml: stages[2]: necesita uno solo de "role" o "roles"'),
        (broken(["stages", 1, "cc"], ["nadie"]),
         'mini.toml: stages[2].cc: rol desconocido "nadie"'),
        (broken(["stages", 1, "name"], ""),
         "mini.toml: stages[2].name: falta"),
        (broken(["stages", 2, "number"], 4),
         "mini.toml: stages: los números deben ir de 1 a 3 sin huecos; hay [1, 2, 4]"),
        (broken(["stages", 2, "number"], 2),
         "mini.toml: stages[2]: número repetido"),
        (broken(["stages", 2, "number"], "tres"),
         "mini.toml: stages[2].number: falta o no es un entero"),
        (broken(["started_by"], []),
         "mini.toml: started_by: falta"),
        (broken(["started_by"], ["rey"]),
         'mini.toml: started_by: rol desconocido "rey"'),
        (broken(["opening_action"], "PUBLICADO"),
         "mini.toml: opening_action: la etapa 1 no acepta PUBLICADO"),
        (broken(["opening_action"], "PIDO"),
         'mini.toml: opening_action: acción desconocida "PIDO"'),
        (broken(["id"], KeyError), "mini.toml: id: falta"),
        (broken(["name"], 3), "mini.toml: name: falta"),
        (broken(["stages"], []), "mini.toml: stages: falta"),
        (broken(["order"], "first"), "mini.toml: order: debe ser un entero"),
        (broken(["colour"], "blue"), "mini.toml: colour: clave desconocida"),
        (broken(["stages", 1, "actions", "ANULO"], {"end": "cancelado"}),
         "mini.toml: stages[2].actions.ANULO: ANULO anula una solicitud en cualquier etapa"),
        (broken(["stages", 1, "notify_requester"], "sí"),
         "mini.toml: stages[2].notify_requester: debe ser true o false"),
    ],
)  # fmt: skip
def test_every_problem_is_reported(doc: dict[str, Any], message: str) -> None:
    procedure, problems = parse_procedure(doc, "mini.toml", ROLES)
    assert procedure is None
    assert any(p.startswith(message) for p in problems), problems


def test_alternative_stage_needs_a_role_choice() -> None:
    doc = valid()
    doc["stages"][2] |= {"roles": [ADM, COM], "alternatives": True}
    del doc["stages"][2]["role"]
    _, problems = parse_procedure(doc, "mini.toml", ROLES)
    assert problems == [
        "mini.toml: stages[2].actions.APRUEBO: debe decir qué rol de la etapa 3 actúa "
        "(role = uno de administrador_rrss, comite_rrss)"
    ]
    doc["stages"][1]["actions"]["APRUEBO"]["role"] = COM
    assert parse_procedure(doc, "mini.toml", ROLES)[1] == []


def test_all_problems_at_once() -> None:
    doc = broken(["stages", 1, "actions", "APRUEBO"], {"to": 12})
    doc["stages"][0]["role"] = "rey"
    del doc["stages"][2]["deadline"]
    _, problems = parse_procedure(doc, "mini.toml", ROLES)
    assert len(problems) >= 3


def test_dynamic_roles_are_always_known() -> None:
    doc = broken(["started_by"], ["miembro_unidad"])
    doc["stages"][1]["role"] = "jefatura_solicitante"
    assert parse_procedure(doc, "mini.toml", ())[1] == [
        'mini.toml: stages[1].role: rol desconocido "direccion_ejecutiva"',
        'mini.toml: stages[3].role: rol desconocido "administrador_rrss"',
    ]


def test_duplicate_ids_across_files() -> None:
    procedures, problems = build_procedures({"a.toml": valid(), "b.toml": valid()}, ROLES)
    assert list(procedures) == ["mini"]
    assert problems == ['b.toml: id: "mini" ya está definido en a.toml']


def test_unknown_role_in_shipped_config_is_reported() -> None:
    _, problems = load_procedures(SHIPPED, tuple(r for r in ROLES if r != COM))
    assert (
        'promocion.toml: stages[4].actions.APRUEBO COMITE.role: rol desconocido "comite_rrss"'
        in problems
    )


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    assert load_procedures(tmp_path, ROLES) == (
        {},
        [f"{tmp_path}: no hay archivos de procedimientos (*.toml)"],
    )
    (tmp_path / "roto.toml").write_text("id = \n", encoding="utf-8")
    procedures, problems = load_procedures(tmp_path, ROLES)
    assert procedures == {}
    assert problems[0].startswith("roto.toml: no se puede leer: ")
    with pytest.raises(ConfigError) as caught:
        require_procedures(tmp_path, ROLES)
    assert caught.value.problems == problems


def test_require_procedures_returns_shipped() -> None:
    assert len(require_procedures(SHIPPED, ROLES)) == 5


def test_notify_requester_marks_the_manuals_moments(shipped: dict[str, Any]) -> None:
    """By default: the DE's decision, and the material ready for the requester's approval."""
    marked = {
        pid: [s.number for s in procedure.stages.values() if s.notify_requester]
        for pid, procedure in shipped.items()
    }
    assert marked == {
        "promocion": [6],
        "imagenes_diseno": [3],
        "informacion_especifica": [2, 6],
        "directa": [],
        "eliminacion": [],
    }
