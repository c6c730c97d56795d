"""Turn the raw bytes of one inbound mail into an immutable :class:`InboundMail`.

The parser is total: any bytes give an ``InboundMail`` or a :class:`MailParseError`,
nothing else, and in bounded time. It runs the stdlib parser with a ``compat32`` policy
whose header reads are cut to :data:`MAX_MIME_HEADER_CHARS`: ``policy.default`` parses
structured headers in quadratic time on hostile input (a 60 KB ``Content-Type`` of quotes
takes a minute in CPython 3.11), so display headers are decoded here instead, from the raw
value, with RFC 2047 encoded words and raw 8-bit bytes both accepted. Charsets the codec
registry does not know (``x-unknown``) decode as UTF-8, else Windows-1252, which is what
mislabelled Outlook bodies really are.
"""

from __future__ import annotations

import binascii
import codecs
import hashlib
import quopri
import re
import string
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.header import decode_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import Compat32
from email.utils import getaddresses, parsedate_to_datetime
from functools import partial
from typing import TypeVar

from mailflow.errors import MailflowError
from mailflow.mail.autoreply import (
    AUTOREPLY_HEADERS,
    LIST_HEADERS,
    AutoKind,
    Verdict,
    classify_auto,
)
from mailflow.mail.htmltext import html_to_text
from mailflow.mail.sealed import Sealed, sealed_part, sealed_text, unwrap_signed
from mailflow.mail.spool import Spooled
from mailflow.mail.tnef import is_tnef, open_tnef

MAX_MESSAGE_BYTES = 50 * 1024 * 1024
MAX_HEADER_CHARS = 64 * 1024
MAX_MIME_HEADER_CHARS = 4 * 1024
MAX_DISPLAY_CHARS = 4 * 1024
MAX_CONTENT_TYPES = 2_000
MAX_TEXT_CHARS = 1024 * 1024
MAX_PARTS = 200
MAX_DEPTH = 12
MAX_DROPPED_NAMED = 500  # files beyond the bounds named to the sender, at most
MAX_FILENAME_CHARS = 120
DECODE_SLICE_CHARS = 64 * 1024  # encoded characters decoded at a time for the archive
# Header that :mod:`mailflow.mail.mimestream` puts on a part whose body it moved to a file.
SPOOL_MARKER = "X-Mailflow-Spool"

T = TypeVar("T")
D = TypeVar("D")

# Codecs that are valid Python text encodings but never a mail charset; punycode
# also decodes in quadratic time.
_UNSAFE_CODECS = frozenset({"punycode", "idna", "unicode_escape", "raw_unicode_escape"})
_NOT_BASE64_TEXT = re.compile(r"[^A-Za-z0-9+/]")
# Every byte but the 64 base64 letters ("=" too): ``bytes.translate`` drops them, in C.
NOT_BASE64 = bytes(sorted(set(range(256)) - set(b"+/0123456789" + string.ascii_letters.encode())))
_MSG_ID = re.compile(r"<[^<>\s]{1,998}>")
# Bidirectional controls too: "factura\u202egpj.exe" shows as "factura exe.jpg".
_UNSAFE_NAME_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*\u200e\u200f\u202a-\u202e\u2066-\u2069]')
_WINDOWS_RESERVED = re.compile(r"(?i)^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$")
# fmt: off
_DEFAULT_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "application/pdf": ".pdf",
                "message/rfc822": ".eml", "text/plain": ".txt", "text/html": ".html",
                "message/delivery-status": ".txt", "message/disposition-notification": ".txt",
                "text/rfc822-headers": ".txt"}
# fmt: on


class MailParseError(MailflowError):
    """The bytes cannot be read as a mail at all (empty or over the size bound)."""


class _BoundedPolicy(Compat32):
    """Compat32, but every header read by the MIME machinery sees at most 4 KB."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        """Cut the value before the stdlib's parameter parsing (quadratic) sees it."""
        return str(super().header_fetch_parse(name, value[:MAX_MIME_HEADER_CHARS]))


_POLICY = _BoundedPolicy(max_line_length=0)


def _nothing() -> Iterator[bytes]:
    """Yield no bytes: the content of an attachment built without any."""
    yield from ()


