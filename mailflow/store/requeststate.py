"""Convert between a stored request row and the engine's immutable RequestState."""

from __future__ import annotations

from datetime import date, datetime

from mailflow.core.model import Action, Cronograma, RequestState, Status, Vote
from mailflow.store.schema import RequestRow


def state_of(row: RequestRow) -> RequestState:
    """Return the engine's view of a stored request."""
    cronograma: Cronograma = tuple(
        (int(item["stage"]), date.fromisoformat(item["date"])) for item in row.cronograma or ()
    )
    votes = tuple(
        Vote(v["address"], Action(v["action"]), v.get("text", "")) for v in row.votes or ()
    )
    return RequestState(
        procedure=row.procedure,
        stage=row.stage,
        roles=tuple(row.stage_roles),
        requester=row.requester,
        unit=row.unit,
        entered_at=row.stage_entered_at,
        status=Status(row.status),
        due=row.due_at,
        cronograma=cronograma,
        votes=votes,
    )


def store_state(row: RequestRow, state: RequestState, now: datetime) -> None:
    """Write ``state`` into ``row`` (JSON columns are replaced, never edited in place)."""
    row.stage = state.stage
    row.stage_roles = list(state.roles)
    row.stage_entered_at = state.entered_at
    row.status = state.status.value
    row.due_at = state.due
    row.cronograma = [{"stage": s, "date": d.isoformat()} for s, d in state.cronograma] or None
    row.votes = [
        {"address": v.address, "action": v.action.value, "text": v.text} for v in state.votes
    ] or None
    row.updated_at = now
