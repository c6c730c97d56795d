"""Signed reply tokens: prove that a reply answers a mail we sent to that very person.

A token names a request code and a stage and carries an HMAC over them and the
recipient's address. It travels in two places so that it survives servers without
plus-addressing (Exchange, Microsoft 365 by default):

- the reply address ``rrss+<token>@domain`` of the mail, and
- our ``Message-ID`` ``<rrss-<token>.<nonce>@domain>``, which every client copies into
  the ``In-Reply-To``/``References`` of a reply.

Tokens are lower case because some servers fold the local part's case. Pure module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

_MAC_BYTES = 10  # 80 bits, 16 base32 characters: forging one by guessing is hopeless
_TOKEN = re.compile(r"([a-z][a-z0-9]{1,9}-\d{4}-\d{4,8})-s(\d{1,2})-([a-z2-7]{16})")


@dataclass(frozen=True)
class ReplyToken:
    """A token as read from a mail: which request and stage it claims, and its MAC."""

    code: str
    stage: int
    mac: str

    @property
    def text(self) -> str:
        """Return the token as it is written into addresses and Message-IDs."""
        return f"{self.code.lower()}-s{self.stage}-{self.mac}"


def _mac(secret: bytes, code: str, stage: int, recipient: str) -> str:
    message = f"{code.upper()}|{stage}|{recipient.strip().lower()}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.b32encode(digest).decode("ascii").lower()


def make_token(secret: bytes, code: str, stage: int, recipient: str) -> ReplyToken:
    """Return the token for mail about ``code`` at ``stage`` sent to ``recipient``."""
    return ReplyToken(code=code.upper(), stage=stage, mac=_mac(secret, code, stage, recipient))


def verify(secret: bytes, token: ReplyToken, sender: str) -> bool:
    """Tell whether ``token`` was issued to ``sender`` (constant-time comparison)."""
    expected = _mac(secret, token.code, token.stage, sender)
    return hmac.compare_digest(expected, token.mac)


def reply_address(mailbox: str, token: ReplyToken) -> str:
    """Return ``local+token@domain`` for the shared ``mailbox`` address."""
    local, _, domain = mailbox.partition("@")
    return f"{local}+{token.text}@{domain}"


def message_id(token: ReplyToken, nonce: str, domain: str) -> str:
    """Return a unique Message-ID that carries ``token`` (``nonce`` makes it unique)."""
    return f"<rrss-{token.text}.{nonce}@{domain}>"


def find_tokens(texts: Iterable[str]) -> list[ReplyToken]:
    """Return every well-formed token found in addresses or Message-IDs, in order, once each."""
    found: dict[str, ReplyToken] = {}
    for text in texts:
        for match in _TOKEN.finditer(text[:4096].lower()):
            token = ReplyToken(match[1].upper(), int(match[2]), match[3])
            found.setdefault(token.text, token)
    return list(found.values())


def is_our_address(sender: str, ours: str) -> bool:
    """Tell whether ``sender`` is our own address or one of its ``+token`` variants.

    Mail from ourselves that comes back (a forward, a list) must never be answered.
    """
    ours = ours.lower()
    local, _, domain = ours.partition("@")
    sender = sender.lower()
    return sender == ours or (sender.startswith(local + "+") and sender.endswith("@" + domain))
