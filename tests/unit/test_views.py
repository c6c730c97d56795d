"""What people read about a request: action meanings, names, local dates, plurals."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from mailflow.app.build import directory_of, procedures_of
from mailflow.app.context import actions_of
from mailflow.app.views import plural, request_lines, short_date
from mailflow.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = load_settings(ROOT / "config" / "mailflow.toml", {}, secrets=False)
PROCEDURES = procedures_of(SETTINGS)
LA_PAZ = ZoneInfo("America/La_Paz")


def test_each_keyword_says_what_it_does_once() -> None:
    procedure = PROCEDURES["informacion_especifica"]
    meanings = {a["keyword"]: a["meaning"] for a in actions_of(procedure, procedure.stages[2])}
    assert meanings["RECHAZO motivo"] == (
        "rechaza, seguido del motivo — la solicitud queda rechazada y termina"
    )
    for procedure in PROCEDURES.values():
        for stage in procedure.stages.values():
            for action in actions_of(procedure, stage):
                words = action["meaning"].replace("—", ";").split(";")
                assert len(words) == len({w.strip() for w in words}), action


def test_dates_as_people_write_them() -> None:
    moment = datetime(2026, 12, 8, 20, 30, tzinfo=ZoneInfo("UTC"))
    assert short_date(moment, LA_PAZ) == "mar 8 dic 2026, 16:30"
    assert short_date(date(2026, 7, 16)) == "jue 16 jul 2026"
    assert short_date(None) == "—"
    assert (plural(1, "etapa", "etapas"), plural(9, "etapa", "etapas")) == ("1 etapa", "9 etapas")


def test_a_request_is_shown_with_names_and_local_dates() -> None:
    data = {
        "code": "RRSS-2026-0042",
        "title": "Feria",
        "procedure": "promocion",
        "status": "en_curso",
        "requester": "directora@ejemplo.gob.bo",
        "created_at": "2026-12-07T09:15:00-04:00",
        "stage": {
            "number": 5,
            "role": "jefatura_solicitante",
            "roles": ["jefatura_solicitante", "comite_rrss"],
            "assignees": ["jefe.uti@ejemplo.gob.bo"],
            "due": "2026-12-08T16:30:00-04:00",
        },
        "history": [
            {
                "at": "2026-12-07T09:15:00-04:00",
                "actor": "directora@ejemplo.gob.bo",
                "action": "ENTREGO",
                "stage": 1,
                "note": "",
            },
        ],
        "refused": [],
        "attachments": [{"filename": "afiche.png", "sha256": "0" * 64}],
        "publication": {"urls": [], "from": None, "until": None},
    }
    text = "\n".join(request_lines(data, PROCEDURES["promocion"], directory_of(SETTINGS), LA_PAZ))
    assert "Procedimiento: Publicación de promoción" in text
    assert "Etapa 5 de 8: Evalúa, aprueba o emite sugerencias para la elaboración." in text
    assert (
        "A cargo de: Jefatura de la unidad solicitante o Comité de aprobación de RRSS "
        "(jefe.uti@ejemplo.gob.bo)" in text
    )
    assert "Plazo: mar 8 dic 2026, 16:30" in text
    assert "Historial (1 entrada):" in text and "Archivos (1 archivo):" in text
    assert "(etapa 1, Dirección Ejecutiva)" in text
    for identifier in ("promocion", "jefatura_solicitante", "comite_rrss", "en_curso", "T09:15"):
        assert identifier not in text, identifier
