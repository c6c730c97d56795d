"""What an opening brings along: the mails and files that came before its request existed.

A request's evidence must hold the mail that opened it however it was opened:

- after ``CONFIRMO``: the held mail was indexed before the request existed, and so was
  the confirmation mail we sent; both are linked to the request once it opens;
- after a "falta …" answer: the sender's first, incomplete mail (and its files: the
  photos usually come with it, not with the reply that completes the form) becomes part
  of the request opened by the reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mailflow.app.effects import Applier
from mailflow.app.files import keep_files
from mailflow.core.routing import confirmation_code
from mailflow.mail.parse import InboundMail
from mailflow.store.catalog import link_confirmation, link_inbound
from mailflow.store.schema import InboundRow, RequestRow


def link_confirmed(applier: Applier, held: InboundRow, confirmation_code: str) -> None:
    """Link a held opening's mail, and our CONFIRMO mail about it, to the request it opened."""
    if held.request_id is None:
        return
    link_inbound(applier.session, [held.id], held.request_id)
    link_confirmation(applier.session, confirmation_code, held.request_id)


def adopt(
    applier: Applier,
    request: RequestRow,
    earlier: Sequence[tuple[InboundRow, InboundMail]],
    now: datetime,
) -> None:
    """Make the sender's earlier mails of ``request`` (a form completed by reply) part of it.

    They become part of its evidence, and their files join it as delivered at its first
    stage, by the sender, before its first mails are composed (so those mails carry them).
    """
    if not earlier:
        return
    link_inbound(applier.session, [row.id for row, _ in earlier], request.id)
    # The "falta …" lists we sent about the first mail belong to the request too.
    prefix = applier.settings.organization.code_prefix
    link_confirmation(applier.session, confirmation_code(prefix, earlier[0][0].id), request.id)
    first = applier.core.workflow.procedure(request.procedure).first.number
    for row, mail in earlier:
        kept = keep_files(
            applier.session,
            applier.archive,
            request,
            row,
            mail,
            stage=first,
            now=now,
            limit=applier.settings.mail.attach_max_bytes,
        )
        applier.tell_files_not_kept(request, kept)
