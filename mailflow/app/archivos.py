"""Answer ARCHIVOS: send a person on a request the files of it that they do not have yet.

ARCHIVOS is not a workflow action: it changes nothing, any stage accepts it, and only
people on the request (its requester, whoever acted on it, whoever we mailed about its
procedure) get an answer. It needs the same proof as a note (the sender's own reply token
of the request, or the trusted server's Authentication-Results: the caller checks it), the
answer goes to the From address alone and that address must be on the request; once a day
per person and request, so it cannot be used to flood anybody.

A reply is ARCHIVOS when its new text is the word alone (with a greeting or a "por favor"
at most) and it carries no file: "Archivos corregidos: les mando el afiche" with the
poster attached is a note, and its file joins the request.

"The files they do not have" are the request's files that none of our mails carried to
that address; when they have them all, they get them all again (the mail was lost). They
come in as many mails as needed, each within ``[mail] attach_max_mb``; a file larger
than that never travels by mail and is listed as such.
"""

from __future__ import annotations

import re
from typing import Any

from mailflow.app.answers import Answers
from mailflow.app.context import request_context
from mailflow.app.effects import Applier, Handled
from mailflow.app.files import RequestFile, batches, files_of, files_view, plan
from mailflow.core.model import Procedure
from mailflow.mail.parse import InboundMail
from mailflow.mail.replytext import extract_new_text, fold
from mailflow.store.material import files_sent_to, people_on_request
from mailflow.store.schema import InboundOutcome, RequestRow

KEYWORD = "archivos"
_WORD = re.compile(r"[^\W\d_]{1,40}")


# Words that may stand beside the keyword without making the reply more than a request
# for the files.
_COURTESY = frozenset(("por", "favor", "gracias", "hola", "buenos", "buenas", "dias", "tardes"))


def asks_for_files(mail: InboundMail) -> bool:
    """Tell whether a reply asks for the request's files and says nothing else.

    Its new text's first line is ARCHIVOS (courtesy words aside) and it brings no file.
    """
    if any(part.is_material for part in mail.attachments):
        return False
    lines = [line for line in extract_new_text(mail.text)[:2000].splitlines() if line.strip()]
    if not lines:
        return False
    words = [fold(w) for w in _WORD.findall(lines[0])]
    return bool(words) and words[0] == KEYWORD and set(words[1:]) <= _COURTESY


def send_files(applier: Applier, request: RequestRow) -> Handled:
    """Queue the files the sender lacks, in mails within the bound; or say why not."""
    session = applier.session
    sender = applier.mail.from_address
    if sender not in people_on_request(session, request):
        return Answers(applier).help(
            f"archivos-{request.code}",
            [
                f"Solo las personas que participan en la solicitud {request.code} pueden "
                "pedir sus archivos, y usted no figura en ella."
            ],
        )
    if not Answers(applier).once("archivos", sender, request.code):
        return Handled(InboundOutcome.PROCESSED, request.code, "ARCHIVOS already answered today")
    limit = applier.settings.mail.attach_max_bytes
    files = files_of(session, request, applier.archive)
    had = files_sent_to(session, request.id, sender)
    sendable = [f for f in files if f.available and f.size <= limit]
    groups = batches([f for f in sendable if f.sha256 not in had] or sendable, limit)
    procedure = applier.core.workflow.procedure(request.procedure)
    base = request_context(request, procedure, applier.settings.zone)
    for number, group in enumerate(groups or [[]], 1):
        context = {
            "request": base,
            "fyi": True,
            "batch": {"number": number, "total": len(groups)},
            **_listing(files, group, groups, had=had, limit=limit, procedure=procedure),
        }
        applier.queue_mail("files_sent", [sender], context, request, files=group)
    sent = sum(len(g) for g in groups)
    return Handled(
        InboundOutcome.PROCESSED,
        request.code,
        f"ARCHIVOS: {sent} file(s) in {len(groups)} mail(s) to {sender}",
    )


def _listing(
    files: list[RequestFile],
    group: list[RequestFile],
    groups: list[list[RequestFile]],
    *,
    had: set[str],
    limit: int,
    procedure: Procedure,
) -> dict[str, Any]:
    """Return the Archivos section of one answer: this mail's files, and where the rest are."""
    view = files_view(plan(files, limit, attach=False), procedure)
    carried = {f.sha256 for f in group}
    mail_of = {f.sha256: n for n, g in enumerate(groups, 1) for f in g}
    for row, file in zip(view["files"], files, strict=True):
        if file.sha256 in carried:
            row["attached"], row["status"] = True, "adjunto"
        elif file.sha256 in mail_of:
            row["status"] = f"va en el correo {mail_of[file.sha256]} de {len(groups)}"
        elif file.sha256 in had and file.available and file.size <= limit:
            row["status"] = "ya se le envió en un correo anterior"
    view["files_attached"] = len(carried)
    view["files_more"] = False
    return view
