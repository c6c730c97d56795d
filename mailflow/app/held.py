"""What the mails about a held opening say: the confirmation, its reminder, its expiry.

An opening that acts at once (a direct publication, a deletion order) and that no trusted
server vouches for waits for its sender's ``CONFIRMO`` (:mod:`mailflow.app.service`).
The mails about it say what the request is and what confirming it will set in motion for
that very procedure (:func:`mailflow.core.conversation.what_happens`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from mailflow.app.build import Core
from mailflow.app.products import directa_form
from mailflow.core.conversation import what_happens
from mailflow.mail.intake import Intake, parse_intake, read_request
from mailflow.mail.parse import InboundMail


def read_request_mail(mail: InboundMail, today: date) -> Intake:
    """Read the fields of a request mail (or of a bare direct publication)."""
    # A bare "PUBLICADO <tipo> <enlace>" from the administrator registers a direct post.
    form = directa_form(mail.text, mail.subject)
    return parse_intake(form, today) if form else read_request(mail.text, mail.html, today)


# A summary value longer than this is cut, and says so: the whole mail is in the archive.
SUMMARY_CHARS = 300


def _shortened(value: str) -> str:
    """Return ``value`` whole, or its start with a note that it was cut."""
    if len(value) <= SUMMARY_CHARS:
        return value
    return value[:SUMMARY_CHARS].rstrip() + " … (texto recortado; está completo en su correo)"


def confirm_context(
    core: Core, parsed: Intake, mail: InboundMail, expires: datetime, *, event: str = ""
) -> dict[str, Any]:
    """Return the context of ``confirm_opening`` (``event``: "" or "recordatorio")."""
    procedure = core.procedures.get(parsed.procedure or "")
    summary = [
        {"label": label, "value": _shortened(value)}
        for label, value in (
            ("Título", parsed.titulo),
            ("Enlace", parsed.enlace),
            ("Objetivo", parsed.objetivo),
            ("Resumen", parsed.resumen),
            ("Unidad", parsed.unidad),
        )
        if value
    ]
    return {
        "sender": mail.from_address,
        "original_subject": mail.subject,
        "event": event,
        "confirm": {
            "title": parsed.titulo or mail.subject or (procedure.name if procedure else ""),
            "procedure_name": procedure.name if procedure else parsed.procedure,
            "summary": summary,
            "expires": expires,
            "outcome": what_happens(procedure) if procedure else "se abrirá la solicitud.",
        },
    }
