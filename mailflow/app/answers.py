"""Answer people whose mail changes nothing: help, refusals, unauthorized notices.

Each answer is rate-limited per address, kind and day, as Discourse does, so a
misbehaving client (or a forger using someone's address) can never make us flood
anybody: :meth:`Answers.once` claims the answer, within :data:`MAX_ANSWERS_PER_DAY` daily
slots per address and family. The mails are queued through the message's
:class:`~mailflow.app.effects.Applier`, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailflow.app.context import mail_context, request_context
from mailflow.app.effects import Applier, Handled
from mailflow.core.people import holders_of
from mailflow.mail.intake import Intake, request_form
from mailflow.store.repository import claim_once
from mailflow.store.requeststate import state_of
from mailflow.store.schema import InboundOutcome, RefusalRow, RequestRow

# At most this many help mails, and as many unauthorized notices, to one address a day.
MAX_ANSWERS_PER_DAY = 5


class Answers:
    """Compose the answers to one inbound message that change nothing of a request."""

    def __init__(self, applier: Applier) -> None:
        self.applier = applier

    def _once(self, kind: str, address: str, extra: str = "") -> bool:
        """Claim the one answer of this kind and detail to ``address`` today, within its cap.

        The detail (the problems, the request code) lets a person who makes a new mistake
        hear about it, but it also let a sender who varies it (a forged From, a hundred
        request codes) make us mail one address without limit: every answer also takes one
        of :data:`MAX_ANSWERS_PER_DAY` daily slots of the address, per family.
        """
        today = self.applier.core.calendar.local(self.applier.now).date()
        address = address.lower()
        key = f"{kind}:{address}:{extra}:{today.isoformat()}"[:255]
        # kind is a String(32) column: a long request code used to overflow it (PostgreSQL).
        if not claim_once(
            self.applier.session, key, kind=kind[:32], now=self.applier.now, for_date=today
        ):
            return False
        family = kind.partition("-")[0]
        return any(
            claim_once(
                self.applier.session,
                f"cap-{family}:{today.isoformat()}:{slot}:{address}"[:255],
                kind=f"cap-{family}"[:32],
                now=self.applier.now,
                for_date=today,
            )
            for slot in range(MAX_ANSWERS_PER_DAY)  # any() stops at the first free slot
        )

    def once(self, kind: str, address: str, extra: str = "") -> bool:
        """Claim the one answer of ``kind`` (and ``extra``) to ``address`` today, within its cap."""
        return self._once(kind, address, extra)

    def help(self, kind: str, problems: list[str], *, form: str = "") -> Handled:
        """Answer the sender once a day per kind with what could not be understood."""
        sender = self.applier.mail.from_address
        if self._once(f"help-{kind}", sender, "|".join(sorted(problems))[:120]):
            context = mail_context(
                problems=problems, form=form, original_subject=self.applier.mail.subject
            )
            self.applier.outbox("help", [sender], [], context, None, stage=0)
        return Handled(InboundOutcome.FORMAT_ERROR, detail="; ".join(problems))

    def ask_confirmation(self, code: str, context: dict[str, Any]) -> bool:
        """Mail the sender a tokened request to answer CONFIRMO, within the daily cap.

        The token is signed for the From address: only its real owner reads the mail,
        so only they can answer with it. A forger sending many openings in someone's
        name makes us write to that person at most :data:`MAX_ANSWERS_PER_DAY` times.
        """
        sender = self.applier.mail.from_address
        if not self._once("confirm", sender, code):
            return False
        self._to_sender_pending("confirm_opening", mail_context(**context), code)
        return True

    def _to_sender_pending(self, template: str, context: dict[str, Any], pending: str) -> None:
        """Answer the sender about a request that does not exist yet.

        ``pending`` (a confirmation pseudo-code) signs the reply token, so the sender's
        answer finds this mail again; it stays out of the subject.
        """
        rows = self.applier.tools.composer.rows(
            template,
            [self.applier.mail.from_address],
            [],
            context=context,
            code=pending,
            stage=0,
            references=[self.applier.mail.message_id],
            now=self.applier.now,
            request_id=None,
            show_code=False,
        )
        self.applier.session.add_all(rows)

    def help_for_request(self, request: RequestRow, why: str) -> Handled:
        """Tell the sender no action was read, with the keywords the stage accepts."""
        procedure = self.applier.core.workflow.procedure(request.procedure)
        stage = procedure.stages.get(request.stage)
        accepted = ", ".join(a.value for a in stage.actions) if stage else "ninguna"
        problem = (
            f"No encontramos una acción en su respuesta sobre {request.code} ({why}). "
            f"Escriba como primera palabra una de: {accepted}."
        )
        return self.help(f"noaction-{request.code}", [problem])

    def intake_problems(self, parsed: Intake, pending: str | None = None) -> Handled:
        """List exactly what is missing or wrong in a request, with a form to fill.

        ``pending`` is the pseudo-code (:func:`mailflow.core.routing.confirmation_code`)
        of the request's first mail: the help mail's token carries it, so that a reply
        completing the form is merged with that mail instead of starting over.
        """
        problems = [p.message for p in parsed.problems] or ["Falta el campo «Tipo»."]
        # The template prints ``form`` as the text to fill (it used to get ``True``).
        form = request_form(parsed)
        if pending is None:
            return self.help("intake", problems, form=form)
        sender = self.applier.mail.from_address
        if self._once("help-intake", sender, "|".join(sorted(problems))[:120]):
            context = mail_context(
                problems=problems, form=form, original_subject=self.applier.mail.subject
            )
            self._to_sender_pending("help", context, pending)
        return Handled(InboundOutcome.FORMAT_ERROR, detail="; ".join(problems))

    def not_allowed_to_start(self, parsed: Intake, reason: str) -> Handled:
        """Tell a sender who may not open this kind of request why, once a day."""
        directory = self.applier.core.directory
        sender = self.applier.mail.from_address
        known = any(sender in r.members for r in directory.roles.values()) or any(
            sender == u.head or sender in u.members for u in directory.units.values()
        )
        self.help("start", [f"No puede iniciar una solicitud de este tipo: {reason}."])
        outcome = InboundOutcome.UNAUTHORIZED if known else InboundOutcome.UNKNOWN_SENDER
        return Handled(outcome, detail=reason)

    def refused(
        self, request: RequestRow, action: str, reason: str, kept: Sequence[str] = ()
    ) -> Handled:
        """Record a refused action of a proven role holder and tell them why.

        ``kept``: the names of the mail's files, kept as a note all the same.
        """
        self._refusal(request, action, reason)
        problems = [f"{request.code}: {reason}"]
        if kept:
            problems.append(
                f"Los archivos de su mensaje ({', '.join(kept)}) quedaron entre los archivos "
                "de la solicitud."
            )
        return self.help(f"refused-{request.code}", problems)

    def unauthorized(
        self, request: RequestRow, action: str, reason: str, notify: Sequence[str] = ()
    ) -> Handled:
        """Record an unproven or unauthorized action; tell the real role holders once."""
        self._refusal(request, action, reason)
        holders = notify or holders_of(
            self.applier.core.directory,
            request.stage_roles,
            state_of(request),
            self.applier.core.calendar.local(self.applier.now).date(),
        )
        procedure = self.applier.core.workflow.procedure(request.procedure)
        context = mail_context(
            request_context(request, procedure, self.applier.settings.zone),
            sender=self.applier.mail.from_address,
            action=action,
            reason=reason,
        )
        fresh = [h for h in holders if self._once("unauthorized", h, request.code)]
        if fresh:
            self.applier.outbox("unauthorized", fresh, [], context, request, stage=request.stage)
        return Handled(InboundOutcome.UNAUTHORIZED, request.code, reason)

    def _refusal(self, request: RequestRow, action: str, reason: str) -> None:
        self.applier.session.add(
            RefusalRow(
                request_id=request.id,
                at=self.applier.now,
                sender=self.applier.mail.from_address,
                action=action[:32],
                stage=request.stage,
                reason=reason,
                inbound_id=self.applier.ledger.id,
            )
        )
