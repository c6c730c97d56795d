"""Present stored requests: the template context and the JSON of `requests show`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from mailflow.core.model import Action, Procedure, Stage, Transition
from mailflow.core.people import Directory, holders_of
from mailflow.store.requeststate import state_of
from mailflow.store.schema import AttachmentRow, HistoryRow, RefusalRow, RequestRow

# What each keyword means for the person who types it; the target is added per stage.
_MEANINGS = {
    Action.APRUEBO: "aprueba",
    Action.APRUEBO_COMITE: "aprueba y envía al Comité (información protegida por norma)",
    Action.RECHAZO: "rechaza, seguido del motivo; la solicitud termina",
    Action.OBSERVO: "devuelve con observaciones, seguidas del texto",
    Action.DERIVO: "deriva",
    Action.ENTREGO: "entrega la propuesta o el material (adjunte los archivos; "
    "puede indicar «Cronograma: material dd/mm/aaaa; publicación dd/mm/aaaa»)",
    Action.PUBLICADO: "confirma la publicación, seguido del enlace (adjunte la captura)",
    Action.ELIMINADO: "confirma que la publicación fue eliminada",
}


def _where(procedure: Procedure, transition: Transition) -> str:
    if transition.end is not None:
        return f"la solicitud termina ({transition.end.value})"
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


def _iso(value: datetime | date | None, zone: ZoneInfo) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(zone).isoformat()
    return value.isoformat()


def request_summary(row: RequestRow) -> dict[str, Any]:
    """Return the short JSON object of `requests list`."""
    return {
        "code": row.code,
        "title": row.title,
        "procedure": row.procedure,
        "status": row.status,
        "stage": row.stage,
        "requester": row.requester,
    }


def request_json(
    row: RequestRow,
    *,
    history: Sequence[HistoryRow],
    refused: Sequence[RefusalRow],
    attachments: Sequence[AttachmentRow],
    directory: Directory,
    now: datetime,
    zone: ZoneInfo,
) -> dict[str, Any]:
    """Return the JSON object of `requests show` (DESIGN.md §4)."""
    state = state_of(row)
    roles = list(row.stage_roles)
    open_ = row.status == "en_curso"
    assignees = holders_of(directory, roles, state, now.astimezone(zone).date()) if open_ else ()
    stage: dict[str, Any] = {
        "number": row.stage,
        "role": roles[0] if roles else None,
        "assignees": list(assignees),
        "due": _iso(row.due_at, zone) if open_ else None,
    }
    if len(roles) > 1:
        stage["roles"] = roles
    urls = [u for h in history if h.details for u in h.details.get("urls", [])]
    return {
        **request_summary(row),
        "unit": row.unit,
        "fields": dict(row.fields),
        "created_at": _iso(row.created_at, zone),
        "stage": stage,
        "history": [
            {
                "at": _iso(h.at, zone),
                "actor": h.actor,
                "action": h.action,
                "stage": h.stage,
                "note": h.note or "",
            }
            for h in history
        ],
        "refused": [
            {
                "at": _iso(r.at, zone),
                "sender": r.sender,
                "action": r.action,
                "stage": r.stage,
                "reason": r.reason,
            }
            for r in refused
        ],
        "attachments": [
            {
                "filename": a.filename,
                "sha256": a.sha256,
                "content_type": a.content_type,
                "size": a.size,
                "stage": a.stage,  # delivered at this stage, by this person
                "person": a.person,
            }
            for a in attachments
        ],
        "publication": {
            "urls": urls,
            "from": _iso(row.publish_from, zone),
            "until": _iso(row.publish_until, zone),
        },
    }
