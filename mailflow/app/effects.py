"""Carry out the engine's effects inside one transaction.

Effects become rows: history, publication links, attachments and outbox mails. The
answers to people that change nothing (help, refusals, unauthorized notices) are
:mod:`mailflow.app.answers`, which writes its mails through the same :class:`Applier`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailflow.app.build import Core
from mailflow.app.context import actions_of, mail_context, request_context
from mailflow.app.files import (
    Kept,
    Material,
    RequestFile,
    keep_files,
    limit_label,
    material_of,
    size_label,
)
from mailflow.app.outbound import Composer
from mailflow.app.products import record_product
from mailflow.config import Settings
from mailflow.core.model import Effect, RecordHistory, RecordPublication, SendMail, Status
from mailflow.core.names import status_word
from mailflow.core.people import holders_of
from mailflow.mail.parse import InboundMail
from mailflow.mail.render import fecha
from mailflow.store.archive import Archive
from mailflow.store.requeststate import state_of
from mailflow.store.schema import AttachmentRow, HistoryRow, InboundRow, RequestRow
from mailflow.store.unitofwork import Session

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


@dataclass(frozen=True)
class Tools:
    """What handling a message works with, besides its transaction.

    The settings, the pure core (workflow, directory, calendar), the archive and the
    composer of outgoing mails: the service holds them and hands them to each
    :class:`Applier`, which never reaches back into the service.
    """

    settings: Settings
    core: Core
    archive: Archive
    composer: Composer


class Applier:
    """Write the consequences of one inbound message into the open transaction."""

    def __init__(
        self,
        tools: Tools,
        session: Session,
        ledger: InboundRow,
        mail: InboundMail,
        now: datetime,
    ) -> None:
        self.tools = tools
        self.settings = tools.settings
        self.core = tools.core
        self.archive = tools.archive
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
            self.archive,
            request,
            self.ledger,
            self.mail,
            stage=acted,
            now=self.now,
            limit=self.settings.mail.attach_max_bytes,
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
            settings = self.settings
            record_product(
                self.session,
                request,
                published[0],
                procedure=self.core.workflow.procedure(request.procedure),
                mail_text=self.mail.text,
                reply_text=reply.text,
                urls=published[1],
                attachments=kept.listed,
                default_type=settings.poai.default_product_type,
            )

    def material(self, request: RequestRow) -> Material:
        """Return the files and observations of ``request``, as its mails show them."""
        return material_of(
            self.session,
            request,
            self.core.workflow.procedure(request.procedure),
            self.archive,
            zone=self.settings.zone,
            limit=self.settings.mail.attach_max_bytes,
        )

    def tell_files_not_kept(self, request: RequestRow, kept: Kept) -> None:
        """Tell the sender, in one mail, which of their files did not join the request."""
        if not kept.refused and not kept.too_large:
            return
        procedure = self.core.workflow.procedure(request.procedure)
        shown = kept.refused[:MAX_NAMED]
        context = mail_context(
            request_context(request, procedure, self.settings.zone),
            fyi=True,
            refused=[{"name": r.filename, "reason": r.reason} for r in shown],
            refused_more=len(kept.refused) - len(shown),
            too_large=[{"name": r.filename, "size": size_label(r.size)} for r in kept.too_large],
            files_limit=limit_label(self.settings.mail.attach_max_bytes),
        )
        self.outbox(
            "files_not_kept", [self.mail.from_address], [], context, request, stage=request.stage
        )

    def _queue(self, request: RequestRow, effect: SendMail, *, opening: bool = False) -> None:
        if not effect.to and not effect.cc:
            return
        procedure = self.core.workflow.procedure(request.procedure)
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
        context = mail_context(
            request_context(request, procedure, self.settings.zone),
            **{
                **shown,
                "actions": actions,
                # The opening's text is the request's own Resumen, shown as such.
                "note": "" if opening else effect.context.get("text", ""),
                "actor": effect.context.get("actor", ""),
                "action": effect.context.get("action", ""),
                "event": effect.context.get("event", ""),
                "urls": effect.context.get("urls", "").split(),
                "next_step": self.next_step(request),
                "effect": dict(effect.context),
            },
        )
        if not actions or not effect.cc:
            self.outbox(
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
        self.outbox(
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
        self.outbox(
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
        procedure = self.core.workflow.procedure(request.procedure)
        stage = procedure.stages[request.stage]
        people = holders_of(
            self.core.directory,
            request.stage_roles,
            state_of(request),
            self.core.calendar.local(self.now).date(),
        )
        who = ", ".join(people) or "(rol vacante)"
        due = ""
        if request.due_at is not None:
            due = f", con plazo hasta el {fecha(request.due_at.astimezone(self.settings.zone))}"
        return f"etapa {stage.number} ({stage.name}), a cargo de {who}{due}."

    def context_for(self, request: RequestRow, **extra: Any) -> dict[str, Any]:
        """Return a complete template context about ``request`` (``extra`` on top).

        The request's files are listed (the Archivos section), never attached.
        """
        procedure = self.core.workflow.procedure(request.procedure)
        if self._material is None:
            self._material = self.material(request)
        return mail_context(
            request_context(request, procedure, self.settings.zone),
            **{
                **self._material.view(attach=False)[0],
                "next_step": self.next_step(request),
                **extra,
            },
        )

    def store_attachments(self, request: RequestRow) -> list[AttachmentRow]:
        """Add this mail's files to the request's files at its stage; tell what was not kept."""
        kept = keep_files(
            self.session,
            self.archive,
            request,
            self.ledger,
            self.mail,
            stage=request.stage,
            now=self.now,
            limit=self.settings.mail.attach_max_bytes,
        )
        self._material = None  # the next mail lists the new files
        self.tell_files_not_kept(request, kept)
        return kept.listed

    def outbox(
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
        """Queue one mail answering this message, in ``request``'s thread when there is one."""
        references = [request.thread_message_id or ""] if request else []
        references.append(self.mail.message_id)
        rows = self.tools.composer.rows(
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

        ``context`` goes over the defaults (:func:`~mailflow.app.context.mail_context`);
        ``files`` are attached.
        """
        if to:
            self.outbox(
                template, to, [], mail_context(**context), request, stage=request.stage, files=files
            )
