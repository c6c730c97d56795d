"""Carry out what a reply about a request turned out to be: a note, an answer, a withdrawal.

:func:`mailflow.core.conversation.decide` sorts a reply; this module does what each verdict
means, inside the message's transaction, through the message's
:class:`~mailflow.app.effects.Applier`:

* a **note** (and a colleague's keyword, kept as a note) joins the request: a ``NOTA``
  history entry with its author, its files among the request's files, the current holders
  told (those who already got the mail itself excepted), the author confirmed in one line;
* a **repeat**, a **late** action and anything on an **ended** request get one short answer
  saying what was recorded, by whom and when, and nothing moves;
* **ANULO** withdraws the request (:meth:`mailflow.core.workflow.Workflow.cancel`), or is
  answered with why not;
* an **unproven** note or ANULO is kept in the archive only, and answered to its From
  address alone, without a reply token: its real owner learns of it, and a stranger who
  knows a code cannot obtain a token by writing.

Answers that could be provoked without proof, or repeated at will, take the daily caps of
:meth:`~mailflow.app.answers.Answers.once`; notes and their confirmations, like workflow
mails, are never capped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mailflow.app.answers import Answers
from mailflow.app.context import actions_of
from mailflow.app.effects import Applier, Handled, Reply, Tools
from mailflow.core.conversation import (
    NOTE,
    OPERATOR,
    Decision,
    Entry,
    Said,
    Verdict,
    Why,
)
from mailflow.core.model import Action, Status
from mailflow.core.names import STATUS_WORDS, role_words
from mailflow.core.people import address_key, holders_of, may_act
from mailflow.core.workflow import WorkflowError
from mailflow.errors import MailflowError
from mailflow.mail.parse import InboundMail
from mailflow.mail.replytext import ActionReading, Unclear, extract_new_text
from mailflow.mail.thanks import is_thanks
from mailflow.store.record import request_locked
from mailflow.store.repository import Store
from mailflow.store.requeststate import state_of, store_state
from mailflow.store.schema import HistoryRow, InboundOutcome, InboundRow, RefusalRow, RequestRow
from mailflow.store.threads import latest_note, publication_urls

# A note is kept whole up to this many characters (the archived mail keeps everything).
NOTE_CHARS = 20_000
_ATTEMPTS = frozenset({Unclear.NEGATED, Unclear.QUESTION, Unclear.CONDITIONAL})


def said_in(mail: InboundMail, reading: ActionReading) -> Said:
    """Return what a reply says, for :func:`mailflow.core.conversation.decide`."""
    text = extract_new_text(mail.text)[:NOTE_CHARS]
    return Said(
        sender=mail.from_address,
        action=reading.action,
        text=text,
        files=sum(1 for part in mail.attachments if part.is_material),
        attempted=reading.unclear in _ATTEMPTS,
        thanks=is_thanks(text),
    )


class Conversation:
    """Carry out one reply's verdict on one (locked) request."""

    def __init__(self, applier: Applier, request: RequestRow) -> None:
        self.applier = applier
        self.request = request
        self.answers = Answers(applier)
        self.now = applier.now

    @property
    def sender(self) -> str:
        return self.applier.mail.from_address

    def keep_files(self, said: Said) -> list[str]:
        """Keep the files of a reply that changes nothing (a repeat, a late or refused
        action) as a note of the request, so nothing sent is dropped; return their names."""
        if not said.files:
            return []
        self._record_note(said.text)
        return [row.filename for row in self.applier.store_attachments(self.request)]

    def carry(self, decision: Decision, said: Said, action: Action | None) -> Handled:
        """Do what ``decision`` says and return the message's outcome."""
        verdict = decision.verdict
        keyword = action.value if action is not None else ""
        if verdict is Verdict.THANKS:
            return self._handled(InboundOutcome.PROCESSED, "thanks: archived, not answered")
        if verdict is Verdict.NOTE:
            return self._note(said, "nota")
        if verdict is Verdict.COLLEAGUE:
            return self._note(said, "colega", entry=decision.entry, keyword=keyword)
        if verdict is Verdict.CLOSED:
            return self._closed(said, keyword)
        if verdict is Verdict.REPEAT:
            return self._repeat(decision.entry, keyword, self.keep_files(said))
        if verdict is Verdict.LATE:
            return self._late(decision.entry, keyword, self.keep_files(said))
        if verdict is Verdict.WITHDRAW:
            return self._withdraw(said)
        if verdict is Verdict.NOT_WITHDRAWN:
            return self._not_withdrawn(decision.why or Why.NOT_ALLOWED)
        return self.unproven(keyword, decision.why)

    # -- notes ------------------------------------------------------------------------

    def _note(
        self, said: Said, event: str, *, entry: Entry | None = None, keyword: str = ""
    ) -> Handled:
        """Add the reply to the request as a note; tell the holders and its author."""
        request, session = self.request, self.applier.session
        last = latest_note(session, request.id, self.sender)
        again = last is not None and last.action == NOTE and (last.note or "") == said.text
        if last is not None and again and not said.files:  # the same note, another Message-ID
            return self._repeat(Entry(last.at, last.actor, NOTE, last.stage), NOTE)
        self._record_note(said.text)
        files = [row.filename for row in self.applier.store_attachments(request)]
        holders = self._holders()
        told = self._forward(said.text, files, holders, keyword)
        mine = address_key(self.sender) in {address_key(h) for h in holders}
        context = self._context(
            event,
            note=said.text,
            note_files=files,
            action=keyword,
            holders=list(holders),
            told=told,
            past=self._past(entry),
            actions=self._actions() if mine and event == "nota" else [],
        )
        self.applier.queue_mail("noted", [self.sender], context, request)
        return self._handled(InboundOutcome.PROCESSED, f"{event}: note added")

    def _record_note(self, text: str) -> None:
        request = self.request
        self.applier.session.add(
            HistoryRow(
                request_id=request.id,
                at=self.now,
                actor=self.sender,
                action=NOTE,
                stage=request.stage,
                to_stage=request.stage,
                note=text or None,
                inbound_id=self.applier.ledger.id,
            )
        )

    def _forward(
        self, text: str, files: list[str], holders: Sequence[str], keyword: str
    ) -> list[str]:
        """Send the note to the current holders who did not get the mail itself."""
        mail = self.applier.mail
        reached = {address_key(a) for a in (*mail.to, *mail.cc, self.sender)}
        to = [h for h in holders if address_key(h) not in reached]
        if to:
            context = self._context(
                "nota", note=text, note_files=files, actor=self.sender, action=keyword
            )
            context["actions"] = self._actions()
            # The holders must act on the stage: the note's files come first among those
            # the mail carries, as in any mail that asks someone to act.
            shown, attached = self.applier.material(self.request).view(attach=True)
            context.update(shown)
            self.applier.queue_mail("note", to, context, self.request, files=attached)
        return to

    def _closed(self, said: Said, keyword: str) -> Handled:
        """Answer once with the outcome; what is more than a keyword is kept as a note."""
        kept = not keyword and bool(said.text.strip() or said.files)
        files: list[str] = []
        if kept:
            self._record_note(said.text)
            files = [row.filename for row in self.applier.store_attachments(self.request)]
        if self.answers.once(f"closed-{self.request.code}", self.sender):
            context = self._context("cerrada", note=said.text, note_files=files, action=keyword)
            context["kept"] = kept
            self.applier.queue_mail("noted", [self.sender], context, self.request)
        return self._handled(InboundOutcome.PROCESSED, "the request has ended: outcome told")

    # -- actions that change nothing ----------------------------------------------------

    def _repeat(self, entry: Entry | None, keyword: str, files: Sequence[str] = ()) -> Handled:
        """Say "ya registrado el …" once a day for the same stage and action."""
        stage = entry.stage if entry is not None else self.request.stage
        if entry is not None and self.answers.once(
            f"repeat-{self.request.code}", self.sender, f"{stage}:{keyword}"
        ):
            context = self._context(
                "repetida", action=keyword, past=self._past(entry), note_files=list(files)
            )
            self.applier.queue_mail("noted", [self.sender], context, self.request)
        return self._handled(InboundOutcome.DUPLICATE, f"repeat of {keyword} at stage {stage}")

    def _late(self, entry: Entry | None, keyword: str, files: Sequence[str] = ()) -> Handled:
        """Tell a holder who acts after another holder decided the stage who did, and when."""
        assert entry is not None
        past = self._past(entry)
        when = entry.at.astimezone(self.applier.settings.zone)
        reason = (
            f"la etapa {entry.stage} ya la resolvió {entry.actor} ({entry.action}) "
            f"el {when:%d/%m/%Y %H:%M}"
        )
        self._refuse(keyword, reason, entry.stage)
        if self.answers.once(f"late-{self.request.code}", self.sender, str(entry.stage)):
            context = self._context("tardia", action=keyword, past=past, note_files=list(files))
            self.applier.queue_mail("noted", [self.sender], context, self.request)
        return self._handled(InboundOutcome.PROCESSED, f"late {keyword}: {reason}")

    # -- withdrawal -------------------------------------------------------------------

    def _withdraw(self, said: Said) -> Handled:
        """Cancel the request on its requester's (or unit head's, or DE's) ANULO."""
        request = self.request
        reason = _reason(said)
        try:
            state, effects = self.applier.core.workflow.cancel(
                state_of(request), self.sender, reason, self.now
            )
        except WorkflowError:
            return self._not_withdrawn(Why.NOT_ALLOWED)
        store_state(request, state, self.now)
        self.applier.apply(request, effects, Reply(Action.ANULO.value, reason, ()))
        return self._handled(InboundOutcome.PROCESSED, "ANULO accepted: cancelled")

    def _not_withdrawn(self, why: Why) -> Handled:
        request = self.request
        if why is Why.NOT_ALLOWED:
            self._refuse(Action.ANULO.value, "no puede anular esta solicitud", request.stage)
        if self.answers.once(f"anulo-{request.code}", self.sender):
            context = self._context("anulo_denegado", action=Action.ANULO.value)
            context["why"] = why.value
            context["urls"] = publication_urls(self.applier.session, request.id)
            context["shared"] = self.applier.settings.smtp.from_address
            core = self.applier.core
            context["withdrawers"] = role_words(core.directory, core.workflow.cancel_roles)
            self.applier.queue_mail("noted", [self.sender], context, request)
        outcome = (
            InboundOutcome.UNAUTHORIZED if why is Why.NOT_ALLOWED else InboundOutcome.PROCESSED
        )
        return self._handled(outcome, f"ANULO refused: {why.value}")

    # -- unproven ---------------------------------------------------------------------

    def unproven(self, keyword: str, why: Why | None = None) -> Handled:
        """Keep an unproven note, ANULO or ARCHIVOS in the archive; tell only its From address.

        The answer carries no reply token (a stranger who knows a code must not obtain
        one by writing) and no detail of the request beyond its code.
        """
        request, applier = self.request, self.applier
        if keyword:
            self._refuse(keyword, "el remitente no está verificado", request.stage)
        if self.answers.once(f"unverified-{request.code}", self.sender):
            context = {
                **self._context("no_verificada", action=keyword),
                "request": None,
                "code": request.code,
                "sender": self.sender,
                "stranger": why is Why.STRANGER,
            }
            rows = self.applier.tools.composer.rows(
                "unverified",
                [self.sender],
                [],
                context=context,
                code=None,
                stage=0,
                references=[applier.mail.message_id],
                now=self.now,
                request_id=request.id,
            )
            applier.session.add_all(rows)
        return self._handled(InboundOutcome.UNAUTHORIZED, f"unproven {keyword or 'note'}")

    # -- helpers ----------------------------------------------------------------------

    def _refuse(self, action: str, reason: str, stage: int) -> None:
        self.applier.session.add(
            RefusalRow(
                request_id=self.request.id,
                at=self.now,
                sender=self.sender,
                action=action[:32],
                stage=stage,
                reason=reason,
                inbound_id=self.applier.ledger.id,
            )
        )

    def _holders(self) -> tuple[str, ...]:
        request = self.request
        if request.status != Status.EN_CURSO:
            return ()
        core = self.applier.core
        today = core.calendar.local(self.now).date()
        return holders_of(core.directory, request.stage_roles, state_of(request), today)

    def _actions(self) -> list[dict[str, str]]:
        procedure = self.applier.core.workflow.procedure(self.request.procedure)
        stage = procedure.stages.get(self.request.stage)
        return actions_of(procedure, stage) if stage is not None else []

    def _past(self, entry: Entry | None) -> dict[str, Any] | None:
        if entry is None:
            return None
        procedure = self.applier.core.workflow.procedure(self.request.procedure)
        stage = procedure.stages.get(entry.stage)
        return {
            "actor": entry.actor,
            "action": entry.action,
            "stage": entry.stage,
            "stage_name": stage.name.rstrip(". ") if stage is not None else "",
            "at": entry.at.astimezone(self.applier.settings.zone),
        }

    def _context(self, event: str, **extra: Any) -> dict[str, Any]:
        request = self.request
        core = self.applier.core
        today = core.calendar.local(self.now).date()
        withdraw = may_act(
            core.directory, self.sender, core.workflow.cancel_roles, state_of(request), today
        )
        base = {
            "event": event,
            "note_files": [],
            "holders": list(self._holders()),
            "told": [],
            "past": None,
            "kept": False,
            "why": "",
            "shared": "",
            "status_word": STATUS_WORDS.get(Status(request.status), request.status),
            "may_withdraw": withdraw.allowed and request.status == Status.EN_CURSO,
            "withdrawers": "",
        }
        return self.applier.context_for(request, **{**base, **extra})

    def _handled(self, outcome: str, detail: str) -> Handled:
        return Handled(outcome, self.request.code, detail)


