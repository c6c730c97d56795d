"""Complete an incomplete request by replying to the mail that listed what was missing.

The help mail about an incomplete request carries a reply token that names the request's
first mail (:func:`mailflow.core.routing.confirmation_code`), signed for its sender. A
reply to it is read together with that first mail and every earlier completion: the fields
of each later reply's new text replace those before it, and the files of all of them join
the request. Once nothing is missing the request opens as if its first mail had been
complete, threaded under that mail; until then each reply gets the list of what is left,
with the form filled with everything given so far. The token proves the sender as a
CONFIRMO does, so a completed privileged opening is not held again.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from datetime import datetime
from typing import Protocol

from mailflow.app.answers import Answers
from mailflow.app.effects import Applier, Handled
from mailflow.app.held import read_request_mail
from mailflow.app.products import directa_form
from mailflow.core.routing import confirmation_code
from mailflow.mail.intake import Intake, check_fields, read_fields
from mailflow.mail.mimestream import read_mail
from mailflow.mail.parse import InboundMail
from mailflow.mail.replytext import extract_new_text
from mailflow.mail.spool import Spooled
from mailflow.store.schema import InboundOutcome, InboundRow, RequestRow
from mailflow.store.threads import completions_of


class Opener(Protocol):
    """Open the request a completed form describes.

    The service's :meth:`~mailflow.app.service.Service.open_request`, passed in so that
    this module does not import the service that imports it.
    """

    def __call__(
        self,
        applier: Applier,
        parsed: Intake,
        mail: InboundMail,
        now: datetime,
        *,
        confirmed: bool = False,
        earlier: Sequence[tuple[InboundRow, InboundMail]] = (),
    ) -> Handled: ...


def fields_of(mail: InboundMail) -> dict[str, str]:
    """Return the labelled fields a reply gives: only what its author wrote now."""
    text = extract_new_text(mail.text)
    body = directa_form(text, mail.subject) or text
    return {key: value for key, value in read_fields(body).items() if value}


def complete(applier: Applier, root: InboundRow, now: datetime, open_request: Opener) -> Handled:
    """Merge ``applier``'s mail into the incomplete request first sent as ``root``.

    Once nothing is missing, ``open_request`` opens it.
    """
    session = applier.session
    if root.request_id is not None:
        opened = session.get(RequestRow, root.request_id)
        code = opened.code if opened is not None else "?"
        return Answers(applier).help(
            f"completed-{code}",
            [
                f"Su solicitud ya se abrió con el código {code}. Para añadir información o "
                "archivos, responda a uno de los correos de esa solicitud."
            ],
        )
    applier.ledger.completes_id = root.id
    earlier = completions_of(session, root.id)
    earlier = [row for row in earlier if row.id != applier.ledger.id]
    with ExitStack() as stack:
        pieces: list[tuple[InboundRow, InboundMail]] = []
        for row in (root, *earlier):
            path = applier.archive.locate(row.sha256)
            if path is None:
                return Handled(InboundOutcome.QUARANTINED, detail=f"archive of #{row.id} missing")
            spooled = Spooled(path, path.stat().st_size, row.sha256)
            pieces.append((row, stack.enter_context(read_mail(spooled, applier.archive.scratch))))
        first = pieces[0][1]
        if first.from_address != applier.mail.from_address:  # the token already binds it
            return Handled(InboundOutcome.UNAUTHORIZED, detail=f"completion of #{root.id} unproven")
        today = applier.core.calendar.local(now).date()
        # The first mail is read as a request is (its HTML table when the text part lost
        # the labels); each reply by the new text its author wrote.
        fields = {k: v for k, v in read_request_mail(first, today).raw.items() if v}
        for _, mail in (*pieces[1:], (applier.ledger, applier.mail)):
            fields.update(fields_of(mail))
        parsed = check_fields(fields, today)
        if parsed.problems or parsed.procedure is None:
            prefix = applier.settings.organization.code_prefix
            return Answers(applier).intake_problems(parsed, confirmation_code(prefix, root.id))
        # Opened as from the first mail (its subject, its thread), answered in this one;
        # the earlier mails and their files join it before its first mails are written.
        result = open_request(applier, parsed, first, now, confirmed=True, earlier=pieces)
    detail = f"completes #{root.id}: {result.detail}"
    return Handled(result.outcome, result.code, detail)
