"""Run requests through their procedure: ``advance(state, event, now) -> (state, effects)``.

Like h11's ``_state.py``, everything that moves a request lives here and the moves are data:
each stage's ``transitions`` table (from the procedure TOML) says which actions it accepts and
where each leads. An event the table does not allow raises a :class:`WorkflowError` subclass
and changes nothing; the caller keeps its old state. The engine does no I/O: the directory,
calendar and ``now`` are inputs, and its outputs are effect values for the shell to carry out.

Decisions worth knowing:

* The request mail itself performs stage 1 (the procedure's ``opening_action``).
* A stage with several roles (profesional + equipo de diseño) completes on the first accepted
  action of a holder of any of them; alternatives (jefatura solicitante *or* Comité) are
  chosen by the incoming transition, and only the chosen role may act.
* A role with a quorum (the Comité) votes: each holder's latest answer counts; the first
  action to reach the threshold wins; when approval can no longer reach it, the request goes
  back with the observations (OBSERVO, or RECHAZO where the stage does not accept OBSERVO).
  Every RECHAZO vote is reported at once to the stage's ``rechazo_report_to`` roles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime

from mailflow.core.calendar import BusinessCalendar
from mailflow.core.conversation import promised_mails
from mailflow.core.model import (
    Action,
    ActionTaken,
    DeadlineKind,
    Effect,
    Event,
    Procedure,
    Quorum,
    RecordHistory,
    RecordPublication,
    RequestOpened,
    RequestState,
    SendMail,
    SetDue,
    Stage,
    Status,
    Transition,
    Vote,
)
from mailflow.core.people import (
    JEFATURA_SOLICITANTE,
    SOLICITANTE,
    Directory,
    holders_of,
    may_act,
)
from mailflow.errors import MailflowError

Outcome = tuple[RequestState, tuple[Effect, ...]]

# Which mail tells the requester how the request ended.
_END_TEMPLATES = {
    Status.PUBLICADO: "published",
    Status.RECHAZADO: "rejected",
    Status.ELIMINADO: "action_recorded",
    Status.CANCELADO: "cancelled",
}
# When a quorum is split, the first of these to reach the threshold wins.
_PRECEDENCE = (Action.APRUEBO, Action.APRUEBO_COMITE, Action.RECHAZO, Action.OBSERVO)


class WorkflowError(MailflowError):
    """Refuse an event; nothing changed. ``template`` is the reply the sender may get."""

    template = "help"


class UnknownProcedureError(WorkflowError):
    """The request names a procedure that is not loaded."""


class RequestClosedError(WorkflowError):
    """The request already ended (published, rejected, cancelled, deleted)."""


class IllegalActionError(WorkflowError):
    """The current stage does not accept this action."""

    def __init__(self, stage: int, action: Action, accepted: tuple[Action, ...]) -> None:
        self.stage, self.action, self.accepted = stage, action, accepted
        names = ", ".join(a.value for a in accepted)
        super().__init__(f"stage {stage} does not accept {action.value} (accepts: {names})")


class MissingReasonError(WorkflowError):
    """RECHAZO and OBSERVO need a reason or suggestions in the text."""


class UnauthorizedError(WorkflowError):
    """The sender does not hold the stage's role; ``notify`` are its holders' addresses."""

    template = "unauthorized"

    def __init__(self, reason: str, notify: tuple[str, ...]) -> None:
        self.reason, self.notify = reason, notify
        super().__init__(reason)


def decide(
    votes: Iterable[Vote], seats: int, quorum: Quorum, accepted: Iterable[Action]
) -> Action | None:
    """Return the action a collegiate role has decided, or None while it has not."""
    votes = tuple(votes)
    accepted = tuple(accepted)
    extra = [a for a in accepted if a not in _PRECEDENCE]
    threshold = quorum.threshold(seats)
    counts = Counter(v.action for v in votes)
    order = [a for a in _PRECEDENCE if a in accepted] + extra
    for action in order:
        if counts[action] >= threshold:
            return action
    approvals = counts[Action.APRUEBO] + counts[Action.APRUEBO_COMITE]
    undecided = max(seats - len(votes), 0)
    if approvals + undecided < threshold:
        # Approval is out of reach: return it with every observation, the gentler outcome.
        return Action.OBSERVO if Action.OBSERVO in accepted else Action.RECHAZO
    return None


@dataclass(frozen=True)
class Workflow:
    """Bind the loaded procedures, directory and calendar; every method is pure."""

    procedures: Mapping[str, Procedure]
    directory: Directory
    calendar: BusinessCalendar
    cronograma_default_days: int = 5
    # Who may withdraw a request (ANULO); not in the manual, which has no cancellation.
    cancel_roles: tuple[str, ...] = (SOLICITANTE, JEFATURA_SOLICITANTE, "direccion_ejecutiva")

    def advance(self, state: RequestState | None, event: Event, now: datetime) -> Outcome:
        """Apply ``event`` at ``now``: open a request (state None) or act on its stage."""
        if isinstance(event, RequestOpened):
            if state is not None:
                raise WorkflowError("a request is opened only once")
            return self.start(event, now)
        if state is None:
            raise WorkflowError(f"{event.action.value} needs an open request")
        return self.act(state, event, now)

    def start(self, event: RequestOpened, now: datetime) -> Outcome:
        """Open a request; its mail performs stage 1's ``opening_action``."""
        today = self._today(now)
        procedure = self.procedure(event.procedure)
        first = procedure.first
        state = RequestState(
            procedure=procedure.id,
            stage=first.number,
            roles=first.roles,
            requester=event.requester,
            unit=event.unit,
            entered_at=now,
            cronograma=event.cronograma,
        )
        decision = may_act(self.directory, event.requester, procedure.started_by, state, today)
        if not decision.allowed:
            raise UnauthorizedError(decision.reason, notify=())
        opening = ActionTaken(
            event.requester, procedure.opening_action, event.text, event.cronograma, event.urls
        )
        step = _Step(procedure, state, opening, now)
        new, effects = self._take(step, first.transitions[procedure.opening_action], confirm=False)
        context = self._context(step, first, None)
        if new.status is Status.EN_CURSO:
            # The acknowledgement lists every mail the requester will get, no more.
            context["promised"] = "\n".join(promised_mails(procedure, self.directory, new, today))
            withdraw = may_act(self.directory, event.requester, self.cancel_roles, new, today)
            context["may_withdraw"] = "1" if withdraw.allowed else ""
        ack = SendMail("acknowledgement", (event.requester,), stage=first.number, context=context)
        return new, (ack, *effects)

    def act(self, state: RequestState, event: ActionTaken, now: datetime) -> Outcome:
        """Apply one person's answer to the request's current stage, or raise."""
        today = self._today(now)
        procedure = self.procedure(state.procedure)
        stage = procedure.stages.get(state.stage)
        if state.status is not Status.EN_CURSO or stage is None:
            raise RequestClosedError(f"the request is {state.status.value}")
        transition = stage.transitions.get(event.action)
        if transition is None:
            raise IllegalActionError(stage.number, event.action, stage.actions)
        if event.action.needs_reason and not event.text.strip():
            raise MissingReasonError(f"{event.action.value} needs a reason")
        decision = may_act(self.directory, event.actor, state.roles, state, today)
        if not decision.allowed or decision.role is None:
            holders = holders_of(self.directory, state.roles, state, today)
            raise UnauthorizedError(decision.reason, notify=holders)
        step = _Step(procedure, state, event, now)
        role = self.directory.roles.get(decision.role)
        if role is not None and role.quorum is not None:
            return self._vote(step, decision.role, role.quorum)
        return self._take(step, transition, confirm=True)

    def cancel(
        self,
        state: RequestState,
        actor: str,
        reason: str,
        now: datetime,
        *,
        operator: bool = False,
    ) -> Outcome:
        """Withdraw an open request (ANULO); ``operator`` skips the role check (the CLI).

        The requester, the withdrawer and the stage's current holders are told; the
        request keeps its stage, so its history shows where it stopped.
        """
        today = self._today(now)
        if state.status is not Status.EN_CURSO:
            raise RequestClosedError(f"the request is {state.status.value}")
        if not operator:
            decision = may_act(self.directory, actor, self.cancel_roles, state, today)
            if not decision.allowed:
                raise UnauthorizedError(decision.reason, notify=(state.requester,))
        new = replace(state, status=Status.CANCELADO, due=None, votes=())
        procedure = self.procedure(state.procedure)
        stage = procedure.stages[state.stage]
        context = {**_describe(procedure, stage), "actor": actor, "text": reason}
        to = self._people((SOLICITANTE,), state, now)
        if not operator:
            to = _without((actor,), to) + to
        holders = self._people(state.roles, state, now)
        return new, (
            RecordHistory(now, actor, Status.CANCELADO.value.upper(), state.stage, reason),
            SetDue(state.stage, None),
            SendMail(
                _END_TEMPLATES[Status.CANCELADO],
                to,
                _without(holders, to),
                stage=state.stage,
                context=context,
            ),
        )

    def procedure(self, procedure_id: str) -> Procedure:
        """Return a loaded procedure or raise UnknownProcedureError."""
        try:
            return self.procedures[procedure_id]
        except KeyError:
            raise UnknownProcedureError(f"unknown procedure {procedure_id!r}") from None

    def assignees(self, state: RequestState, now: datetime) -> tuple[str, ...]:
        """Return who must act on the request's current stage at ``now``."""
        return self._people(state.roles, state, now)

    def _today(self, now: datetime) -> date:
        return self.calendar.local(now).date()

    def _people(self, roles: Iterable[str], state: RequestState, now: datetime) -> tuple[str, ...]:
        return holders_of(self.directory, roles, state, self._today(now))

    def _vote(self, step: _Step, role_id: str, quorum: Quorum) -> Outcome:
        event, state, stage = step.event, step.state, step.stage
        mine = event.actor.strip().casefold()
        votes = (
            *(v for v in state.votes if v.address.strip().casefold() != mine),
            Vote(event.actor, event.action, event.text),
        )
        seats = len(self._people((role_id,), state, step.now))
        context = self._context(step, stage, state.due)
        effects: list[Effect] = [step.history()]
        if event.action is Action.RECHAZO and stage.rechazo_report_to:
            to = self._people(stage.rechazo_report_to, state, step.now)
            report = {**context, "event": "rechazo_comite"}
            effects.append(SendMail("action_recorded", to, stage=stage.number, context=report))
        outcome = decide(votes, seats, quorum, stage.actions)
        if outcome is None:
            ballot = {**context, "event": "voto_registrado"}
            effects.append(
                SendMail("action_recorded", (event.actor,), stage=stage.number, context=ballot)
            )
            return replace(state, votes=votes), tuple(effects)
        text = "\n".join(f"{v.address}: {v.text}" for v in votes if v.action is outcome and v.text)
        decided = replace(step, event=replace(event, action=outcome, text=text or event.text))
        note = f"quorum {quorum.value}: {sum(v.action is outcome for v in votes)} de {seats}"
        effects.append(RecordHistory(step.now, role_id, outcome.value, stage.number, note))
        new, more = self._take(decided, stage.transitions[outcome], confirm=True, record=False)
        return new, (*effects, *more)

    def _take(
        self, step: _Step, transition: Transition, *, confirm: bool, record: bool = True
    ) -> Outcome:
        event, state = step.event, step.state
        effects: list[Effect] = [step.history()] if record else []
        state = replace(state, cronograma=event.cronograma or state.cronograma, votes=())
        step = replace(step, state=state)
        if transition.end is not None:
            new, notices = self._finish(step, transition, transition.end)
        else:
            new, notices = self._enter(step, transition, step.procedure.stages[transition.to or 0])
        told = {a.casefold() for mail in notices if isinstance(mail, SendMail) for a in mail.to}
        if confirm and event.actor.casefold() not in told:
            context = self._context(step, step.stage, new.due)
            mail = SendMail("action_recorded", (event.actor,), stage=state.stage, context=context)
            notices = (*notices, mail)
        if confirm:
            notices = (*notices, *self._told_around(step, new, notices, quorum=not record))
        return new, (*effects, *notices)

    def _told_around(
        self, step: _Step, new: RequestState, notices: tuple[Effect, ...], *, quorum: bool
    ) -> tuple[SendMail, ...]:
        """Tell the stage's other holders it is done, and the requester where the stage asks.

        Several people may hold a stage (two roles, a substitute, a committee): when one
        acts, the others get a short "ya lo hizo" instead of waiting on a mail that no
        longer asks anything. A stage marked ``notify_requester`` tells the requester,
        unless this very step already mails them.
        """
        state, stage, event = step.state, step.stage, step.event
        reached = {
            a.casefold()
            for mail in notices
            if isinstance(mail, SendMail)
            for a in (*mail.to, *mail.cc)
        }
        reached.add(event.actor.casefold())
        context = {
            **self._context(step, stage, new.due),
            "status": new.status.value,
            "event": "quorum" if quorum else "",
        }
        mails: list[SendMail] = []
        others = [
            a for a in self._people(state.roles, state, step.now) if a.casefold() not in reached
        ]
        if others:
            # Signed for the stage they held: a late answer to it is about that stage.
            mails.append(SendMail("stage_done", tuple(others), stage=state.stage, context=context))
            reached.update(a.casefold() for a in others)
        requester = state.requester
        if stage.notify_requester and requester and requester.casefold() not in reached:
            mails.append(SendMail("progress", (requester,), stage=new.stage, context=context))
        return tuple(mails)

    def _enter(self, step: _Step, transition: Transition, target: Stage) -> Outcome:
        roles = (transition.role,) if transition.role else target.roles
        new = replace(step.state, stage=target.number, roles=roles, entered_at=step.now, due=None)
        new = replace(new, due=self._due(target, new, step.now))
        to = self._people(roles, new, step.now)
        cc = self._people((*target.cc, *transition.cc), new, step.now)
        template = (
            "observations_returned" if step.event.action is Action.OBSERVO else "action_needed"
        )
        context = {**self._context(step, target, new.due), "roles": ", ".join(roles)}
        return new, (
            SetDue(target.number, new.due),
            SendMail(template, to, _without(cc, to), stage=target.number, context=context),
        )

    def _finish(self, step: _Step, transition: Transition, end: Status) -> Outcome:
        new = replace(step.state, status=end, due=None)
        to = self._people(transition.notify or (SOLICITANTE,), new, step.now)
        cc = self._people(transition.cc, new, step.now)
        context = {**self._context(step, step.stage, None), "status": end.value}
        effects: list[Effect] = [SetDue(new.stage, None)]
        if step.event.urls:
            effects.append(RecordPublication(step.event.urls))
        mail = SendMail(_END_TEMPLATES[end], to, _without(cc, to), stage=new.stage, context=context)
        return new, (*effects, mail)

    def _due(self, stage: Stage, state: RequestState, now: datetime) -> datetime | None:
        rule = stage.deadline
        if rule.kind is DeadlineKind.BUSINESS_DAYS:
            return self.calendar.due_after(now, rule.days)
        if rule.kind is DeadlineKind.CRONOGRAMA:
            planned = dict(state.cronograma).get(stage.number)
            if planned is not None:
                return self.calendar.end_of_day(planned)
            return self.calendar.due_after(now, self.cronograma_default_days)
        return None

    def _context(self, step: _Step, stage: Stage, due: datetime | None) -> dict[str, str]:
        return {
            **_describe(step.procedure, stage),
            "action": step.event.action.value,
            "actor": step.event.actor,
            "text": step.event.text,
            "urls": " ".join(step.event.urls),
            "due": self.calendar.local(due).isoformat() if due is not None else "",
        }


@dataclass(frozen=True)
class _Step:
    """Bundle what every private step of :class:`Workflow` works on."""

    procedure: Procedure
    state: RequestState
    event: ActionTaken
    now: datetime

    @property
    def stage(self) -> Stage:
        return self.procedure.stages[self.state.stage]

    def history(self) -> RecordHistory:
        e = self.event
        return RecordHistory(self.now, e.actor, e.action.value, self.state.stage, e.text)


def _without(addresses: tuple[str, ...], present: tuple[str, ...]) -> tuple[str, ...]:
    """Return ``addresses`` minus those already in ``present`` (nobody gets a mail twice)."""
    seen = {a.casefold() for a in present}
    return tuple(a for a in addresses if a.casefold() not in seen)


def _describe(procedure: Procedure, stage: Stage) -> dict[str, str]:
    return {
        "procedure": procedure.id,
        "procedure_name": procedure.name,
        "stage": str(stage.number),
        "stage_name": stage.name,
        "roles": ", ".join(stage.roles),
    }