@dataclass(frozen=True)
class Attachment:
    """One attached (or inline non-body) part; its decoded bytes come from ``chunks()``.

    The decoded content is not kept: ``chunks()`` decodes the part's transfer encoding
    anew, piece by piece, so the archive can stream it to disk (base64 and
    quoted-printable, i.e. nearly every attachment; other encodings are already the raw
    bytes and come in one piece).
    """

    filename: str
    content_type: str
    size: int
    sha256: str
    inline: bool = False
    content_id: str = ""
    chunks: Callable[[], Iterator[bytes]] = field(default=_nothing, repr=False, compare=False)

    @property
    def data(self) -> bytes:
        """Return the whole decoded content (for small parts and tests)."""
        return b"".join(self.chunks())

    @property
    def is_material(self) -> bool:
        """Tell whether the part is material (not a signature logo or a tracking pixel)."""
        return not tiny_inline(self.inline or bool(self.content_id), self.content_type, self.size)


# An image shown inside a mail this small is a signature logo or a tracking pixel: it is
# archived with the mail, never forwarded nor listed among a request's files.
TINY_INLINE_BYTES = 8 * 1024


def tiny_inline(inline: bool, content_type: str, size: int) -> bool:
    """Tell whether a file is a signature logo or a tracking pixel: kept, never shown."""
    return inline and content_type.startswith("image/") and size <= TINY_INLINE_BYTES


@dataclass(frozen=True)
class Dropped:
    """A file of the mail that was not read (beyond :data:`MAX_PARTS`), and why (Spanish)."""

    filename: str
    reason: str


@dataclass(frozen=True)
class InboundMail:
    """Everything the core reads from one inbound mail; addresses are lowercased."""

    message_id: str = ""
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    from_address: str = ""
    from_name: str = ""
    reply_to: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    delivered_to: tuple[str, ...] = ()
    return_path: str | None = None
    subject: str = ""
    date: datetime | None = None
    text: str = ""
    html: str = ""
    attachments: tuple[Attachment, ...] = ()
    auto: AutoKind = AutoKind.HUMAN
    auto_reason: str = ""
    authentication_results: tuple[str, ...] = ()
    defects: tuple[str, ...] = ()
    sealed: Sealed = Sealed.NONE
    sealed_reason: str = ""
    dropped: tuple[Dropped, ...] = ()  # files not read: the sender must hear of them

    @property
    def is_automatic(self) -> bool:
        """Tell whether the mail must be archived and never answered."""
        return self.auto is not AutoKind.HUMAN

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Return In-Reply-To then References ids, without repeats, for thread matching."""
        return tuple(dict.fromkeys(self.in_reply_to + self.references))


def parse_message(raw: bytes, spooled: Mapping[str, Spooled] | None = None) -> InboundMail:
    """Parse raw RFC 5322 bytes; raise only :class:`MailParseError`.

    ``spooled`` maps the :data:`SPOOL_MARKER` tokens of a skeleton made by
    :mod:`mailflow.mail.mimestream` to the decoded bodies it moved to files.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MailParseError(f"se esperaban bytes, no {type(raw).__name__}")
    raw = bytes(raw)
    if not raw.strip():
        raise MailParseError("mensaje vacío")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MailParseError(f"mensaje de {len(raw)} bytes supera el límite de {MAX_MESSAGE_BYTES}")
    if raw.lower().count(b"content-type:") > MAX_CONTENT_TYPES:
        raise MailParseError(f"más de {MAX_CONTENT_TYPES} partes MIME")
    try:
        msg = BytesParser(policy=_POLICY).parsebytes(raw)
        return _build(msg, spooled or {})
    except (RecursionError, MemoryError) as exc:
        raise MailParseError(f"estructura MIME ilegible: {type(exc).__name__}") from exc
    except Exception as exc:  # the contract: a typed error only
        raise MailParseError(f"mensaje ilegible: {type(exc).__name__}: {exc}"[:300]) from exc


