"""Carry out the engine's effects and the service's answers inside one transaction.

Effects become rows: history, publication links, attachments and outbox mails. Answers
to people (help, refusals, unauthorized notices) are rate-limited per address, kind and
day, as Discourse does, so a misbehaving client can never make us flood anybody.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mailflow.app.files import (
    Kept,
    Material,
    RequestFile,
    keep_files,
    limit_label,
    material_of,
    size_label,
)
from mailflow.app.products import record_product
from mailflow.app.views import actions_of, request_context
from mailflow.core.model import Effect, RecordHistory, RecordPublication, SendMail, Status
from mailflow.core.names import status_word
from mailflow.core.people import holders_of
from mailflow.mail.intake import Intake, request_form
from mailflow.mail.parse import InboundMail
from mailflow.mail.render import fecha
from mailflow.store.repository import claim_reminder
from mailflow.store.requeststate import state_of
from mailflow.store.schema import (
    AttachmentRow,
    HistoryRow,
    InboundOutcome,
    InboundRow,
    RefusalRow,
    RequestRow,
)
from mailflow.store.session import Session

if TYPE_CHECKING:
    from mailflow.app.service import Service

# The defaults of every template variable, so each context is complete (StrictUndefined).
_BLANK: dict[str, Any] = {
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


# At most this many help mails, and as many unauthorized notices, to one address a day.
MAX_ANSWERS_PER_DAY = 5
# At most this many files named in one notice of files not kept (a mail of 2,000 parts).
MAX_NAMED = 300


@dataclass(frozen=True)
class Handled:
    """What became of one message, for the log line and the caller."""

    outcome: str
    code: str | None = None
    detail: str = ""
    skipped: bool = False


@dataclass(frozen=True)
class Reply:
    """What the person's mail said, for history details and confirmations."""

    action: str
    text: str
    urls: tuple[str, ...]


