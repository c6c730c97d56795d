"""What an opening brings along: the mails and files that came before its request existed.

A request's evidence must hold the mail that opened it however it was opened:

- after ``CONFIRMO``: the held mail was indexed before the request existed, and so was
  the confirmation mail we sent; both are linked to the request once it opens;
- after a "falta …" answer: the sender's first, incomplete mail (and its files: the
  photos usually come with it, not with the reply that completes the form) becomes part
  of the request opened by the reply.
"""

from __future__ import annotations

from datetime import datetime

from mailflow.app.effects import Applier
from mailflow.app.files import keep_files
from mailflow.mail.mimestream import read_mail
from mailflow.mail.parse import InboundMail, MailParseError
from mailflow.mail.spool import Spooled
from mailflow.store.catalog import link_confirmation, link_inbound
from mailflow.store.material import earlier_attempts
from mailflow.store.schema import InboundRow, RequestRow


def link_confirmed(applier: Applier, held: InboundRow, confirmation_code: str) -> None:
    """Link a held opening's mail, and our CONFIRMO mail about it, to the request it opened."""
    if held.request_id is None:
        return
    link_inbound(applier.session, [held.id], held.request_id)
    link_confirmation(applier.session, confirmation_code, held.request_id)


def adopt_attempts(applier: Applier, request: RequestRow, mail: InboundMail, now: datetime) -> None:
    """Make the sender's earlier incomplete mails that ``mail`` answers part of ``request``.

    Their files join the request as delivered at its first stage, by the sender.
    """
    service = applier.service
    archive = service.archive
    first = service.core.workflow.procedure(request.procedure).first.number
    for attempt in earlier_attempts(applier.session, mail.thread_ids, applier.ledger.id):
        path = archive.locate(attempt.sha256)
        if path is None:
            continue
        try:
            with read_mail(
                Spooled(path, path.stat().st_size, attempt.sha256), archive.scratch
            ) as old:
                if old.from_address != mail.from_address:
                    continue  # somebody else's mail in the thread: not theirs to bring
                link_inbound(applier.session, [attempt.id], request.id)
                kept = keep_files(
                    applier.session,
                    archive,
                    request,
                    attempt,
                    old,
                    stage=first,
                    now=now,
                    limit=service.settings.mail.attach_max_bytes,
                )
        except MailParseError:
            continue
        applier.tell_files_not_kept(request, kept)