def _build(msg: Message, spooled: Mapping[str, Spooled]) -> InboundMail:
    """Assemble the dataclass from a parsed message tree."""
    senders = _addresses(msg, "from")
    from_name, from_address = senders[0] if senders else ("", "")
    bodies = _Bodies(spooled=spooled)
    _collect(msg, 0, bodies)
    html = "\n".join(bodies.html or bodies.tnef_html)[:MAX_TEXT_CHARS]
    plain = "\n".join(bodies.plain or bodies.tnef_plain)[:MAX_TEXT_CHARS]
    text = unwrap_signed(plain or html_to_text(html)[:MAX_TEXT_CHARS])
    sealed, sealed_reason = bodies.sealed or sealed_text(text)
    return_path = _header(msg, "return-path") if "return-path" in msg else None
    subject = _header(msg, "subject")
    auto, reason = _classify(msg, from_address, subject, return_path)
    return InboundMail(
        message_id=_header(msg, "message-id").strip(),
        in_reply_to=_msg_ids(_header(msg, "in-reply-to")),
        references=_msg_ids(_header(msg, "references")),
        from_address=from_address,
        from_name=from_name,
        reply_to=tuple(a for _, a in _addresses(msg, "reply-to")),
        to=tuple(a for _, a in _addresses(msg, "to")),
        cc=tuple(a for _, a in _addresses(msg, "cc")),
        delivered_to=tuple(
            a
            for name in ("delivered-to", "x-original-to", "envelope-to")
            for _, a in _addresses(msg, name)
        ),
        return_path=return_path,
        subject=" ".join(subject.split()),
        date=_date(_header(msg, "date")),
        text=text,
        html=html,
        attachments=tuple(bodies.attachments),
        auto=auto,
        auto_reason=reason,
        authentication_results=tuple(_header_all(msg, "authentication-results")),
        defects=tuple(dict.fromkeys(type(d).__name__ for d in bodies.defects)),
        sealed=sealed,
        sealed_reason=sealed_reason,
        dropped=tuple(bodies.dropped),
    )


def _classify(msg: Message, from_address: str, subject: str, return_path: str | None) -> Verdict:
    """Gather the headers auto-reply detection reads and classify the mail."""
    return classify_auto(
        content_type=_safe(msg.get_content_type, "text/plain"),
        report_type=str(_safe(partial(msg.get_param, "report-type"), "") or ""),
        from_address=from_address,
        subject=subject,
        return_path=return_path,
        auto_submitted=_header(msg, "auto-submitted"),
        precedence=_header(msg, "precedence"),
        autoreply_headers=tuple(n for n in AUTOREPLY_HEADERS if n in msg),
        list_id=_header(msg, "list-id"),
        list_headers=tuple(n for n in LIST_HEADERS if n in msg),
    )


@dataclass
class _Bodies:
    """Accumulator for the body walk."""

    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    defects: list[object] = field(default_factory=list)
    parts: int = 0
    spooled: Mapping[str, Spooled] = field(default_factory=dict)
    sealed: tuple[Sealed, str] | None = None  # the first encrypted or opaque part
    tnef_plain: list[str] = field(default_factory=list)  # bodies found inside winmail.dat
    tnef_html: list[str] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)


def _collect(part: Message, depth: int, acc: _Bodies) -> None:
    """Walk the MIME tree (not into attached messages), splitting bodies from attachments."""
    acc.parts += 1
    acc.defects.extend(getattr(part, "defects", []))
    if depth > MAX_DEPTH or acc.parts > MAX_PARTS:
        _name_dropped(part, acc, depth > MAX_DEPTH)
        return
    ctype = _safe(part.get_content_type, "application/octet-stream")
    smime_type = str(_safe(partial(part.get_param, "smime-type"), "") or "")
    sealed = sealed_part(ctype, smime_type)
    if sealed[0] is not Sealed.NONE:
        acc.sealed = acc.sealed or sealed
        return  # the content is a key's business: nothing in it is readable or a file
    if ctype.startswith("multipart/"):
        payload = part.get_payload()
        # A multipart whose boundary never appears has a string payload: nothing readable.
        for sub in payload if isinstance(payload, list) else ():
            if isinstance(sub, Message):
                _collect(sub, depth + 1, acc)
        return
    disposition = _safe(part.get_content_disposition, None)
    filename = _display(str(_safe(part.get_filename, None) or ""))
    if is_body_text(part):
        text = _decode_text(_payload_bytes(part), _safe(part.get_content_charset, None))
        (acc.plain if ctype == "text/plain" else acc.html).append(text)
        return
    stored = _spooled(part, acc.spooled)
    chunks = stored.chunks if stored is not None else _decoded_chunks(part)
    if is_tnef(ctype, filename) and _open_tnef(b"".join(chunks()), acc):
        return
    if stored is not None:
        size, sha256 = stored.size, stored.sha256
    else:
        size, sha256 = _measure(chunks)
    acc.attachments.append(
        Attachment(
            filename=sanitize_filename(filename or "", ctype),
            content_type=ctype,
            size=size,
            sha256=sha256,
            inline=disposition == "inline",
            content_id=_header(part, "content-id").strip().strip("<>"),
            chunks=chunks,
        )
    )