class Applier:
    """Write the consequences of one inbound message into the open transaction."""

    def __init__(
        self,
        service: Service,
        session: Session,
        ledger: InboundRow,
        mail: InboundMail,
        now: datetime,
    ) -> None:
        self.service = service
        self.session = session
        self.ledger = ledger
        self.mail = mail
        self.now = now
        # The files and observations of the request being applied, read for its first mail.
        self._material: Material | None = None

    # -- accepted actions -------------------------------------------------------------

    def apply(self, request: RequestRow, effects: Iterable[Effect], reply: Reply) -> None:
        """Record history, links and attachments, and queue the mails of ``effects``."""
        effects = tuple(effects)
        # Stored first: the mails queued below carry (or list) the files just received.
        acted = next((e.stage for e in effects if isinstance(e, RecordHistory)), request.stage)
        kept = keep_files(
            self.session,
            self.service.archive,
            request,
            self.ledger,
            self.mail,
            stage=acted,
            now=self.now,
            limit=self.service.settings.mail.attach_max_bytes,
        )
        opening = reply.action == "SOLICITUD"
        self._material = None  # read again once this message's history rows are added
        last: HistoryRow | None = None
        published: tuple[HistoryRow, tuple[str, ...]] | None = None
        for effect in effects:
            if isinstance(effect, RecordHistory):
                last = HistoryRow(
                    request_id=request.id,
                    at=effect.at,
                    actor=effect.actor,
                    action=effect.action,
                    stage=effect.stage,
                    to_stage=request.stage,
                    note=effect.note or None,
                    inbound_id=self.ledger.id,
                )
                self.session.add(last)
            elif isinstance(effect, RecordPublication) and last is not None:
                last.details = {"urls": list(effect.urls)}
                published = (last, effect.urls)
            elif isinstance(effect, SendMail):
                self._queue(request, effect, opening=opening)
        self.tell_files_not_kept(request, kept)
        if published is not None:
            settings = self.service.settings
            record_product(
                self.session,
                request,
                published[0],
                procedure=self.service.core.workflow.procedure(request.procedure),
                mail_text=self.mail.text,
                reply_text=reply.text,
                urls=published[1],
                attachments=kept.listed,
                default_type=settings.poai.default_product_type,
            )

    def material(self, request: RequestRow) -> Material:
        """Return the files and observations of ``request``, as its mails show them."""
        service = self.service
        return material_of(
            self.session,
            request,
            service.core.workflow.procedure(request.procedure),
            service.archive,
            zone=service.settings.zone,
            limit=service.settings.mail.attach_max_bytes,
        )

    def tell_files_not_kept(self, request: RequestRow, kept: Kept) -> None:
        """Tell the sender, in one mail, which of their files did not join the request."""
        if not kept.refused and not kept.too_large:
            return
        procedure = self.service.core.workflow.procedure(request.procedure)
        shown = kept.refused[:MAX_NAMED]
        context = {
            **_BLANK,
            "request": request_context(request, procedure, self.service.settings.zone),
            "fyi": True,
            "refused": [{"name": r.filename, "reason": r.reason} for r in shown],
            "refused_more": len(kept.refused) - len(shown),
            "too_large": [{"name": r.filename, "size": size_label(r.size)} for r in kept.too_large],
            "files_limit": limit_label(self.service.settings.mail.attach_max_bytes),
        }
        self._outbox(
            "files_not_kept", [self.mail.from_address], [], context, request, stage=request.stage
        )

    def _queue(self, request: RequestRow, effect: SendMail, *, opening: bool = False) -> None:
        if not effect.to and not effect.cc:
            return
        service = self.service
        procedure = service.core.workflow.procedure(request.procedure)
        stage = procedure.stages.get(effect.stage)
        actions = (
            actions_of(procedure, stage)
            if stage is not None and effect.template in ("action_needed", "observations_returned")
            else []
        )
        if self._material is None:
            self._material = self.material(request)
        material = self._material
        # A mail asking to act carries the files; copies and notices list them only.
        shown, files = material.view(attach=bool(actions))
        context = {
            **_BLANK,
            **shown,
            "request": request_context(request, procedure, service.settings.zone),
            "actions": actions,
            # The opening's text is the request's own Resumen, shown as such.
            "note": "" if opening else effect.context.get("text", ""),
            "actor": effect.context.get("actor", ""),
            "action": effect.context.get("action", ""),
            "event": effect.context.get("event", ""),
            "urls": effect.context.get("urls", "").split(),
            "next_step": self.next_step(request),
            "effect": dict(effect.context),
        }
        if not actions or not effect.cc:
            self._outbox(
                effect.template,
                effect.to,
                effect.cc,
                context,
                request,
                stage=effect.stage,
                files=files,
            )
            return
        # People in copy cannot act: they get the same mail worded for their information,
        # so nobody answers a copy by mistake.
        self._outbox(
            effect.template,
            effect.to,
            effect.cc,
            context,
            request,
            stage=effect.stage,
            deliver_to=effect.to,
            files=files,
        )
        fyi = {**context, **material.view(attach=False)[0], "actions": [], "fyi": True}
        self._outbox(
            effect.template,
            effect.to,
            effect.cc,
            fyi,
            request,
            stage=effect.stage,
            deliver_to=effect.cc,
        )

    def next_step(self, request: RequestRow) -> str:
        """Describe in Spanish where the request stands now, for confirmations."""
        if request.status != Status.EN_CURSO:
            return f"la solicitud terminó: está {status_word(request.status)}."
        service = self.service
        procedure = service.core.workflow.procedure(request.procedure)
        stage = procedure.stages[request.stage]
        people = holders_of(
            service.core.directory,
            request.stage_roles,
            state_of(request),
            service.core.calendar.local(self.now).date(),
        )
        who = ", ".join(people) or "(rol vacante)"
        due = ""
        if request.due_at is not None:
            due = f", con plazo hasta el {fecha(request.due_at.astimezone(service.settings.zone))}"
        return f"etapa {stage.number} ({stage.name}), a cargo de {who}{due}."

    def context_for(self, request: RequestRow, **extra: Any) -> dict[str, Any]:
        """Return a complete template context about ``request`` (``extra`` on top).

        The request's files are listed (the Archivos section), never attached.
        """
        procedure = self.service.core.workflow.procedure(request.procedure)
        if self._material is None:
            self._material = self.material(request)
        return {
            **_BLANK,
            **self._material.view(attach=False)[0],
            "request": request_context(request, procedure, self.service.settings.zone),
            "next_step": self.next_step(request),
            **extra,
        }

    def store_attachments(self, request: RequestRow) -> list[AttachmentRow]:
        """Add this mail's files to the request's files at its stage; tell what was not kept."""
        kept = keep_files(
            self.session,
            self.service.archive,
            request,
            self.ledger,
            self.mail,
            stage=request.stage,
            now=self.now,
            limit=self.service.settings.mail.attach_max_bytes,
        )
        self._material = None  # the next mail lists the new files
        self.tell_files_not_kept(request, kept)
        return kept.listed

    def _outbox(
        self,
        template: str,
        to: Sequence[str],
        cc: Sequence[str],
        context: dict[str, Any],
        request: RequestRow | None,
        *,
        stage: int,
        deliver_to: Sequence[str] | None = None,
        files: Sequence[RequestFile] = (),
    ) -> None:
        references = [request.thread_message_id or ""] if request else []
        references.append(self.mail.message_id)
        rows = self.service.composer.rows(
            template,
            to,
            cc,
            context=context,
            code=request.code if request else None,
            stage=stage,
            references=references,
            now=self.now,
            request_id=request.id if request else None,
            deliver_to=deliver_to,
            files=files,
        )
        self.session.add_all(rows)

    def queue_mail(
        self,
        template: str,
        to: Sequence[str],
        context: dict[str, Any],
        request: RequestRow,
        *,
        files: Sequence[RequestFile] = (),
    ) -> None:
        """Queue one mail about ``request`` in its thread, each copy signed for its reader.

        ``context`` goes over the defaults; ``files`` are attached.
        """
        if to:
            self._outbox(
                template, to, [], {**_BLANK, **context}, request, stage=request.stage, files=files
            )

    # -- answers that change nothing ---------------------------------------------------

    def _once(self, kind: str, address: str, extra: str = "") -> bool:
        """Claim the one answer of this kind and detail to ``address`` today, within its cap.

        The detail (the problems, the request code) lets a person who makes a new mistake
        hear about it, but it also let a sender who varies it (a forged From, a hundred
        request codes) make us mail one address without limit: every answer also takes one
        of :data:`MAX_ANSWERS_PER_DAY` daily slots of the address, per family.
        """
        today = self.service.core.calendar.local(self.now).date()
        address = address.lower()
        key = f"{kind}:{address}:{extra}:{today.isoformat()}"[:255]
        # kind is a String(32) column: a long request code used to overflow it (PostgreSQL).
        if not claim_reminder(self.session, key, kind=kind[:32], now=self.now, for_date=today):
            return False
        family = kind.partition("-")[0]
        return any(
            claim_reminder(
                self.session,
                f"cap-{family}:{today.isoformat()}:{slot}:{address}"[:255],
                kind=f"cap-{family}"[:32],
                now=self.now,
                for_date=today,
            )
            for slot in range(MAX_ANSWERS_PER_DAY)  # any() stops at the first free slot
        )

    def once(self, kind: str, address: str, extra: str = "") -> bool:
        """Claim the one answer of ``kind`` (and ``extra``) to ``address`` today, within its cap."""
        return self._once(kind, address, extra)

    def help(self, kind: str, problems: list[str], *, form: str = "") -> Handled:
        """Answer the sender once a day per kind with what could not be understood."""
        sender = self.mail.from_address
        if self._once(f"help-{kind}", sender, "|".join(sorted(problems))[:120]):
            context = {
                **_BLANK,
                "problems": problems,
                "form": form,
                "original_subject": self.mail.subject,
            }
            self._outbox("help", [sender], [], context, None, stage=0)
        return Handled(InboundOutcome.FORMAT_ERROR, detail="; ".join(problems))

    def ask_confirmation(self, code: str, context: dict[str, Any]) -> bool:
        """Mail the sender a tokened request to answer CONFIRMO, within the daily cap.

        The token is signed for the From address: only its real owner reads the mail,
        so only they can answer with it. A forger sending many openings in someone's
        name makes us write to that person at most :data:`MAX_ANSWERS_PER_DAY` times.
        """
        sender = self.mail.from_address
        if not self._once("confirm", sender, code):
            return False
        rows = self.service.composer.rows(
            "confirm_opening",
            [sender],
            [],
            context={**_BLANK, **context},
            code=code,
            stage=0,
            references=[self.mail.message_id],
            now=self.now,
            request_id=None,
            show_code=False,
        )
        self.session.add_all(rows)
        return True

    def help_for_request(self, request: RequestRow, why: str) -> Handled:
        """Tell the sender no action was read, with the keywords the stage accepts."""
        procedure = self.service.core.workflow.procedure(request.procedure)
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
        sender = self.mail.from_address
        if self._once("help-intake", sender, "|".join(sorted(problems))[:120]):
            context = {
                **_BLANK,
                "problems": problems,
                "form": form,
                "original_subject": self.mail.subject,
            }
            rows = self.service.composer.rows(
                "help",
                [sender],
                [],
                context=context,
                code=pending,
                stage=0,
                references=[self.mail.message_id],
                now=self.now,
                request_id=None,
                show_code=False,
            )
            self.session.add_all(rows)
        return Handled(InboundOutcome.FORMAT_ERROR, detail="; ".join(problems))

    def not_allowed_to_start(self, parsed: Intake, reason: str) -> Handled:
        """Tell a sender who may not open this kind of request why, once a day."""
        directory = self.service.core.directory
        sender = self.mail.from_address
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
        service = self.service
        holders = notify or holders_of(
            service.core.directory,
            request.stage_roles,
            state_of(request),
            service.core.calendar.local(self.now).date(),
        )
        procedure = service.core.workflow.procedure(request.procedure)
        context = {
            **_BLANK,
            "request": request_context(request, procedure, service.settings.zone),
            "sender": self.mail.from_address,
            "action": action,
            "reason": reason,
        }
        fresh = [h for h in holders if self._once("unauthorized", h, request.code)]
        if fresh:
            self._outbox("unauthorized", fresh, [], context, request, stage=request.stage)
        return Handled(InboundOutcome.UNAUTHORIZED, request.code, reason)

    def _refusal(self, request: RequestRow, action: str, reason: str) -> None:
        self.session.add(
            RefusalRow(
                request_id=request.id,
                at=self.now,
                sender=self.mail.from_address,
                action=action[:32],
                stage=request.stage,
                reason=reason,
                inbound_id=self.ledger.id,
            )
        )
