"""Tell automatic mail from human mail, so the daemon never answers a machine (no loops).

The signals are those of RFC 3834 (``Auto-Submitted`` other than ``no``, ``Precedence:
bulk/list/junk``, a null ``Return-Path``), RFC 3464/8098 reports (``multipart/report``:
delivery-status is a bounce, anything else such as a read receipt is auto-generated),
``mailer-daemon``/``postmaster`` senders, the ``X-Autoreply`` family and out-of-office
subjects in Spanish and English. ``X-Auto-Response-Suppress`` is deliberately ignored:
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
) -> Verdict:
    """Classify a mail from its header values and say why (a short Spanish reason)."""
    found = (
        _report_kind(content_type.lower(), report_type.lower(), from_address.lower())
        or _header_kind(auto_submitted, precedence, autoreply_headers)
        or _subject_kind(subject)
    )
    if found:
        return found
    if return_path is not None and return_path.strip() in ("<>", ""):
        return AutoKind.AUTO_GENERATED, "Return-Path nulo"
    return AutoKind.HUMAN, ""


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
    return None