def _measure(chunks: Callable[[], Iterator[bytes]]) -> tuple[int, str]:
    """Return the size and SHA-256 of decoded content, reading it piece by piece."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks():
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _open_tnef(data: bytes, acc: _Bodies) -> bool:
    """Add the files and text of a ``winmail.dat`` to the mail; False if it does not decode."""
    content = open_tnef(data)
    if content is None:
        return False
    for found in content.files:
        digest = hashlib.sha256(found.data).hexdigest()
        acc.attachments.append(
            Attachment(
                filename=sanitize_filename(_display(found.filename), found.content_type),
                content_type=found.content_type,
                size=len(found.data),
                sha256=digest,
                chunks=partial(iter, (found.data,)),
            )
        )
    if content.text.strip():
        acc.tnef_plain.append(content.text)
    if content.html.strip():
        acc.tnef_html.append(content.html)
    return True


def _name_dropped(part: Message, acc: _Bodies, deep: bool) -> None:
    """Name the files under a part beyond the bounds, so their sender can be told."""
    reason = (
        f"está anidado a más de {MAX_DEPTH} niveles de partes MIME"
        if deep
        else f"el correo trae más de {MAX_PARTS} partes y mailflow lee solo las primeras"
    )
    stack = [part]
    while stack and len(acc.dropped) < MAX_DROPPED_NAMED:
        node = stack.pop()
        payload = _safe(node.get_payload, None)
        if _safe(node.get_content_type, "").startswith("multipart/"):
            if isinstance(payload, list):
                stack.extend(reversed([p for p in payload if isinstance(p, Message)]))
            continue
        if is_body_text(node):
            continue
        ctype = _safe(node.get_content_type, "application/octet-stream")
        name = sanitize_filename(_display(str(_safe(node.get_filename, None) or "")), ctype)
        acc.dropped.append(Dropped(name, reason))


def read_headers(block: bytes) -> Message:
    """Parse one header block as :func:`parse_message` would (the bounded policy)."""
    return BytesHeaderParser(policy=_POLICY).parsebytes(block)


def transfer_encoding(part: Message) -> str:
    """Return a part's Content-Transfer-Encoding as the attachment decoder reads it."""
    return _header(part, "content-transfer-encoding").strip().lower()


def is_body_text(part: Message) -> bool:
    """Tell whether a leaf part is read as the mail's text rather than kept as a file."""
    ctype = _safe(part.get_content_type, "application/octet-stream")
    disposition = _safe(part.get_content_disposition, None)
    filename = _display(str(_safe(part.get_filename, None) or ""))
    return ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename


def _spooled(part: Message, spooled: Mapping[str, Spooled]) -> Spooled | None:
    """Return the file holding this part's decoded body, if the splitter moved it there.

    Only tokens the splitter issued count: a sender's own marker header matches nothing.
    """
    if not spooled:
        return None
    for token in _safe(partial(part.get_all, SPOOL_MARKER, []), []) or []:
        found = spooled.get(str(token).strip())
        if found is not None:
            return found
    return None


def _decoded_chunks(part: Message) -> Callable[[], Iterator[bytes]]:
    """Return a function that yields the part's decoded content piece by piece."""
    encoding = transfer_encoding(part)
    payload = part.get_payload()
    if isinstance(payload, str) and encoding == "base64":
        return partial(_base64_chunks, payload)
    if isinstance(payload, str) and encoding == "quoted-printable":
        return partial(_qp_chunks, payload)
    return partial(_whole, part)


def _whole(part: Message) -> Iterator[bytes]:
    """Yield the transfer-decoded payload in one piece (7bit, 8bit, attached messages)."""
    yield _payload_bytes(part)


def _base64_chunks(payload: str) -> Iterator[bytes]:
    """Decode base64 text slice by slice; stray characters are ignored, as mail readers do."""
    carry = b""
    for start in range(0, len(payload), DECODE_SLICE_CHARS):
        text = carry + _base64_letters(payload[start : start + DECODE_SLICE_CHARS])
        cut = len(text) - len(text) % 4
        carry = text[cut:]
        if cut:
            yield binascii.a2b_base64(text[:cut])
    if len(carry) > 1:  # one lone sextet carries no whole byte
        yield binascii.a2b_base64(carry + b"=" * (-len(carry) % 4))


def _base64_letters(text: str) -> bytes:
    """Keep only the base64 letters of ``text``."""
    try:
        return text.encode("ascii").translate(None, NOT_BASE64)
    except UnicodeEncodeError:  # 8-bit bytes kept as surrogates: the slow way drops them too
        return _NOT_BASE64_TEXT.sub("", text).encode("ascii")


