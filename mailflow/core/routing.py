"""Decide which request a mail is about and whether it proves who sent it (pure).

Matching falls back from the signed token (reply address, Delivered-To, our Message-IDs
in In-Reply-To/References) to the request code in the subject. Proof of the sender is a
token issued to that very address for that request and stage, or an
Authentication-Results header of the trusted server saying DKIM or SPF passed for the
From domain (RFC 8601).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailflow.core.tokens import ReplyToken, find_tokens, verify

_CODE = re.compile(r"\b([A-Z][A-Z0-9]{1,9}-\d{4}-\d{4,8})\b")
_RESINFO = re.compile(r"\b(dkim|spf)\s*=\s*(\w+)([^;]*)", re.IGNORECASE)
_PROPERTY = re.compile(r"\b(header\.d|header\.i|smtp\.mailfrom)\s*=\s*([^\s;]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Route:
    """Where a mail points: a request code (or none) and the tokens it carries."""

    code: str | None
    tokens: tuple[ReplyToken, ...]
    via: str  # "token", "subject" or "none"


def route(addresses: Iterable[str], message_ids: Iterable[str], subject: str, prefix: str) -> Route:
    """Find the request a mail is about from its recipients, thread headers and subject."""
    tokens = tuple(find_tokens([*addresses, *message_ids]))
    mine = tuple(t for t in tokens if t.code.startswith(prefix.upper() + "-"))
    if mine:
        return Route(code=mine[0].code, tokens=mine, via="token")
    for match in _CODE.finditer(subject[:1000].upper()):
        if match[1].startswith(prefix.upper() + "-"):
            return Route(code=match[1], tokens=(), via="subject")
    return Route(code=None, tokens=(), via="none")


def confirmation_code(prefix: str, inbound_id: int) -> str:
    """Return the pseudo-code whose tokens confirm the held opening of inbound ``inbound_id``.

    Year ``0000`` never numbers a real request, so the code cannot name one; the tokens
    it signs travel like any other (reply address, Message-ID) and reach the same router.
    """
    return f"{prefix.upper()}-0000-{inbound_id:08d}"


def held_inbound_id(code: str, prefix: str) -> int | None:
    """Return the inbound id a :func:`confirmation_code` names, or None for a request code."""
    head = f"{prefix.upper()}-0000-"
    if not code.startswith(head) or not code[len(head) :].isdigit():
        return None
    return int(code[len(head) :])


def token_proof(
    secret: bytes, tokens: Iterable[ReplyToken], sender: str, code: str, stage: int
) -> str | None:
    """Return None when a token proves ``sender`` for this stage, else why it does not."""
    tokens = [t for t in tokens if t.code == code]
    if not tokens:
        return "el correo no responde a un mensaje de esta solicitud"
    issued = [t for t in tokens if verify(secret, t, sender)]
    if not issued:
        return "el enlace de respuesta fue emitido para otra persona"
    if all(t.stage != stage for t in issued):
        return (
            f"responde a un correo de la etapa {issued[0].stage}, que ya concluyó; "
            "responda al correo más reciente de la solicitud"
        )
    return None


def issued_to(secret: bytes, tokens: Iterable[ReplyToken], sender: str, code: str) -> bool:
    """Tell whether some token about ``code`` was issued to ``sender``, at any stage."""
    return any(t.code == code and verify(secret, t, sender) for t in tokens)


def _domain(value: str) -> str:
    return value.rpartition("@")[2].strip("<>\"' ").lower()


def _aligned(domain: str, from_domain: str) -> bool:
    # Relaxed alignment (DMARC): the same organizational domain, here approximated by suffix.
    return bool(domain) and (from_domain == domain or from_domain.endswith("." + domain))


def authserv_id(headers: Iterable[str]) -> str | None:
    """Return the authserv-id of the topmost Authentication-Results (RFC 8601), if any."""
    first = next(iter(headers), "")[:4096]
    words = first.partition(";")[0].split()
    return words[0] if words else None


def authenticated(headers: Iterable[str], trusted_id: str | None, sender: str) -> bool:
    """Tell whether the trusted server's topmost Authentication-Results vouches for ``sender``.

    Only the first header counts: our server prepends its own, and anything below it may
    have been written by whoever sent the mail.
    """
    if not trusted_id:
        return False
    first = next(iter(headers), "")[:4096]
    if authserv_id([first]) != trusted_id:
        return False
    rest = first.partition(";")[2]
    from_domain = _domain(sender)
    for resinfo in rest.split(";"):
        found = _RESINFO.search(resinfo)
        if found is None or found[2].lower() != "pass":
            continue
        for _, value in _PROPERTY.findall(found[3]):
            if _aligned(_domain(value), from_domain):
                return True
    return False
