"""Present stored requests at a terminal: `requests show`, its JSON, `procedures`.

What mail templates know about a request is :mod:`mailflow.app.context`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from mailflow.core.model import Procedure, Stage
from mailflow.core.names import role_name, status_word
from mailflow.core.people import Directory, holders_of
from mailflow.mail.parse import tiny_inline
from mailflow.store.requeststate import state_of
from mailflow.store.schema import AttachmentRow, HistoryRow, RefusalRow, RequestRow


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
    """Return the JSON object of `requests show` (docs/design.md §7)."""
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
            if not tiny_inline(bool(a.inline), a.content_type, a.size)  # logos, pixels
        ],
        "publication": {
            "urls": urls,
            "from": _iso(row.publish_from, zone),
            "until": _iso(row.publish_until, zone),
        },
    }


# -- the institution's words, for `requests show` and `procedures` ------------------------

# The manual's names of the roles; a [roles.<id>] name in the config wins.
_DAYS = ("lun", "mar", "mié", "jue", "vie", "sáb", "dom")
_MONTHS = ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic")


def plural(count: int, one: str, many: str) -> str:
    """Return ``1 etapa`` / ``9 etapas``."""
    return f"{count} {one if count == 1 else many}"


def short_date(moment: datetime | date | None, zone: ZoneInfo | None = None) -> str:
    """Return ``lun 8 dic 2026, 16:30`` (a date alone has no time), local to ``zone``."""
    if moment is None:
        return "—"
    if isinstance(moment, datetime):
        local_moment = moment.astimezone(zone) if zone else moment
        day = local_moment.date()
        clock = f", {local_moment:%H:%M}"
    else:
        day, clock = moment, ""
    return f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year}{clock}"


def deadline_words(stage: Stage) -> str:
    """Return a stage's deadline rule as people say it: ``1 día hábil``, ``según cronograma``."""
    kind = stage.deadline.kind.value
    if kind == "business_days":
        return plural(stage.deadline.days, "día hábil", "días hábiles")
    return "según cronograma" if kind == "cronograma" else "variable"


def procedure_lines(procedure: Procedure, directory: Directory) -> list[str]:
    """Return `mailflow procedures` for one procedure, in the manual's words."""
    lines = [
        f"{procedure.name} ({procedure.id}): {plural(len(procedure.stages), 'etapa', 'etapas')}"
    ]
    for stage in procedure.stages.values():
        roles = " o ".join(role_name(directory, r) for r in stage.roles)
        lines.append(f"  {stage.number:>2}. {stage.name}")
        lines.append(f"      a cargo de: {roles}; plazo: {deadline_words(stage)}")
        lines.append(f"      responde con: {', '.join(a.value for a in stage.actions)}")
    return lines


def request_lines(
    data: dict[str, Any], procedure: Procedure | None, directory: Directory, zone: ZoneInfo
) -> list[str]:
    """Return `mailflow requests show` for people: names and local dates, not ids.

    ``data`` is the JSON of :func:`request_json` (so both outputs say the same thing).
    """
    stage = data["stage"]
    stages = procedure.stages if procedure is not None else {}
    current = stages.get(stage["number"])
    status = status_word(data["status"])
    lines = [
        f"{data['code']} — {data['title']}",
        f"  Procedimiento: {procedure.name if procedure else data['procedure']}",
        f"  Estado: {status}",
        f"  Solicitante: {data['requester']}",
        f"  Abierta: {short_date(_moment(data['created_at']))}",
    ]
    if data["status"] == "en_curso":
        roles = " o ".join(role_name(directory, r) for r in stage.get("roles", [stage["role"]]))
        where = f"Etapa {stage['number']} de {len(stages)}" if stages else "Etapa"
        lines.append(f"  {where}: {current.name if current else stage['number']}")
        lines.append(f"  A cargo de: {roles} ({', '.join(stage['assignees']) or 'sin titular'})")
        lines.append(
            f"  Plazo: {short_date(_moment(stage['due'])) if stage['due'] else 'sin plazo'}"
        )
    history = data["history"]
    lines.append(f"Historial ({plural(len(history), 'entrada', 'entradas')}):")
    for h in history:
        who = "mailflow" if h["actor"] == "sistema" else h["actor"]
        lines.append(
            f"  {short_date(_moment(h['at']))}  {h['action']:<13} {who}"
            f"  ({_stage_words(stages, h['stage'], directory)})"
        )
    refused = data["refused"]
    if refused:
        lines.append(f"Intentos rechazados ({plural(len(refused), 'intento', 'intentos')}):")
        for r in refused:
            lines.append(f"  {short_date(_moment(r['at']))}  {r['action']:<13} {r['sender']}")
            lines.append(f"      motivo: {r['reason']}")
    files = data["attachments"]
    if files:
        lines.append(f"Archivos ({plural(len(files), 'archivo', 'archivos')}):")
        lines += [f"  {a['filename']}" for a in files]
    urls = data["publication"]["urls"]
    if urls:
        lines.append("Publicación: " + " ".join(urls))
    return lines


def _moment(text: str | None) -> datetime | None:
    """Parse an ISO moment of the JSON back; it already carries the local offset."""
    return None if text is None else datetime.fromisoformat(text)


def _stage_words(stages: Mapping[int, Stage], number: int, directory: Directory) -> str:
    """Return ``etapa 2, Dirección Ejecutiva`` for a history line."""
    stage = stages.get(number)
    if stage is None:
        return f"etapa {number}"
    who = stage.responsible or " o ".join(role_name(directory, r) for r in stage.roles)
    return f"etapa {number}, {who}"