def _qp_chunks(payload: str) -> Iterator[bytes]:
    """Decode quoted-printable text a few lines at a time (a soft break never spans two)."""
    start = 0
    while start < len(payload):
        end = payload.find("\n", start + DECODE_SLICE_CHARS)
        end = len(payload) if end < 0 else end + 1
        piece = payload[start:end]
        try:
            raw = piece.encode("ascii", "surrogateescape")
        except UnicodeEncodeError:
            raw = piece.encode("utf-8", "surrogateescape")
        yield quopri.decodestring(raw)
        start = end


def _payload_bytes(part: Message) -> bytes:
    """Return the transfer-decoded payload; attached messages as their own bytes."""
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload
    inner = part.get_payload()
    if isinstance(inner, list):  # message/rfc822, message/delivery-status: header blocks
        blocks = [m for m in inner if isinstance(m, Message)]
        return b"\n".join(_safe(partial(m.as_bytes, policy=_POLICY), b"") for m in blocks)
    return str(inner).encode("utf-8", "surrogateescape") if inner else b""


def _decode_text(data: bytes, charset: str | None) -> str:
    """Decode body bytes; unknown or unsafe charsets fall back to UTF-8, then Windows-1252."""
    codec = None
    if charset:
        try:
            codec = codecs.lookup(charset.strip().strip('"')).name
        except (LookupError, ValueError):
            codec = None
    if codec in _UNSAFE_CODECS or (codec and codec.endswith("_codec")):
        codec = None
    if codec is not None:
        try:
            return data.decode(codec, errors="replace")
        except (LookupError, ValueError, TypeError):
            codec = None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def sanitize_filename(name: str, content_type: str = "application/octet-stream") -> str:
    """Return a safe single-component file name (no paths, controls or reserved names)."""
    name = unicodedata.normalize("NFC", str(name))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME_CHARS.sub("_", name)
    name = " ".join(name.split()).strip(" .")
    if _WINDOWS_RESERVED.match(name):
        name = f"_{name}"
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        ext = ext if dot and len(ext) <= 10 else ""
        keep = MAX_FILENAME_CHARS - len(ext) - (1 if ext else 0)
        name = f"{(stem or name)[:keep].rstrip(' .')}{'.' + ext if ext else ''}"
    return name or f"adjunto{_DEFAULT_EXT.get(content_type, '.bin')}"


def _header(msg: Message, name: str) -> str:
    """Return the first value of a header, decoded, or ``""``; never raise."""
    values = _header_all(msg, name)
    return values[0] if values else ""


def _header_all(msg: Message, name: str) -> list[str]:
    """Return every value of a header, unfolded and decoded for display."""
    return [_display(raw) for raw in _raw_all(msg, name)]


def _raw_all(msg: Message, name: str) -> list[str]:
    """Return every raw value of a header (8-bit bytes decoded, bounded, unfolded)."""
    out = []
    for key, value in _safe(msg.raw_items, iter(())):
        if key.lower() == name:
            text = str(value)[:MAX_HEADER_CHARS]
            data = text.encode("ascii", "surrogateescape")
            out.append(_unfold(text if data.isascii() else _decode_text(data, None)))
    return out


def _display(value: str) -> str:
    """Decode RFC 2047 encoded words (any charset, broken ones kept as they are)."""
    value = value[:MAX_DISPLAY_CHARS]
    if "=?" not in value:
        return value
    chunks = _safe(partial(decode_header, value), [(value, None)])
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, bytes):
            out.append(_decode_text(chunk, charset))
        else:
            out.append(chunk)
    return "".join(out)


def _addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    """Return ``(display name, lowercased address)`` pairs of an address header."""
    values = _raw_all(msg, name)
    pairs = _safe(partial(getaddresses, values), [])
    return [(_display(n).strip(), a.strip().lower()) for n, a in pairs if "@" in a]


def _msg_ids(value: str) -> tuple[str, ...]:
    """Return the ``<id>`` tokens of In-Reply-To / References, in order, without repeats."""
    ids = _MSG_ID.findall(value[:MAX_HEADER_CHARS])
    if not ids and value.strip():
        ids = [value.split(maxsplit=1)[0]]
    return tuple(dict.fromkeys(ids))


def _date(value: str) -> datetime | None:
    """Parse a Date header, or return None when it is missing or nonsense."""
    if not value.strip():
        return None
    return _safe(lambda: parsedate_to_datetime(value), None)


def _unfold(value: str) -> str:
    """Join folded header lines into one."""
    return re.sub(r"\r?\n[ \t]*", " ", value).strip()


def _safe(call: Callable[[], T], default: D) -> T | D:
    """Call ``call()`` and return ``default`` if the stdlib raises on odd input."""
    try:
        return call()
    except Exception:  # header and MIME helpers raise many unrelated types
        return default
