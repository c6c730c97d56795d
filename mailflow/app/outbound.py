"""Turn SendMail effects into outbox rows: one rendered message per recipient.

Each recipient gets a copy of their own, because the reply address and the Message-ID
carry a token signed for that person: whoever answers proves who they are. The visible
To/Cc headers still list everybody, so people see who else was told. The template is
rendered and its MIME body encoded once per mail; only the headers differ between
copies. Every rendered
mail is archived (content-addressed ``.eml``) and indexed as it is composed, inside the
caller's transaction, before the commit that queues it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from mailflow.app.context import organization_context
from mailflow.app.files import RequestFile
from mailflow.config import Settings
from mailflow.core.tokens import make_token, message_id, reply_address
from mailflow.mail.render import (
    Enclosure,
    Envelope,
    MimeBody,
    Renderer,
    compose_bytes,
    compose_chunks,
)
from mailflow.store.archive import Archive
from mailflow.store.catalog import outbound_entry
from mailflow.store.schema import OutboxRow, OutboxStatus
from mailflow.transport.smtp import Outgoing

_HEAD_BYTES = 64 * 1024  # enough for the header block of any mail we write


class Composer:
    """Render templates and address them, ready for the outbox."""

    def __init__(self, settings: Settings, renderer: Renderer, archive: Archive) -> None:
        """Compose with ``renderer``; archive every mail in ``archive``."""
        self._settings = settings
        self._renderer = renderer
        self.archive = archive
        self._secret = settings.security.secret.get_secret_value().encode()

    @property
    def domain(self) -> str:
        """Return the domain our Message-IDs are minted in."""
        return self._settings.smtp.from_address.rpartition("@")[2]

    def rows(
        self,
        template: str,
        to: Sequence[str],
        cc: Sequence[str],
        *,
        context: Mapping[str, Any],
        code: str | None,
        stage: int,
        references: Sequence[str],
        now: datetime,
        request_id: int | None,
        deliver_to: Sequence[str] | None = None,
        show_code: bool = True,
        files: Sequence[RequestFile] = (),
    ) -> list[OutboxRow]:
        """Return one pending outbox row per distinct recipient of ``to`` and ``cc``.

        ``deliver_to`` limits who gets this rendering (the headers still show everybody),
        so people in copy can get a for-your-information text of the same mail.
        ``show_code`` False keeps ``code`` out of the subject (it still signs the token).
        ``files`` are attached (their bytes come from the archive).
        """
        rendered = self._renderer.render(
            template, {**organization_context(self._settings), **context}
        )
        body = MimeBody(rendered)  # encoded once; each copy differs only in its headers
        enclosures = self._enclosures(files)
        rows = []
        everyone = deliver_to if deliver_to is not None else (*to, *cc)
        for recipient in dict.fromkeys(a.lower() for a in everyone):
            envelope = self._envelope(
                recipient, to, cc, code=code, stage=stage, references=references, now=now
            )
            if not show_code:
                envelope = replace(envelope, code=None)
            row = OutboxRow(
                message_id=envelope.message_id,
                request_id=request_id,
                kind=template,
                recipients=[recipient],
                raw=b"",
                status=OutboxStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            # Archived before the commit that queues it: the index row rides with the
            # outbox row (relationship cascade), so no caller can forget it.
            if enclosures:
                stored = self.archive.put_stream(compose_chunks(body, envelope, enclosures), ".eml")
                row.eml_sha256 = stored.sha256
                row.files = [f.sha256 for f in files]
                outbound_entry(row, stored.sha256, stored.size)
            else:
                row.raw = compose_bytes(body, envelope)
                outbound_entry(row, self.archive.put(row.raw), len(row.raw))
            rows.append(row)
        return rows

    def _envelope(
        self,
        recipient: str,
        to: Sequence[str],
        cc: Sequence[str],
        *,
        code: str | None,
        stage: int,
        references: Sequence[str],
        now: datetime,
    ) -> Envelope:
        """Address one recipient's copy: their own reply address and Message-ID."""
        smtp = self._settings.smtp
        nonce = secrets.token_hex(6)
        if code is not None:
            token = make_token(self._secret, code, stage, recipient)
            # Without plus-addressing rrss+token@ would bounce: the token then rides
            # in the Message-ID alone, which replies quote in In-Reply-To/References.
            plus = smtp.plus_addressing
            reply_to = reply_address(smtp.from_address, token) if plus else smtp.from_address
            mid = message_id(token, nonce, self.domain)
        else:
            reply_to = smtp.from_address
            mid = f"<rrss-{nonce}@{self.domain}>"
        return Envelope(
            from_name=smtp.from_name,
            from_address=smtp.from_address,
            reply_to=reply_to,
            to=list(to) or [recipient],
            cc=list(cc),
            message_id=mid,
            references=[r for r in references if r][-10:],
            code=code,
            date=now,
        )

    def _enclosures(self, files: Sequence[RequestFile]) -> list[Enclosure]:
        """Return where each file to attach is archived (all of them, or an error)."""
        out = []
        for file in files:
            path = self.archive.locate(file.sha256)
            if path is None:  # files_of() lists such a file as missing, never to attach
                raise ValueError(f"file {file.sha256} of {file.filename!r} is not archived")
            out.append(Enclosure(file.filename, file.content_type, path))
        return out

    def outgoing(self, row: OutboxRow, sender: str) -> Outgoing:
        """Return what the SMTP sender needs to send ``row``: its bytes or its archived file."""
        recipients = tuple(row.recipients)
        if row.eml_sha256 is None:
            return Outgoing(row.id, sender, recipients, row.raw)
        return Outgoing(
            row.id, sender, recipients, b"", self.archive.path_of(row.eml_sha256, ".eml")
        )

    def head_of(self, row: OutboxRow) -> bytes:
        """Return the start of ``row``'s mail (its header block), wherever it is kept."""
        if row.eml_sha256 is None:
            return row.raw[:_HEAD_BYTES]
        try:
            with self.archive.path_of(row.eml_sha256, ".eml").open("rb") as handle:
                return handle.read(_HEAD_BYTES)
        except OSError:
            return b""
