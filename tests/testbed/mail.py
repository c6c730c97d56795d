"""Send, deliver, append and read real mail through the test bed's servers.

These helpers are what a test uses to play the other side of the daemon: people who write to
it (``send_as``, ``deliver``, ``append``) and people whose mailboxes it writes to
(``wait_for_mail``, ``inbox``, ``fetch_raw``).
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import mimetypes
import re
import smtplib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from pathlib import Path

from imapclient import IMAPClient

from .dovecot import Dovecot
from .smtp import SmtpRelay

# (filename, content, MIME type) or a path whose name and guessed type are used.
Attachment = tuple[str, bytes, str] | Path
Predicate = Callable[[EmailMessage], bool]

_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


def parse(raw: bytes) -> EmailMessage:
    """Parse raw bytes into an EmailMessage with the modern (default) policy."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def message_id_of(raw: bytes) -> str:
    """Return a mail's Message-ID from its header alone: cheap enough to poll a relay's log."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    found = re.search(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", head, re.MULTILINE | re.IGNORECASE)
    if found is None:
        return str(parse(raw)["Message-ID"])  # folded or odd: the parser knows better
    return found.group(1).decode("ascii", "replace")


def build_message(
    from_addr: str,
    to_addrs: Sequence[str],
    subject: str,
    body: str,
    *,
    headers: dict[str, str] | None = None,
    attachments: Iterable[Attachment] = (),
) -> EmailMessage:
    """Build a plain-text message with Date and Message-ID, optional headers and attachments.

    Entries in headers replace the generated ones of the same name (e.g. "Message-ID",
    "To", "In-Reply-To").
    """
    message = EmailMessage()
    generated = {
        "From": from_addr,
        "To": ", ".join(to_addrs),
        "Subject": subject,
        "Date": format_datetime(datetime.now(UTC)),
        # Always give a domain: without one make_msgid asks DNS for our FQDN, which can hang.
        "Message-ID": make_msgid(domain=parseaddr(from_addr)[1].rpartition("@")[2] or "test"),
    }
    for name, value in {**generated, **(headers or {})}.items():
        del message[name]
        message[name] = value
    message.set_content(body)
    for attachment in attachments:
        filename, content, mime = _attachment_parts(attachment)
        maintype, _, subtype = mime.partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message


def _attachment_parts(attachment: Attachment) -> tuple[str, bytes, str]:
    """Return (filename, content, MIME type) of an attachment given either way."""
    if isinstance(attachment, Path):
        mime = mimetypes.guess_type(attachment.name)[0] or "application/octet-stream"
        return attachment.name, attachment.read_bytes(), mime
    return attachment


def send_as(
    relay: SmtpRelay,
    from_addr: str,
    to_addrs: Sequence[str],
    subject: str = "",
    body: str = "",
    *,
    headers: dict[str, str] | None = None,
    attachments: Iterable[Attachment] = (),
    raw: bytes | None = None,
) -> EmailMessage:
    """Send a message through the relay over real SMTP, as from_addr to to_addrs.

    The envelope sender is from_addr's address and the envelope recipients are to_addrs,
    whatever the headers say. With raw, those exact bytes are sent and subject, body,
    headers and attachments are ignored. Return the message sent (parsed back from raw).
    smtplib's exceptions (SMTPRecipientsRefused, SMTPDataError...) propagate.
    """
    if raw is None:
        message = build_message(
            from_addr, to_addrs, subject, body, headers=headers, attachments=attachments
        )
        raw = message.as_bytes(policy=email.policy.SMTP)
    with smtplib.SMTP(relay.host, relay.port, timeout=60) as smtp:
        smtp.sendmail(parseaddr(from_addr)[1], list(to_addrs), raw)
    return parse(raw)


def deliver(dovecot: Dovecot, to_addrs: Sequence[str], raw: bytes, mail_from: str = "") -> None:
    """Deliver raw straight into mailboxes over LMTP, bypassing the relay."""
    with smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=60) as lmtp:
        for rcpt in to_addrs:  # one by one: smtplib reads one reply where LMTP sends several
            lmtp.sendmail(mail_from, [rcpt], raw)


@contextmanager
def imap(dovecot: Dovecot, address: str) -> Iterator[IMAPClient]:
    """Log in as address over IMAP; log out (closing the socket) when the block ends."""
    account = dovecot.account(address)
    client = IMAPClient(account.host, account.port, ssl=False, timeout=60)
    try:
        client.login(account.username, account.password)
        yield client
    finally:
        try:
            client.logout()
        except (OSError, imaplib.IMAP4.error):
            client.shutdown()  # the server is gone: still close our socket


def fetch_raw(dovecot: Dovecot, address: str, folder: str = "INBOX") -> list[bytes]:
    """Return the raw bytes of every message in address's folder, oldest first."""
    with imap(dovecot, address) as client:
        return _fetch_all(client, folder)


def _fetch_all(client: IMAPClient, folder: str) -> list[bytes]:
    """Fetch every message of folder without setting \\Seen."""
    client.select_folder(folder, readonly=True)
    uids = client.search("ALL")
    if not uids:
        return []
    fetched = client.fetch(uids, ["BODY.PEEK[]"])
    return [fetched[uid][b"BODY[]"] for uid in sorted(fetched)]


def inbox(dovecot: Dovecot, address: str, folder: str = "INBOX") -> list[EmailMessage]:
    """Return every message in address's INBOX (or folder), parsed, oldest first."""
    return [parse(raw) for raw in fetch_raw(dovecot, address, folder)]


def wait_for_mail(
    dovecot: Dovecot,
    address: str,
    predicate: Predicate | None = None,
    timeout: float = 10.0,
    *,
    count: int = 1,
    folder: str = "INBOX",
) -> list[EmailMessage]:
    """Wait until address's folder holds at least count messages matching predicate.

    Return all the matching messages, oldest first. On timeout, fail with the subjects of
    what is there, which usually tells why.
    """
    matches = predicate or (lambda _message: True)
    deadline = time.monotonic() + timeout
    with imap(dovecot, address) as client:
        while True:
            messages = [parse(raw) for raw in _fetch_all(client, folder)]
            found = [m for m in messages if matches(m)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                subjects = [m["Subject"] for m in messages]
                raise AssertionError(
                    f"{address}/{folder}: {len(found)} of {count} expected messages after "
                    f"{timeout} s; {len(messages)} there, subjects {subjects}"
                )
            time.sleep(0.1)


def append(
    dovecot: Dovecot,
    address: str,
    raw_bytes: bytes,
    folder: str = "INBOX",
    *,
    flags: Sequence[str] = (),
) -> int:
    """APPEND raw_bytes to address's folder (created if missing); return the new UID."""
    with imap(dovecot, address) as client:
        if not client.folder_exists(folder):
            client.create_folder(folder)
        response = client.append(folder, raw_bytes, flags=tuple(flags))
    match = _APPENDUID.search(response if isinstance(response, bytes) else b"")
    if match is None:
        raise AssertionError(f"APPEND answered without APPENDUID: {response!r}")
    return int(match.group(1))


def recipients(message: EmailMessage) -> list[str]:
    """Return the addresses in a message's To and Cc headers, lower-cased."""
    fields = [str(v) for v in message.get_all("To", []) + message.get_all("Cc", [])]
    return [addr.lower() for _name, addr in getaddresses(fields) if addr]
