"""Handle one inbound message: ledger, parse, route, advance, record — one transaction.

The runner's transaction may hold a group of messages, a savepoint each (see
:meth:`Service.handle_in`). The raw message is archived (durably, by the archive batch's
end) before the commit; the transaction records the ledger row, the state change and
every outgoing mail (transactional outbox). Only after the
commit does the caller flag or move the message and flush the outbox, so a crash at any
point loses nothing and repeats nothing: a message already in the ledger is skipped.
Like Mailman's runner, a message that breaks something is quarantined with its reason
and the loop goes on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mailflow.app.answers import Answers
from mailflow.app.archivos import asks_for_files, send_files
from mailflow.app.build import Core
from mailflow.app.completion import complete
from mailflow.app.conversation import Conversation, said_in
from mailflow.app.effects import Applier, Handled, Reply, Tools
from mailflow.app.held import confirm_context, read_request_mail
from mailflow.app.opening import adopt, link_confirmed
from mailflow.app.outbound import Composer
from mailflow.config import Settings
from mailflow.core.conversation import Proof, Standing, Verdict, decide
from mailflow.core.model import Action, ActionTaken, RequestOpened
from mailflow.core.people import may_act, unit_of
from mailflow.core.routing import (
    Route,
    authenticated,
    confirmation_code,
    held_inbound_id,
    route,
    token_proof,
)
from mailflow.core.tokens import ReplyToken, is_our_address, verify
from mailflow.core.workflow import (
    IllegalActionError,
    MissingReasonError,
    RequestClosedError,
    UnauthorizedError,
    WorkflowError,
)
from mailflow.mail.cronograma import plan
from mailflow.mail.intake import Intake, parse_cronograma
from mailflow.mail.mimestream import read_mail
from mailflow.mail.parse import MAX_MESSAGE_BYTES, InboundMail, MailParseError, parse_message
from mailflow.mail.replytext import ActionReading, Unclear, extract_new_text, fold, read_reply
from mailflow.mail.sealed import Sealed
from mailflow.mail.spool import RawMail, Spooled, digest_of, head_of, header_block, size_of
from mailflow.store.archive import Archive
from mailflow.store.catalog import inbound_entry
from mailflow.store.ledger import claim_message, inbound_locked, same_bytes, same_message_id
from mailflow.store.record import request_locked
from mailflow.store.repository import Store, ledger_seen, next_request_code
from mailflow.store.requeststate import state_of, store_state
from mailflow.store.schema import HeldState, InboundOutcome, InboundRow, RequestRow
from mailflow.store.threads import HELD, history_entries, request_in_thread
from mailflow.store.unitofwork import Session

log = logging.getLogger("mailflow.app.service")
_HEADER_BYTES = 64 * 1024  # enough for any header block the catalog and the bound answer read

_FIRST_WORD = re.compile(r"[^\W\d_]{1,40}")

# Why a reply was not read as an action, for the help mail. The enum values (``negated``…)
# used to appear in it verbatim, in English.
UNCLEAR_REASONS = {
    Unclear.EMPTY: "su respuesta no trae texto nuevo",
    Unclear.NO_KEYWORD: "la primera palabra de su respuesta no es una acción",
    Unclear.NEGATED: "su respuesta niega la acción; una negación nunca cuenta como aprobación",
    Unclear.QUESTION: "su respuesta es una pregunta",
    Unclear.CONDITIONAL: "su aprobación lleva condiciones; apruebe sin condiciones u observe",
}


# What to tell the sender of a mail nobody can read without a key. It used to get "su
# respuesta no trae texto nuevo", which sent people looking for a mistake in their text.
SEALED_ANSWERS = {
    Sealed.ENCRYPTED: (
        "Su correo llegó cifrado (S/MIME o PGP) y no se puede leer: el buzón de solicitudes "
        "no tiene clave para descifrarlo, así que no se registró nada. Envíelo de nuevo sin "
        "cifrar: en Outlook, desmarque «Cifrar» (Opciones > Permisos o Cifrar) antes de "
        "enviar; en Thunderbird o con una extensión PGP, desactive el cifrado de ese mensaje. "
        "Puede firmarlo, pero no cifrarlo."
    ),
    Sealed.OPAQUE: (
        "Su correo llegó firmado con S/MIME en formato opaco: el texto va dentro de la firma "
        "y no se puede leer, así que no se registró nada. Envíelo de nuevo sin firma, o con "
        "la firma como texto no cifrado (en Outlook: Opciones de seguridad > «Enviar este "
        "mensaje firmado como texto no cifrado»)."
    ),
}


@dataclass(frozen=True)
class Incoming:
    """One message as fetched: where it sits on the server and its exact bytes.

    ``raw`` is the bytes of a small message, or the file a large one was spooled into.
    """

    mailbox: str
    uidvalidity: int
    uid: int
    raw: RawMail

    def ledger_row(self, now: datetime, outcome: str, detail: str | None = None) -> InboundRow:
        """Return the ledger row that claims this message (see docs/design.md §8)."""
        return InboundRow(
            mailbox=self.mailbox,
            uidvalidity=self.uidvalidity,
            uid=self.uid,
            sha256=digest_of(self.raw),
            received_at=now,
            processed_at=now,
            outcome=outcome,
            detail=detail,
        )


@dataclass(frozen=True)
class Done:
    """What became of one message, to log once the transaction that recorded it commits."""

    item: Incoming
    result: Handled
    message_id: str | None = None

    def log(self) -> None:
        """Log the outcome; a message skipped (already in the ledger) is not logged."""
        if self.result.skipped:
            return
        item, result = self.item, self.result
        log.info(
            "uid=%s message=%s outcome=%s request=%s %s",
            item.uid,
            self.message_id or "-",
            result.outcome,
            result.code or "-",
            result.detail,
            extra={
                "uid": item.uid,
                "mailbox": item.mailbox,
                "message_id": self.message_id,
                "outcome": str(result.outcome),
                "request": result.code,
            },
        )


class Service:
    """Process inbound messages against the store with the pure core."""

    def __init__(
        self, settings: Settings, core: Core, store: Store, composer: Composer, archive: Archive
    ) -> None:
        self.settings = settings
        self.core = core
        self.store = store
        self.composer = composer
        self.archive = archive
        self.tools = Tools(settings, core, archive, composer)

    def handle(self, item: Incoming, now: datetime) -> Handled:
        """Process one message exactly once, in a transaction of its own; return its outcome."""
        # The batch ends before the transaction: every file it queues (the message, the
        # mails it sends) is archived durably before the commit that refers to it.
        with self.store.transaction() as session, self.archive.batch():
            done = self.handle_in(session, item, now)
        done.log()
        return done.result

    def handle_in(self, session: Session, item: Incoming, now: datetime) -> Done:
        """Process one message inside the caller's transaction and archive batch.

        The caller commits (the runner commits a group of messages at once) and then calls
        :meth:`Done.log`, so that the log line only tells what is committed.
        """
        if ledger_seen(session, item.mailbox, item.uidvalidity, item.uid):
            return Done(item, Handled("seen", skipped=True))
        # Before the commit that refers to it; a spooled message is copied, never loaded.
        if isinstance(item.raw, Spooled):
            self.archive.put_file(item.raw.path)
        else:
            self.archive.put(item.raw)
        ledger = item.ledger_row(now, InboundOutcome.PROCESSED)
        # Claim the message: another daemon now waits or fails here.
        if not claim_message(session, ledger):
            return Done(item, Handled("seen", skipped=True, detail="claimed by another process"))
        result = self._process(session, ledger, item.raw, now)
        ledger.outcome = result.outcome
        ledger.detail = result.detail[:2000] or None
        head = head_of(item.raw, _HEADER_BYTES)
        session.add(inbound_entry(ledger, head, now, size_of(item.raw)))  # archive index
        return Done(item, result, ledger.message_id)

    def _process(
        self, session: Session, ledger: InboundRow, raw: RawMail, now: datetime
    ) -> Handled:
        if size_of(raw) > MAX_MESSAGE_BYTES:
            return self._too_large(session, ledger, raw, now)
        try:
            # Large parts of a large message are decoded into files that last until
            # the attachments are archived, at the end of this block.
            with read_mail(raw, self.archive.scratch) as mail:
                return self._dispatch(session, ledger, mail, now)
        except MailParseError as exc:
            return Handled(InboundOutcome.QUARANTINED, detail=str(exc))

    def _too_large(
        self, session: Session, ledger: InboundRow, raw: RawMail, now: datetime
    ) -> Handled:
        """Keep a message over the size bound unread, and tell a person who sent it why.

        It used to be quarantined in silence: the sender waited for an answer that never
        came. The header block is enough to know who sent it and whether it is automatic.
        """
        detail = f"mensaje de {size_of(raw)} bytes supera el límite de {MAX_MESSAGE_BYTES}"
        try:
            mail = parse_message(header_block(head_of(raw, _HEADER_BYTES)))
        except MailParseError:
            return Handled(InboundOutcome.QUARANTINED, detail=detail)
        if mail.is_automatic or self._is_ours(mail) or not mail.from_address:
            return Handled(InboundOutcome.QUARANTINED, detail=detail)
        limit = MAX_MESSAGE_BYTES // (1024 * 1024)
        problem = (
            f"Su mensaje pesa {size_of(raw) / (1024 * 1024):.0f} MB y el límite es de {limit} MB, "
            "así que no fue leído. Envíe los archivos grandes como enlace (por ejemplo, a una "
            "carpeta compartida) o en varios mensajes más pequeños."
        )
        Answers(Applier(self.tools, session, ledger, mail, now)).help("too-large", [problem])
        return Handled(InboundOutcome.QUARANTINED, detail=detail)

    def _dispatch(
        self, session: Session, ledger: InboundRow, mail: InboundMail, now: datetime
    ) -> Handled:
        if mail.message_id:
            twin = same_message_id(session, mail.message_id[:998], ledger.id)
            if twin is not None:
                return Handled(InboundOutcome.DUPLICATE, detail=f"same Message-ID as #{twin}")
            ledger.message_id = mail.message_id[:998]
        else:
            # Without a Message-ID, the same bytes at another UID (a copy, a re-delivery, a
            # rescan after UIDVALIDITY changed) are the same message: it used to be
            # processed again, opening a second request.
            twin = same_bytes(session, ledger.sha256, ledger.id)
            if twin is not None:
                return Handled(InboundOutcome.DUPLICATE, detail=f"same bytes as #{twin}")
        if mail.is_automatic or self._is_ours(mail):
            return Handled(InboundOutcome.AUTO_REPLY, detail=mail.auto_reason or "our own mail")
        if not mail.from_address:
            return Handled(InboundOutcome.QUARANTINED, detail="no usable From address")
        applier = Applier(self.tools, session, ledger, mail, now)
        if mail.sealed is not Sealed.NONE:
            return Answers(applier).help("sealed", [SEALED_ANSWERS[mail.sealed]])
        found = route(
            (*mail.to, *mail.cc, *mail.delivered_to),
            mail.thread_ids,
            mail.subject,
            self.settings.organization.code_prefix,
        )
        if found.code is None:
            # No token, no code: a reply in the thread of a request's own first mail.
            threaded = request_in_thread(session, mail.thread_ids)
            if threaded is None:
                return self._intake(applier, mail, now)
            ledger.request_id = threaded.id
            return self._reply(applier, threaded, (), mail, now)
        pending = held_inbound_id(found.code, self.settings.organization.code_prefix)
        if pending is not None:
            return self._pending(applier, pending, found, mail, now)
        # Locked: two daemons handling two votes of one request at once take turns.
        request = request_locked(session, found.code)
        if request is None:
            return Answers(applier).help("unknown_code", [f"No existe la solicitud {found.code}."])
        ledger.request_id = request.id
        return self._reply(applier, request, found.tokens, mail, now)

    def _is_ours(self, mail: InboundMail) -> bool:
        """Tell whether the mail came from our own address (a loop through a forward)."""
        return is_our_address(mail.from_address, self.settings.smtp.from_address)

    def _reply(
        self,
        applier: Applier,
        request: RequestRow,
        tokens: tuple[ReplyToken, ...],
        mail: InboundMail,
        now: datetime,
    ) -> Handled:
        """Act on a reply about ``request``, or answer it as what it is (see core.conversation)."""
        reading = read_reply(mail.text, mail.subject)
        secret = self.settings.security.secret.get_secret_value().encode()
        sender = mail.from_address
        proof = Proof(
            stages=frozenset(
                t.stage for t in tokens if t.code == request.code and verify(secret, t, sender)
            ),
            trusted=authenticated(
                mail.authentication_results, self.settings.security.trusted_authserv_id, sender
            ),
        )
        if asks_for_files(mail):  # not an action: any stage, anyone proven on the request
            if not proof.proven:
                return Conversation(applier, request).unproven("ARCHIVOS")
            return send_files(applier, request)
        said = said_in(mail, reading)
        decision = decide(said, proof, self._standing(applier.session, request, now))
        verdict = decision.verdict
        if verdict is Verdict.ACT and reading.action is not None:
            return self._act(applier, request, reading.action, reading, now)
        if verdict is Verdict.HELP:
            return Answers(applier).help_for_request(
                request, UNCLEAR_REASONS[reading.unclear or Unclear.EMPTY]
            )
        if verdict in (Verdict.UNAUTHORIZED, Verdict.STALE) and reading.action is not None:
            refusal = token_proof(secret, tokens, sender, request.code, request.stage)
            if verdict is Verdict.STALE:
                # Proven, only answering an earlier stage's mail: the author is told why
                # nothing happened; the current holders are not alarmed about them.
                kept = Conversation(applier, request).keep_files(said)
                return Answers(applier).refused(request, reading.action.value, refusal or "", kept)
            if proof.proven:  # proven, but nobody of the institution: from outside
                refusal = self._not_a_holder(request, sender, now)
            return Answers(applier).unauthorized(request, reading.action.value, refusal or "")
        return Conversation(applier, request).carry(decision, said, reading.action)

    def _standing(self, session: Session, request: RequestRow, now: datetime) -> Standing:
        """Return where ``request`` stands, for the conversation rules."""
        return Standing(
            state=state_of(request),
            procedure=self.core.workflow.procedure(request.procedure),
            directory=self.core.directory,
            history=history_entries(session, request.id),
            today=self.core.calendar.local(now).date(),
            withdraw_roles=self.core.workflow.cancel_roles,
        )

    def _not_a_holder(self, request: RequestRow, sender: str, now: datetime) -> str:
        today = self.core.calendar.local(now).date()
        directory = self.core.directory
        return may_act(directory, sender, request.stage_roles, state_of(request), today).reason

    def _act(
        self,
        applier: Applier,
        request: RequestRow,
        action: Action,
        reading: ActionReading,
        now: datetime,
    ) -> Handled:
        """Apply the stage holder's action through the workflow."""
        procedure = self.core.workflow.procedure(request.procedure)
        today = self.core.calendar.local(now).date()
        milestones = parse_cronograma(reading.text, today).milestones
        event = ActionTaken(
            actor=applier.mail.from_address,
            action=action,
            text=reading.text,
            cronograma=plan(procedure, request.stage, milestones),
            urls=reading.urls,
        )
        try:
            state, effects = self.core.workflow.act(state_of(request), event, now)
        except UnauthorizedError as exc:
            return Answers(applier).unauthorized(request, action.value, exc.reason, exc.notify)
        except WorkflowError as exc:
            kept = Conversation(applier, request).keep_files(said_in(applier.mail, reading))
            return Answers(applier).refused(request, action.value, _explain(exc, action), kept)
        store_state(request, state, now)
        applier.apply(request, effects, Reply(action.value, reading.text, reading.urls))
        return Handled(InboundOutcome.PROCESSED, request.code, f"{action.value} accepted")

    def _intake(
        self, applier: Applier, mail: InboundMail, now: datetime, *, confirmed: bool = False
    ) -> Handled:
        """Open a request from a new mail; ``confirmed`` when its sender answered CONFIRMO."""
        parsed = self.read_request(mail, now)
        if parsed.problems or parsed.procedure is None:
            # The help mail's token names this mail: a reply completes it (app.completion).
            prefix = self.settings.organization.code_prefix
            return Answers(applier).intake_problems(
                parsed, confirmation_code(prefix, applier.ledger.id)
            )
        return self.open_request(applier, parsed, mail, now, confirmed=confirmed)

    def read_request(self, mail: InboundMail, now: datetime) -> Intake:
        """Read the fields of a request mail (or of a bare direct publication)."""
        return read_request_mail(mail, self.core.calendar.local(now).date())

    def open_request(
        self,
        applier: Applier,
        parsed: Intake,
        mail: InboundMail,
        now: datetime,
        *,
        confirmed: bool = False,
        earlier: Sequence[tuple[InboundRow, InboundMail]] = (),
    ) -> Handled:
        """Open the request ``parsed`` describes, sent by ``mail``'s author.

        ``mail`` gives the requester, the title's fallback and the thread (for a request
        completed by replies, its first mail); ``applier``'s mail is the one answered.
        ``earlier``: the sender's mails that came before it (the first mail and earlier
        completions), which become part of the request with their files.
        """
        assert parsed.procedure is not None
        unit = self._unit(parsed, mail.from_address)
        event = RequestOpened(
            procedure=parsed.procedure,
            requester=mail.from_address,
            unit=unit,
            text=parsed.resumen or parsed.objetivo,
            urls=(parsed.enlace,) if parsed.enlace else (),
        )
        try:
            state, effects = self.core.workflow.start(event, now)
        except UnauthorizedError as exc:
            return Answers(applier).not_allowed_to_start(parsed, exc.reason)
        except WorkflowError as exc:
            return Answers(applier).help("intake", [str(exc)])
        # After the role check: an opening its sender may not make anyway is refused as
        # such, without asking anybody to confirm it.
        refusal = None if confirmed else self._unproven_opening(parsed.procedure, mail)
        if refusal is not None:
            if self.settings.security.confirm_openings:
                return self._hold(applier, parsed, mail, now)
            return Answers(applier).help("unproven-start", [refusal])
        year = self.core.calendar.local(now).year
        code = next_request_code(applier.session, self.settings.organization.code_prefix, year)
        request = RequestRow(
            code=code,
            procedure=parsed.procedure,
            title=parsed.titulo or mail.subject or code,
            requester=mail.from_address,
            unit=unit,
            fields={k: v for k, v in parsed.raw.items() if v},
            protected=bool(parsed.protegida),
            publish_from=parsed.publicar_desde,
            publish_until=parsed.publicar_hasta,
            thread_message_id=mail.message_id[:998] or None,
            created_at=now,
        )
        store_state(request, state, now)
        applier.session.add(request)
        applier.session.flush()
        applier.ledger.request_id = request.id
        adopt(applier, request, earlier, now)  # a "falta …" form completed by reply
        applier.apply(request, effects, Reply("SOLICITUD", event.text, event.urls))
        return Handled(InboundOutcome.PROCESSED, code, f"opened {parsed.procedure}")

    def _unproven_opening(self, procedure_id: str, mail: InboundMail) -> str | None:
        """Say why a privileged opening (publish, delete, promote) is not proven, or None.

        A request any unit member may send needs no proof: the worst a forger gets is a
        request that the Dirección Ejecutiva will see. Procedures that only given roles
        start act at once (``directa`` publishes, ``eliminacion`` orders a deletion), so
        the trusted server's Authentication-Results must vouch for the From address, or
        the opening is held until that address answers CONFIRMO (``confirm_openings``;
        off, the From address alone counts when no trusted server is configured). Either
        answer goes to that address, i.e. to the real role holder.
        """
        security = self.settings.security
        trusted = security.trusted_authserv_id
        procedure = self.core.procedures.get(procedure_id)
        if procedure is None or "miembro_unidad" in procedure.started_by:
            return None
        if trusted and authenticated(mail.authentication_results, trusted, mail.from_address):
            return None
        if not trusted:
            if not security.confirm_openings:
                return None  # the From address alone, as before confirmation existed
            return f"ningún servidor de confianza certifica a {mail.from_address}"
        return (
            f"No se abrió la solicitud: el servidor {trusted} no certifica que el correo "
            f"venga de {mail.from_address} (DKIM/SPF). Si usted la envió, reenvíela desde "
            "su cuenta institucional; si no, alguien usó su dirección."
        )

    def _hold(self, applier: Applier, parsed: Intake, mail: InboundMail, now: datetime) -> Handled:
        """Keep an unproven privileged opening until its sender answers CONFIRMO.

        The held state is the ledger row itself (``held``, ``held_until``,
        ``held_procedure``; no request yet): the archived message is opened as it was when
        the tokened CONFIRMO arrives.
        """
        code = confirmation_code(self.settings.organization.code_prefix, applier.ledger.id)
        expires = self.core.calendar.due_after(now, self.settings.security.confirm_days)
        context = confirm_context(self.core, parsed, mail, expires)
        asked = Answers(applier).ask_confirmation(code, context)
        applier.ledger.held = HeldState.WAITING if asked else HeldState.NOT_ASKED
        applier.ledger.held_until = expires
        applier.ledger.held_procedure = parsed.procedure
        return Handled(
            InboundOutcome.PROCESSED,
            detail=f"{HELD} until {expires.isoformat()} ({parsed.procedure}"
            f"{'' if asked else ', daily cap reached: not asked'})",
        )

    def _pending(
        self,
        applier: Applier,
        inbound_id: int,
        found: Route,
        mail: InboundMail,
        now: datetime,
    ) -> Handled:
        """Answer to a mail that opened nothing yet: a held opening, or an incomplete request.

        Our mail about it carries a token signed for its sender: only they can confirm or
        complete it.
        """
        secret = self.settings.security.secret.get_secret_value().encode()
        sender = mail.from_address
        if not any(t.code == found.code and verify(secret, t, sender) for t in found.tokens):
            # Whoever wrote this never received our mail: nothing to tell them.
            log.warning("reply about #%s by %s without its token", inbound_id, sender)
            return Handled(
                InboundOutcome.UNAUTHORIZED, detail=f"CONFIRMO of #{inbound_id} unproven"
            )
        session = applier.session
        row = inbound_locked(session, inbound_id)
        if row is not None and row.held is not None:
            return self._confirm(applier, row, mail, now)
        if row is not None and row.outcome == InboundOutcome.FORMAT_ERROR:
            return complete(applier, row, now, self.open_request)
        return Handled(InboundOutcome.UNAUTHORIZED, detail=f"#{inbound_id} is not held")

    def _confirm(
        self, applier: Applier, held: InboundRow, mail: InboundMail, now: datetime
    ) -> Handled:
        """Open a held request when its own sender answers CONFIRMO with the token we sent."""
        held_id = held.id
        session = applier.session
        if held.request_id is not None:
            applier.ledger.request_id = held.request_id
            return Handled(InboundOutcome.DUPLICATE, detail=f"#{held_id} already confirmed")
        if not _confirms(mail):
            return Answers(applier).help(
                "confirm",
                ["Para abrir la solicitud, responda con CONFIRMO como primera palabra."],
            )
        days = self.settings.security.confirm_days
        expires = self.core.calendar.due_after(held.received_at, days)
        if now > expires:
            return Answers(applier).help(
                "confirm-expired",
                [
                    f"La confirmación venció el {expires.astimezone(self.settings.zone):%d/%m/%Y}"
                    "; envíe la solicitud de nuevo."
                ],
            )
        path = self.archive.locate(held.sha256)
        if path is None:
            return Handled(InboundOutcome.QUARANTINED, detail=f"archive of #{held_id} missing")
        # Read like a fetched mail: a held opening may carry large screenshots.
        spooled = Spooled(path, path.stat().st_size, held.sha256)
        with read_mail(spooled, self.archive.scratch) as original:
            if original.from_address != mail.from_address:  # the MAC already binds it
                return Handled(
                    InboundOutcome.UNAUTHORIZED, detail=f"CONFIRMO of #{held_id} unproven"
                )
            result = self._intake(
                Applier(self.tools, session, held, original, now), original, now, confirmed=True
            )
        applier.ledger.request_id = held.request_id
        link_confirmed(
            applier, held, confirmation_code(self.settings.organization.code_prefix, held_id)
        )
        return Handled(result.outcome, result.code, f"CONFIRMO of #{held_id}: {result.detail}")

    def _unit(self, parsed: Intake, sender: str) -> str | None:
        """Return the requester's unit: the Unidad field (id or name), else their membership."""
        wanted = parsed.unidad.strip().casefold()
        for unit_id, unit in self.settings.units.items():
            if wanted and wanted in (unit_id.casefold(), unit.name.casefold()):
                return unit_id
        return unit_of(self.core.directory, sender)


def _confirms(mail: InboundMail) -> bool:
    """Tell whether the new text of a reply starts with the word CONFIRMO."""
    first = _FIRST_WORD.search(extract_new_text(mail.text)[:2000])
    return first is not None and fold(first.group()) == "confirmo"


def _explain(exc: WorkflowError, action: Action) -> str:
    """Say in Spanish why the engine refused an action.

    The engine's messages are English, for logs; they used to reach people verbatim in
    the help mail and in ``requests show``'s ``refused`` reasons.
    """
    if isinstance(exc, IllegalActionError):
        accepted = ", ".join(a.value for a in exc.accepted)
        return f"la etapa {exc.stage} no acepta {exc.action.value}; acepta: {accepted}"
    if isinstance(exc, MissingReasonError):
        if action is Action.RECHAZO:
            return "RECHAZO debe ir seguido del motivo, p. ej. «RECHAZO el logo no es el vigente»"
        return (
            f"{action.value} debe ir seguido de las observaciones, p. ej. "
            f"«{action.value} cambiar la foto de portada»"
        )
    if isinstance(exc, RequestClosedError):
        return "la solicitud ya terminó; no admite más acciones"
    return str(exc)
