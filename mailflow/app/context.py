"""Build the context of every mail template: one set of defaults, one shape of a request.

Every mail the daemon, the jobs and `check-config` render gets its variables from here:
:data:`BLANK` gives each template variable its default (the templates are rendered with
StrictUndefined), :func:`request_context` says what templates know about a request, and
:func:`mail_context` puts them together; the composer adds :func:`organization_context`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from mailflow.config import Settings
from mailflow.core.model import Action, Procedure, Stage, Transition
from mailflow.store.schema import HistoryRow, RequestRow

# The defaults of every template variable, so each context is complete (StrictUndefined).
BLANK: dict[str, Any] = {
    "request": None,
    "actions": [],
    "note": "",
    "next_step": "",
    "actor": "",
    "action": "",
    "event": "",
    "fyi": False,
    "urls": [],
    "problems": [],
    "form": "",
    "original_subject": "",
    "sender": "",
    "reason": "",
    "effect": {},
    "observations": [],
}

# What each keyword means for the person who types it; the target is added per stage.
_MEANINGS = {
    Action.APRUEBO: "aprueba",
    Action.APRUEBO_COMITE: "aprueba y envía al Comité (información protegida por norma)",
    Action.RECHAZO: "rechaza, seguido del motivo",
    Action.OBSERVO: "devuelve con observaciones, seguidas del texto",
    Action.DERIVO: "deriva",
    Action.ENTREGO: "entrega la propuesta o el material (adjunte los archivos; "
    "puede indicar «Cronograma: material dd/mm/aaaa; publicación dd/mm/aaaa»)",
    Action.PUBLICADO: "confirma la publicación, seguido del enlace (adjunte la captura)",
    Action.ELIMINADO: "confirma que la publicación fue eliminada",
}


# How a request ends, said of the request ("la solicitud queda rechazada").
_ENDINGS = {
    "publicado": "se da por publicada",
    "rechazado": "queda rechazada y termina",
    "eliminado": "se da por eliminada",
    "cancelado": "queda anulada",
}


def _where(procedure: Procedure, transition: Transition) -> str:
    if transition.end is not None:
        ending = _ENDINGS.get(transition.end.value, f"termina ({transition.end.value})")
        return f"la solicitud {ending}"
    target = procedure.stages[transition.to or 0]
    return f"pasa a la etapa {target.number}: {target.name}"


def actions_of(procedure: Procedure, stage: Stage) -> list[dict[str, str]]:
    """Return the keywords a holder of ``stage`` may answer with, each with its meaning."""
    out = []
    for action, transition in stage.transitions.items():
        keyword = action.value + (" motivo" if action.needs_reason else "")
        meaning = f"{_MEANINGS[action]} — {_where(procedure, transition)}"
        out.append({"keyword": keyword, "meaning": meaning})
    return out


def local(moment: datetime | None, zone: ZoneInfo) -> datetime | None:
    """Return ``moment`` in the institution's time zone (None stays None)."""
    return None if moment is None else moment.astimezone(zone)


def request_context(row: RequestRow, procedure: Procedure, zone: ZoneInfo) -> dict[str, Any]:
    """Return what templates know about a request: the whole of it, as it was asked."""
    stage = procedure.stages.get(row.stage)
    fields = dict(row.fields)
    return {
        "code": row.code,
        "title": row.title,
        "procedure": procedure.id,
        "procedure_name": procedure.name,
        "status": row.status,
        "stage_number": row.stage,
        "stage_name": stage.name if stage else "",
        "requester": row.requester,
        "unit": row.unit or "",
        "objetivo": str(fields.get("objetivo", "")).strip(),
        "resumen": str(fields.get("resumen", "")).strip(),
        "protected": bool(row.protected),
        "due": local(row.due_at, zone),
        "publish_from": row.publish_from,
        "publish_until": row.publish_until,
        "fields": fields,
        "cronograma": _cronograma(row, procedure),
    }


def observations_of(history: Sequence[HistoryRow], zone: ZoneInfo) -> list[dict[str, Any]]:
    """Return the observations made so far (who, when, at which stage, what), oldest first."""
    return [
        {
            "at": h.at.astimezone(zone),
            "actor": h.actor,
            "action": h.action,
            "stage": h.stage,
            "text": (h.note or "").strip(),
        }
        for h in history
        if (h.note or "").strip() and "@" in h.actor  # a quorum's decision repeats the votes
    ]


def _cronograma(row: RequestRow, procedure: Procedure) -> list[dict[str, Any]]:
    """Return the planned dates of later stages, so everyone involved sees the plan."""
    planned = []
    for item in row.cronograma or ():
        stage = procedure.stages.get(int(item["stage"]))
        if stage is not None and stage.number >= row.stage:
            name = stage.name.rstrip(".")
            short = name if len(name) <= 60 else name[:57].rstrip() + "…"
            day = date.fromisoformat(item["date"])
            planned.append({"stage": stage.number, "name": short, "date": day})
    return planned


def mail_context(request: dict[str, Any] | None = None, /, **extra: Any) -> dict[str, Any]:
    """Return a complete template context: every default, ``request`` and ``extra`` on top.

    ``request`` is :func:`request_context`'s view of the request the mail is about (None
    for a mail about no request, such as a help answer); a ``request`` in ``extra`` wins.
    """
    return {**BLANK, "request": request, **extra}


def organization_context(settings: Settings) -> dict[str, Any]:
    """Return the variables every template may use: the organization and its units."""
    return {
        "org_name": settings.organization.name,
        "unit_names": {key: unit.name for key, unit in settings.units.items()},
    }
