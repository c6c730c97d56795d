"""Sample data for every mail template: check-config renders each one with it."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

TEMPLATES = (
    "acknowledgement",
    "action_needed",
    "action_recorded",
    "rejected",
    "observations_returned",
    "published",
    "help",
    "unauthorized",
    "delivery_failed",
)


def sample_context(org_name: str, title: str = "Día del Software Libre") -> dict[str, Any]:
    """Return a context with every variable any shipped template uses."""
    return {
        "org_name": org_name,
        "request": {
            "code": "RRSS-2026-0042",
            "title": title,
            "procedure_name": "Publicación de información específica",
            "stage_number": 2,
            "stage_name": "Dirección Ejecutiva aprueba o rechaza",
            "requester": "analista.uti@ejemplo.gob.bo",
            "due": datetime.combine(date(2026, 12, 7), time(16, 30)),
            "publish_from": date(2026, 12, 10),
            "publish_until": date(2026, 12, 20),
        },
        "actions": [
            {"keyword": "APRUEBO", "meaning": "aprueba y deriva a la UGS"},
            {"keyword": "RECHAZO motivo", "meaning": "rechaza y cierra la solicitud"},
        ],
        "note": "Revisar el logo.",
        "next_step": "la Dirección Ejecutiva revisará la solicitud.",
        "actor": "directora@ejemplo.gob.bo",
        "action": "APRUEBO",
        "event": "",
        "fyi": False,
        "urls": ["https://facebook.com/ejemplo/posts/1"],
        "problems": ["Falta el campo «Título»."],
        "form": "Tipo: información específica\nTítulo:\n",
        "original_subject": "Solicitud",
        "sender": "intruso@otro.bo",
        "reason": "el remitente no tiene el rol de la etapa",
    }


def sample_contexts(org_name: str) -> dict[str, dict[str, Any]]:
    """Return one sample context per shipped template name."""
    return {name: sample_context(org_name) for name in TEMPLATES}
