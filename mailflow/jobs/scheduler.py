"""Carry out the time-driven work :mod:`mailflow.core.deadlines` finds due: one transaction each.

Every pass of the daemon (each wake-up, at least once a minute, and ``run --once``) calls
:meth:`Scheduler.run_due` with the pass's clock. Each piece of work is claimed with
:func:`mailflow.store.repository.claim_once` (``INSERT … ON CONFLICT DO NOTHING`` on its key)
in the same transaction as its outbox rows and its history entry: the claim and the mails
commit together or not at all, so a crash repeats nothing and loses nothing, and two
daemons on one PostgreSQL database never both send it.

The slots are computed from ``[schedule]`` in the institution's zone by
:mod:`mailflow.core.deadlines` (``reminder_slot``, ``digest_slot``) from the pass's clock,
which ``--now`` and the tests set, and checked on every pass. The ``schedule`` library is
not used (README, "Dependencies"): it reads the machine's clock and zone, never runs a
missed slot (a restart on Tuesday would skip Monday's digest), knows no business days, and
lives in one process, where the claims in the store serve every daemon.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from mailflow.app.build import Core
from mailflow.app.context import actions_of, mail_context, request_context
from mailflow.app.files import Material, RequestFile, material_of
from mailflow.app.outbound import Composer
from mailflow.config import Settings
from mailflow.core.deadlines import (
    Kind,
    Rules,
    Watch,
    Window,
    Work,
    effective_due,
    overdue_days,
    plan_digest,
    plan_gap_report,
    plan_reminders,
    plan_window_ends,
    superiors_of,
    week_of,
    weekday_number,
)
from mailflow.core.model import Status
from mailflow.core.people import NO_REQUEST, holders_of
from mailflow.jobs.held import HeldOpenings
from mailflow.jobs.weekly import digest_of, watch_of
from mailflow.store.record import history_of
from mailflow.store.repository import (
    Store,
    claim_once,
    count_gaps_to_report,
    gaps_to_report,
)
from mailflow.store.requeststate import state_of
from mailflow.store.schedule import (
    claimed_epoch,
    claims_to_plan,
    open_with_due,
    request_by_id,
    windows_ended,
)
from mailflow.store.schema import HistoryRow, ReminderRow, RequestRow
from mailflow.store.threads import publication_urls
from mailflow.store.unitofwork import Session

log = logging.getLogger("mailflow.jobs.scheduler")

SYSTEM = "sistema"
PUBLISHER_ROLE = "administrador_rrss"
EPOCH_KEY = "scheduler:epoch"
# History actions of the system's own events, as `requests show` lists them.
HISTORY_ACTIONS = {
    Kind.REMINDER: "RECORDATORIO",
    Kind.ESCALATION: "ESCALAMIENTO",
    Kind.WINDOW_END: "FIN_VENTANA",
}


def rules_of(settings: Settings) -> Rules:
    """Return the scheduling rules of ``[schedule]``."""
    schedule = settings.schedule
    return Rules(
        reminder_time=schedule.reminder_time,
        reminders_before_escalation=schedule.reminders_before_escalation,
        digest_weekday=weekday_number(schedule.digest_weekday),
        digest_time=schedule.digest_time,
    )


class Scheduler:
    """Send what is due at a given moment; safe to call on every pass, by every daemon."""

    def __init__(
        self,
        settings: Settings,
        core: Core,
        store: Store,
        composer: Composer,
        held: HeldOpenings | None = None,
    ) -> None:
        """Schedule with the settings' ``[schedule]`` rules over ``store``.

        ``held`` reminds and expires the openings held for CONFIRMO on every pass too.
        """
        self.settings = settings
        self.core = core
        self.store = store
        self.composer = composer
        self.rules = rules_of(settings)
        self.held = held

    def run_due(self, now: datetime) -> dict[str, int]:
        """Do every piece of work due at ``now``; return how many of each kind were done.

        One failing piece is logged and retried on the next pass; it never stops the
        others, nor the daemon's intake.
        """
        try:
            plan = self.plan(now)
        except Exception:
            log.exception("the scheduler could not plan its work; retrying on the next pass")
            return {}
        done: Counter[str] = Counter()
        for work in plan:
            try:
                with self.store.transaction() as session:
                    if self._do(session, work, now):
                        done[work.kind.value] += 1
                        log.info("%s done", work.key, extra={"work": work.key})
            except Exception:
                log.exception(
                    "%s failed; retrying on the next pass", work.key, extra={"work": work.key}
                )
        if self.held is not None:
            try:
                done.update(self.held.run_due(now))
            except Exception:
                log.exception("held openings could not be checked; retrying on the next pass")
        return dict(done)

    def plan(self, now: datetime) -> list[Work]:
        """Return the work due at ``now`` that no pass has claimed yet."""
        calendar = self.core.calendar
        today = calendar.local(now).date()
        with self.store.transaction() as session:
            epoch = claimed_epoch(session, EPOCH_KEY, now)
            requests = open_with_due(session)
            claimed = claims_to_plan(
                session, week_of(today)[0], Kind.WINDOW_END.value, [r.id for r in requests]
            )
            ended = windows_ended(session, today)
            gaps = count_gaps_to_report(session)
        done = {c.key for c in claimed}
        watches = [self._watch(r, claimed) for r in requests]
        windows = [Window(i, code, until) for i, code, until in ended if until is not None]
        rules = self.rules
        digest = plan_digest(calendar, rules, now, epoch=epoch, done=done)
        gap_report = plan_gap_report(calendar, rules, now, epoch=epoch, waiting=gaps, done=done)
        return [
            *plan_reminders(watches, calendar, rules, now, epoch=epoch, done=done),
            *plan_window_ends(windows, calendar, rules, now, epoch=epoch, done=done),
            *([digest] if digest is not None else []),
            *([gap_report] if gap_report is not None else []),
        ]

    def _watch(self, row: RequestRow, claimed: Sequence[ReminderRow]) -> Watch:
        """Describe an open stage and what this visit of it already got."""
        entered = self.core.calendar.local(row.stage_entered_at).date()
        mine = [
            c
            for c in claimed
            if c.request_id == row.id
            and c.stage == row.stage
            and c.for_date is not None
            and c.for_date >= entered
        ]
        return replace(
            watch_of(row, self.core),
            reminders_sent=sum(1 for c in mine if c.kind == Kind.REMINDER.value),
            escalated=any(c.kind == Kind.ESCALATION.value for c in mine),
        )

    # -- doing one piece of work ---------------------------------------------------------

    def _do(self, session: Session, work: Work, now: datetime) -> bool:
        """Claim ``work`` and queue its mails; False when it is no longer due or was taken."""
        request = request_by_id(session, work.request_id) if work.request_id else None
        if work.kind in (Kind.REMINDER, Kind.ESCALATION) and (
            request is None or request.status != Status.EN_CURSO or request.stage != work.stage
        ):
            return False  # acted upon since the plan was made
        for index, (key, kind) in enumerate(work.claims):
            took = claim_once(
                session,
                key,
                kind=kind.value,
                now=now,
                request_id=work.request_id,
                stage=work.stage,
                for_date=work.day,
            )
            if not took and index == 0:
                return False
        if work.kind is Kind.DIGEST:
            self._digest(session, now)
            return True
        if work.kind is Kind.GAP_REPORT:
            self._gap_report(session, now)
            return True
        assert request is not None
        if work.kind is Kind.WINDOW_END:
            note = self._window_end(session, request, now)
        else:
            note = self._overdue(session, request, work, now)
        session.add(
            HistoryRow(
                request_id=request.id,
                at=now,
                actor=SYSTEM,
                action=HISTORY_ACTIONS[work.kind],
                stage=request.stage,
                note=note,
            )
        )
        return True

    def _overdue(self, session: Session, request: RequestRow, work: Work, now: datetime) -> str:
        """Queue a reminder (or an escalation) for an overdue stage; return the history note."""
        calendar = self.core.calendar
        state = state_of(request)
        voted = {v.address.casefold() for v in state.votes}
        people = [a for a in self.core.workflow.assignees(state, now) if a.casefold() not in voted]
        procedure = self.core.workflow.procedure(request.procedure)
        stage = procedure.stages[request.stage]
        due = effective_due(watch_of(request, self.core), calendar)
        assert due is not None
        today = calendar.local(now).date()
        late = overdue_days(calendar, due, today)
        superiors: tuple[str, ...] = ()
        if work.kind is Kind.ESCALATION:
            superiors = superiors_of(self.core.directory, state.roles, state, today, exclude=people)
        info = {
            "number": work.number,
            "limit": self.rules.reminders_before_escalation,
            "overdue_days": late,
            "assignees": people,
            "superiors": list(superiors),
        }
        material = self._material(session, request)
        shown, files = material.view(attach=True)  # the assignees still have to act
        context = mail_context(
            {**request_context(request, procedure, self.settings.zone), "due": calendar.local(due)},
            **shown,
            cronograma=self._cronograma(request),
            actions=actions_of(procedure, stage),
            reminder=info,
            history=[],
        )
        if superiors:
            history = self._history(session, request)
            listed = material.view(attach=False)[0]
            told = {**context, **listed, "actions": [], "fyi": True, "history": history}
            # The superiors cannot act on the stage: their copy is informative and carries
            # the history; the assignees' copy keeps the keywords (and the files).
            for version, readers, carried in (
                (told, superiors, ()),
                (context, tuple(people), files),
            ):
                self._mail(
                    session,
                    request,
                    "escalation",
                    to=superiors,
                    cc=people,
                    context=version,
                    now=now,
                    deliver_to=readers,
                    files=carried,
                )
            return (
                f"Plazo vencido hace {late} día(s) hábil(es), tras {work.number - 1} "
                f"recordatorio(s): se informó a {', '.join(superiors)} (copia a "
                f"{', '.join(people) or 'nadie'})."
            )
        self._mail(session, request, "reminder", to=people, context=context, now=now, files=files)
        return (
            f"Recordatorio {work.number}: plazo vencido hace {late} día(s) hábil(es); "
            f"enviado a {', '.join(people) or 'nadie (rol sin titular)'}."
        )

    def _window_end(self, session: Session, request: RequestRow, now: datetime) -> str:
        """Ask the administrator to withdraw or archive an expired post; return the note."""
        today = self.core.calendar.local(now).date()
        admins = holders_of(self.core.directory, (PUBLISHER_ROLE,), state_of(request), today)
        urls = publication_urls(session, request.id)
        procedure = self.core.workflow.procedure(request.procedure)
        # The administrator's last notice carries the published material, to find the post.
        shown, files = self._material(session, request).view(attach=True)
        context = mail_context(
            request_context(request, procedure, self.settings.zone), **shown, urls=urls, fyi=True
        )
        self._mail(session, request, "window_end", to=admins, context=context, now=now, files=files)
        return (
            f"Terminó el período de publicación (hasta el {request.publish_until}); se pidió "
            f"a {', '.join(admins) or 'nadie'} retirar o archivar la publicación."
        )

    def _digest(self, session: Session, now: datetime) -> None:
        """Queue the weekly digest to the ``digest_to`` roles."""
        today = self.core.calendar.local(now).date()
        to = holders_of(self.core.directory, self.settings.schedule.digest_to, NO_REQUEST, today)
        if not to:
            log.warning("the digest has no recipients: schedule.digest_to roles are empty")
            return
        context = mail_context(fyi=True, digest=digest_of(session, self.core, now))
        rows = self.composer.rows(
            "digest", to, (), context=context, code=None, stage=0, references=(), now=now,
            request_id=None,
        )  # fmt: skip
        session.add_all(rows)

    def _gap_report(self, session: Session, now: datetime) -> None:
        """Tell the ``gap_report_to`` people of the mail that vanished before it was read."""
        gaps = gaps_to_report(session)
        if not gaps:
            return
        today = self.core.calendar.local(now).date()
        to = self._people(self.settings.schedule.gap_report_to, today)
        if not to:
            log.warning(
                "%d vanished mail(s) not reported: schedule.gap_report_to is empty", len(gaps)
            )
            return
        zone = self.settings.zone
        imap = self.settings.imap
        context = mail_context(
            fyi=True,
            gaps={
                "count": len(gaps),
                "mailbox": imap.username,
                "folder": imap.folder,
                "since": gaps[0].noticed_at.astimezone(zone),
                "until": now.astimezone(zone),
                "entries": [{"uid": g.uid, "noticed": g.noticed_at.astimezone(zone)} for g in gaps],
            },
        )
        rows = self.composer.rows(
            "mailbox_gaps", to, (), context=context, code=None, stage=0, references=(), now=now,
            request_id=None,
        )  # fmt: skip
        session.add_all(rows)
        for gap in gaps:
            gap.reported_at = now

    def _people(self, names: Sequence[str], today: date) -> tuple[str, ...]:
        """Return the addresses of ``names``: role ids (their holders today) or addresses."""
        roles = tuple(n for n in names if "@" not in n)
        found = holders_of(self.core.directory, roles, NO_REQUEST, today) if roles else ()
        return tuple(dict.fromkeys([*found, *(n for n in names if "@" in n)]))

    def _history(self, session: Session, request: RequestRow) -> list[dict[str, Any]]:
        rows = history_of(session, request.id)
        return [
            {
                "at": h.at.astimezone(self.settings.zone),
                "actor": h.actor,
                "action": h.action,
                "stage": h.stage,
                "note": h.note or "",
            }
            for h in rows
        ]

    def _cronograma(self, request: RequestRow) -> list[dict[str, Any]]:
        procedure = self.core.workflow.procedure(request.procedure)
        return [
            {
                "stage": number,
                "name": procedure.stages[number].name if number in procedure.stages else "",
                "date": day,
            }
            for number, day in state_of(request).cronograma
        ]

    def _mail(
        self,
        session: Session,
        request: RequestRow,
        template: str,
        *,
        to: Sequence[str],
        cc: Sequence[str] = (),
        context: dict[str, Any],
        now: datetime,
        deliver_to: Sequence[str] | None = None,
        files: Sequence[RequestFile] = (),
    ) -> None:
        """Queue ``template`` about ``request`` in the request's thread, carrying ``files``."""
        if not to and not cc:
            return
        rows = self.composer.rows(
            template,
            to,
            cc,
            context=context,
            code=request.code,
            stage=request.stage,
            references=[request.thread_message_id or ""],
            now=now,
            request_id=request.id,
            deliver_to=deliver_to,
            files=files,
        )
        session.add_all(rows)

    def _material(self, session: Session, request: RequestRow) -> Material:
        """Return the files and observations of ``request``, as its mails show them."""
        return material_of(
            session,
            request,
            self.core.workflow.procedure(request.procedure),
            self.composer.archive,
            zone=self.settings.zone,
            limit=self.settings.mail.attach_max_bytes,
        )
