"""Sample data for every mail template: check-config renders each one with it."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from mailflow.app.context import mail_context
from mailflow.core.calendar import BusinessCalendar
from mailflow.jobs.digest import OpenRequest, Publication, PublicationWindow, build_digest

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
    "reminder",
    "escalation",
    "window_end",
    "digest",
    "confirm_opening",
    "mailbox_gaps",
    "confirm_expired",
    "note",
    "noted",
    "cancelled",
    "stage_done",
    "progress",
    "unverified",
    "files_sent",
    "files_not_kept",
)


def sample_context(org_name: str, title: str = "Día del Software Libre") -> dict[str, Any]:
    """Return a context with every variable any shipped template uses.

    Built like every mail's context (:func:`mailflow.app.context.mail_context`), so the
    defaults the daemon relies on are checked too.
    """
    sample: dict[str, Any] = {
        "org_name": org_name,
        "request": {
            "code": "RRSS-2026-0042",
            "title": title,
            "procedure_name": "Publicación de información específica",
            "stage_number": 2,
            "stage_name": "Dirección Ejecutiva aprueba o rechaza",
            "requester": "analista.uti@ejemplo.gob.bo",
            "unit": "uti",
            "objetivo": "Difundir la feria entre la población.",
            "resumen": "La feria se realizará en el atrio.\nHabrá stands de cada unidad.",
            "protected": False,
            "due": datetime.combine(date(2026, 12, 7), time(16, 30)),
            "publish_from": date(2026, 12, 10),
            "publish_until": date(2026, 12, 20),
            "cronograma": [
                {"stage": 6, "name": "Elaboran material de publicación", "date": date(2026, 12, 4)},
            ],
        },
        "unit_names": {"uti": "Unidad de Tecnologías de la Información"},
        # The observations so far and the Archivos section (mailflow.app.files)
        "observations": [
            {
                "at": datetime.combine(date(2026, 12, 2), time(10, 15)),
                "actor": "analista.uti@ejemplo.gob.bo",
                "action": "OBSERVO",
                "stage": 5,
                "text": "El logo no es el vigente.",
            }
        ],
        "files": [
            {
                "number": 1,
                "name": "arte-final.png",
                "kind": "imagen PNG",
                "size": "1,2 MB",
                "stage": 6,
                "stage_name": "Elaboran material de publicación",
                "person": "disenio@ejemplo.gob.bo",
                "attached": True,
                "status": "adjunto",
            },
            {
                "number": 2,
                "name": "video-feria.mp4",
                "kind": "vídeo MP4",
                "size": "48,0 MB",
                "stage": 1,
                "stage_name": "Requerimiento",
                "person": "analista.uti@ejemplo.gob.bo",
                "attached": False,
                "status": "no adjunto: pesa más que el límite de 15 MB por correo",
            },
        ],
        "files_attached": 1,
        "files_more": True,
        "files_limit": "15 MB",
        # files_sent (ARCHIVOS) and files_not_kept (mailflow.app.archivos, app.effects)
        "batch": {"number": 1, "total": 2},
        "refused": [{"name": "instalador.exe", "reason": "tipo de archivo no admitido (.exe)"}],
        "refused_more": 0,
        "too_large": [{"name": "video-feria.mp4", "size": "48,0 MB"}],
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
        # reminder, escalation, window_end and digest (mailflow.jobs.scheduler)
        "reminder": {
            "number": 2,
            "limit": 2,
            "overdue_days": 2,
            "assignees": ["directora@ejemplo.gob.bo"],
            "superiors": ["jefe.ugs@ejemplo.gob.bo"],
        },
        "cronograma": [{"stage": 6, "name": "Elaboran material", "date": date(2026, 12, 4)}],
        "history": [
            {
                "at": datetime.combine(date(2026, 12, 1), time(9, 30)),
                "actor": "analista.uti@ejemplo.gob.bo",
                "action": "ENTREGO",
                "stage": 1,
                "note": "Solicitud de publicación.",
            }
        ],
        "digest": sample_digest(title),
        # mailbox_gaps (mailflow.jobs.scheduler): mail that vanished before it was read
        "gaps": {
            "count": 2,
            "mailbox": "rrss@ejemplo.gob.bo",
            "folder": "INBOX",
            "since": datetime.combine(date(2026, 12, 7), time(10, 2)),
            "until": datetime.combine(date(2026, 12, 8), time(9, 0)),
            "entries": [
                {"uid": 41, "noticed": datetime.combine(date(2026, 12, 7), time(10, 2))},
                {"uid": 42, "noticed": datetime.combine(date(2026, 12, 7), time(10, 2))},
            ],
        },
        # confirm_opening (mailflow.app.service): a privileged opening held until CONFIRMO
        "confirm": {
            "title": title,
            "procedure_name": "Publicación directa (fotografía, informativa cotidiana)",
            "summary": [
                {"label": "Tipo", "value": "fotografía"},
                {"label": "Título", "value": title},
                {"label": "Enlace", "value": "https://facebook.com/ejemplo/posts/1"},
            ],
            "expires": datetime.combine(date(2026, 12, 4), time(16, 30)),
            "outcome": "se registrará de inmediato como publicada; no hay más etapas.",
        },
        "received": datetime.combine(date(2026, 12, 1), time(9, 30)),
        # the conversation around a request (mailflow.app.conversation): the effect's own
        # values (the stage decided, what the acknowledgement promises), notes and answers
        "effect": {
            "stage": "2",
            "stage_name": "Rechaza o aprueba solicitud y deriva a la UGS",
            "event": "",
            "status": "en_curso",
            "promised": "cuando la Dirección Ejecutiva resuelva la etapa 2\nal terminar",
            "may_withdraw": "1",
        },
        "note_files": ["afiche.png"],
        "holders": ["directora@ejemplo.gob.bo"],
        "told": ["directora@ejemplo.gob.bo"],
        "past": {
            "actor": "directora@ejemplo.gob.bo",
            "action": "APRUEBO",
            "stage": 2,
            "stage_name": "Rechaza o aprueba solicitud y deriva a la UGS",
            "at": datetime.combine(date(2026, 12, 1), time(10, 0)),
        },
        "kept": True,
        "why": "published",
        "shared": "rrss@ejemplo.gob.bo",
        "status_word": "en curso",
        "may_withdraw": True,
        "withdrawers": "quien envió la solicitud o la Dirección Ejecutiva",
        "code": "RRSS-2026-0042",
        "stranger": False,
    }
    return mail_context(**sample)


def sample_digest(title: str) -> dict[str, Any]:
    """Return the ``digest`` variable of a small week: two open requests, one published."""
    zone = ZoneInfo("America/La_Paz")
    now = datetime(2026, 12, 7, 8, 0, tzinfo=zone)
    opened = datetime(2026, 12, 1, 9, 30, tzinfo=zone)
    open_requests = [
        OpenRequest(
            "RRSS-2026-0042", title, "Publicación de información específica", 2,
            "Dirección Ejecutiva aprueba o rechaza", ("directora@ejemplo.gob.bo",), opened,
            datetime(2026, 12, 2, 16, 30, tzinfo=zone),
        ),
        OpenRequest(
            "RRSS-2026-0043", "Campaña de ciberseguridad", "Publicación de promoción", 3,
            "Elabora propuesta de contenido", ("promocion@ejemplo.gob.bo",), opened,
            datetime(2026, 12, 9, 16, 30, tzinfo=zone),
        ),
    ]  # fmt: skip
    published = [
        Publication(
            "RRSS-2026-0040", "Feria de servicios digitales",
            ("https://facebook.com/ejemplo/posts/1",), "community@ejemplo.gob.bo",
            datetime(2026, 12, 3, 11, 0, tzinfo=zone),
        )
    ]  # fmt: skip
    windows = [
        PublicationWindow(
            "RRSS-2026-0040", "Feria de servicios digitales", "publicado", date(2026, 12, 3),
            date(2026, 12, 10),
        )
    ]  # fmt: skip
    return build_digest(BusinessCalendar(), now, open_requests, published, windows)


def sample_contexts(org_name: str) -> dict[str, dict[str, Any]]:
    """Return one sample context per shipped template name."""
    return {name: sample_context(org_name) for name in TEMPLATES}