def _reason(said: Said) -> str:
    """Return the motive written after ANULO (the keyword itself left out)."""
    text = said.text.strip()
    first, _, rest = text.partition("\n")
    words = first.split(maxsplit=1)
    head = words[1] if len(words) > 1 else ""
    return "\n".join(p for p in (head.lstrip(" :,.-").rstrip(), rest.strip()) if p)[:2000]


def cancel_by_operator(store: Store, tools: Tools, code: str, reason: str, now: datetime) -> str:
    """Withdraw request ``code`` for the operator (``mailflow requests cancel``).

    Recorded as the operator's (:data:`~mailflow.core.conversation.OPERATOR`); the
    requester and the stage's holders are told as for an ANULO. Raise MailflowError,
    in Spanish, when there is nothing to withdraw.
    """
    with store.transaction() as session, tools.archive.batch():
        request = request_locked(session, code.strip().upper())
        if request is None:
            raise MailflowError(f"no existe la solicitud {code}; vea `mailflow requests list`")
        status = Status(request.status)
        if status is Status.PUBLICADO:
            raise MailflowError(
                f"la solicitud {request.code} ya fue publicada y no se puede anular; para "
                "retirar la publicación, la Dirección Ejecutiva envía una solicitud de "
                "eliminación"
            )
        if status is not Status.EN_CURSO:
            raise MailflowError(
                f"la solicitud {request.code} ya terminó ({STATUS_WORDS[status]}); no hay "
                "nada que anular"
            )
        # No inbound message behind it: the history entry names no ledger row.
        applier = Applier(tools, session, InboundRow(), InboundMail(), now)
        state, effects = tools.core.workflow.cancel(
            state_of(request), OPERATOR, reason, now, operator=True
        )
        store_state(request, state, now)
        applier.apply(request, effects, Reply(Action.ANULO.value, reason, ()))
        return request.code
