"""Tell automatic mail from human mail, so the daemon never answers a machine (no loops).

The signals are those of RFC 3834 (``Auto-Submitted`` other than ``no``, ``Precedence:
bulk/list/junk``, a null ``Return-Path``), RFC 3464/8098 reports (``multipart/report``:
delivery-status is a bounce, anything else such as a read receipt is auto-generated),
``mailer-daemon``/``postmaster`` senders, the ``X-Autoreply`` family and out-of-office
subjects in Spanish and English, bounce subjects of servers that send no report, and
``List-Id`` (RFC 2919) and ``List-Unsubscribe`` & co. (RFC 2369, RFC 8058) list and bulk mail.
``X-Auto-Response-Suppress`` is deliberately ignored:
Outlook puts it on mail people write.
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum


class AutoKind(StrEnum):
    """What sort of sender produced the mail; anything but ``HUMAN`` is never answered."""

    HUMAN = "human"
    AUTO_REPLY = "auto_reply"
    AUTO_GENERATED = "auto_generated"
    BULK = "bulk"
    BOUNCE = "bounce"


Verdict = tuple[AutoKind, str]

# fmt: off
AUTO_SUBJECTS = (
    "respuesta automatica", "fuera de la oficina", "fuera de oficina", "automatic reply",
    "auto reply", "autoreply", "auto-reply", "out of office", "out of the office",
    "respuesta de ausencia", "ausente de la oficina",
)
# Non-standard bounces (no multipart/report, a sender that is not mailer-daemon) still
# say so in the subject: Exchange's "Undeliverable:", Gmail's "Delivery Status
# Notification", Spanish-localized servers. One used to be read as a reply to its request.
BOUNCE_SUBJECTS = (
    "undeliverable", "undelivered mail", "delivery status notification", "delivery failure",
    "mail delivery failed", "mail delivery failure", "returned mail", "failure notice",
    "delivery has failed", "message not delivered", "no se puede entregar",
    "no se pudo entregar", "mensaje no entregado", "correo no entregado", "error de entrega",
    "notificacion de estado de entrega", "devolucion de correo",
)
# The X-Autoreply family as autoresponders write it (sieve vacation, cPanel, Zimbra...).
AUTOREPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoreply-from", "x-mail-autoreply")
# RFC 2369 list headers and RFC 8058's one-click unsubscribe: newsletters and list mail
# carry them (often without List-Id or Precedence); a person's reply never does.
LIST_HEADERS = (
    "list-unsubscribe", "list-unsubscribe-post", "list-post", "list-help", "list-subscribe",
    "list-owner", "list-archive",
)
# fmt: on


def classify_auto(
    *,
    content_type: str = "text/plain",
    report_type: str = "",
    from_address: str = "",
    subject: str = "",
    return_path: str | None = None,
    auto_submitted: str = "",
    precedence: str = "",
    autoreply_headers: tuple[str, ...] = (),
    list_id: str = "",
    list_headers: tuple[str, ...] = (),
) -> Verdict:
    """Classify a mail from its header values and say why (a short Spanish reason)."""
    found = (
        _report_kind(content_type.lower(), report_type.lower(), from_address.lower())
        or _header_kind(auto_submitted, precedence, autoreply_headers)
        or _subject_kind(subject)
    )
    if not found and list_id.strip():
        # RFC 3834 §2: never answer mail from a list (RFC 2919), even without Precedence.
        found = AutoKind.BULK, f"List-Id {list_id.strip()[:60]}"
    if not found and list_headers:
        # A newsletter with only List-Unsubscribe used to be read as a request and answered.
        found = AutoKind.BULK, f"cabecera {_LIST_NAMES.get(list_headers[0], list_headers[0])}"
    if found:
        return found
    if return_path is not None and return_path.strip() in ("<>", ""):
        return AutoKind.AUTO_GENERATED, "Return-Path nulo"
    return AutoKind.HUMAN, ""


_LIST_NAMES = {name: "-".join(w.capitalize() for w in name.split("-")) for name in LIST_HEADERS}


def _report_kind(content_type: str, report_type: str, from_address: str) -> Verdict | None:
    """Recognize delivery-status and other reports, and mailer-daemon senders."""
    local = from_address.partition("@")[0]
    if content_type == "multipart/report" and report_type in ("delivery-status", ""):
        return AutoKind.BOUNCE, "multipart/report (delivery-status)"
    if local in ("mailer-daemon", "postmaster"):
        return AutoKind.BOUNCE, f"remitente {local}"
    if content_type == "multipart/report":
        return AutoKind.AUTO_GENERATED, f"multipart/report ({report_type})"
    return None


def _header_kind(
    auto_submitted: str, precedence: str, autoreply_headers: tuple[str, ...]
) -> Verdict | None:
    """Read Auto-Submitted, the X-Autoreply family and Precedence."""
    submitted = auto_submitted.partition(";")[0].strip().lower()
    if submitted and submitted != "no":
        kind = AutoKind.AUTO_REPLY if submitted == "auto-replied" else AutoKind.AUTO_GENERATED
        return kind, f"Auto-Submitted: {submitted}"
    if autoreply_headers:
        return AutoKind.AUTO_REPLY, f"cabecera {autoreply_headers[0]}"
    folded = precedence.strip().lower()
    if folded in ("bulk", "list", "junk"):
        return AutoKind.BULK, f"Precedence: {folded}"
    if folded == "auto_reply":
        return AutoKind.AUTO_REPLY, "Precedence: auto_reply"
    return None


def _subject_kind(subject: str) -> Verdict | None:
    """Recognize out-of-office subjects in Spanish and English."""
    decomposed = unicodedata.normalize("NFKD", subject[:200].casefold())
    folded = "".join(c for c in decomposed if not unicodedata.combining(c)).strip()
    if folded.startswith(AUTO_SUBJECTS):
        return AutoKind.AUTO_REPLY, f"asunto «{subject[:60]}»"
    if folded.startswith(BOUNCE_SUBJECTS):
        return AutoKind.BOUNCE, f"asunto «{subject[:60]}»"
    return None
