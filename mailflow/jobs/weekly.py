"""Read what the weekly digest reports from the store: open requests, posts, windows."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from mailflow.app.build import Core
from mailflow.core.deadlines import Watch, effective_due, week_of
from mailflow.core.model import Action
from mailflow.jobs.digest import OpenRequest, Publication, PublicationWindow, build_digest
from mailflow.store.requeststate import state_of
from mailflow.store.schedule import open_request_rows, published_between, windows_between
from mailflow.store.schema import RequestRow
from mailflow.store.unitofwork import Session


def digest_of(session: Session, core: Core, now: datetime) -> dict[str, Any]:
    """Return the ``digest`` template variable for the week of ``now``."""
    calendar = core.calendar
    monday, sunday = week_of(calendar.local(now).date())
    start = datetime.combine(monday, datetime.min.time(), tzinfo=calendar.zone)
    return build_digest(
        calendar,
        now,
        open_requests(session, core, now),
        published(session, start - timedelta(days=7), start),
        windows(session, monday, sunday),
    )


def watch_of(row: RequestRow, core: Core) -> Watch:
    """Describe a request's open stage for the due-date rules (nothing claimed yet)."""
    stage = core.workflow.procedure(row.procedure).stages.get(row.stage)
    return Watch(
        request_id=row.id,
        code=row.code,
        stage=row.stage,
        due=row.due_at,
        publish_from=row.publish_from,
        publishes=stage is not None and Action.PUBLICADO in stage.actions,
    )


def open_requests(session: Session, core: Core, now: datetime) -> list[OpenRequest]:
    """Return every open request with its assignees and effective due date."""
    out = []
    for row in open_request_rows(session):
        procedure = core.workflow.procedure(row.procedure)
        stage = procedure.stages.get(row.stage)
        out.append(
            OpenRequest(
                code=row.code,
                title=row.title,
                procedure_name=procedure.name,
                stage=row.stage,
                stage_name=stage.name if stage else "",
                assignees=core.workflow.assignees(state_of(row), now),
                opened=row.created_at,
                due=effective_due(watch_of(row, core), core.calendar),
            )
        )
    return out


def published(session: Session, start: datetime, end: datetime) -> list[Publication]:
    """Return the products published in [start, end)."""
    found = published_between(session, start, end)
    return [
        Publication(code, p.title, tuple(p.urls), p.publisher, p.published_at) for p, code in found
    ]


def windows(session: Session, monday: date, sunday: date) -> list[PublicationWindow]:
    """Return the live requests whose publication period starts or ends in the week."""
    rows = windows_between(session, monday, sunday)
    return [
        PublicationWindow(r.code, r.title, r.status, r.publish_from, r.publish_until) for r in rows
    ]
