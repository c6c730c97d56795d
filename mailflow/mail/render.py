"""Render Jinja2 mail templates into complete, threaded, loop-safe messages.

Each template ``<name>.txt.j2`` defines the blocks ``subject`` and ``body``;
``<name>.html.j2`` defines ``body``. Both usually extend ``_base.*.j2``. The institution
may override any template by putting a file of the same name in its templates folder.
"""

from __future__ import annotations

import base64
import re
import secrets
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email import policy, quoprimime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from mailflow.errors import MailflowError

SHIPPED_TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "mail"

_MONTHS = (
    "enero", "febrero", "marzo", "abril", "mayo", "junio",
    "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre",
)  # fmt: skip
_WEEKDAYS = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")


class TemplateError(MailflowError):
    """A mail template is missing or does not render."""


def fecha(value: date | datetime | None) -> str:
    """Format a date (and time) the way a Bolivian office writes it: "lunes 7 de diciembre"."""
    if value is None:
        return "sin plazo"
    text = f"{_WEEKDAYS[value.weekday()]} {value.day} de {_MONTHS[value.month - 1]} de {value.year}"
    if isinstance(value, datetime):
        text += f", {value:%H:%M}"
    return text


def one_line(value: object) -> str:
    """Collapse any whitespace, CR and LF included, so text is safe inside a header."""
    return " ".join(str(value).split())


@dataclass(frozen=True)
class Rendered:
    """The three texts of one mail."""

    subject: str
    text: str
    html: str


class Renderer:
    """Load templates once and render them with Spanish filters, autoescaping HTML."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        folders = [str(p) for p in (templates_dir, SHIPPED_TEMPLATES) if p is not None]
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2")),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._env.filters["fecha"] = fecha
        self._env.filters["one_line"] = one_line

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        """Render template ``name`` with ``context``; raise TemplateError naming the file."""
        try:
            text_t = self._env.get_template(f"{name}.txt.j2")
            html_t = self._env.get_template(f"{name}.html.j2")
            subject = "".join(text_t.blocks["subject"](text_t.new_context(dict(context))))
            return Rendered(
                subject=one_line(subject),
                text=text_t.render(context),
                html=html_t.render(context),
            )
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"no existe la plantilla de correo {exc.name}") from None
        except KeyError:
            raise TemplateError(f"la plantilla {name}.txt.j2 no tiene bloque subject") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"la plantilla de correo {name} falla: {exc}") from None

    def names(self) -> list[str]:
        """Return the names of every template with both a text and an HTML part."""
        every = set(self._env.list_templates())
        return sorted(
            n.removesuffix(".txt.j2")
            for n in every
            if n.endswith(".txt.j2")
            and not n.startswith("_")
            and n.replace(".txt.j2", ".html.j2") in every
        )


@dataclass(frozen=True)
class Envelope:
    """Who a mail comes from and goes to, and where it sits in its thread."""

    from_name: str
    from_address: str
    reply_to: str
    to: Sequence[str]
    cc: Sequence[str]
    message_id: str
    references: Sequence[str]
    code: str | None
    date: datetime


def compose(rendered: Rendered, envelope: Envelope) -> EmailMessage:
    """Build the multipart/alternative message with threading and anti-loop headers."""
    msg = EmailMessage()
    local, _, domain = envelope.from_address.partition("@")
    msg["From"] = Address(one_line(envelope.from_name), local, domain)
    msg["To"] = ", ".join(envelope.to)
    if envelope.cc:
        msg["Cc"] = ", ".join(envelope.cc)
    msg["Reply-To"] = envelope.reply_to
    prefix = f"[{envelope.code}] " if envelope.code else ""
    # Written as subject_header() folds it: the registry's own folding loses spaces.
    folded = subject_header(prefix + rendered.subject).decode("ascii")
    msg.set_raw("Subject", folded.removeprefix("Subject: ").removesuffix("\r\n"))
    msg["Date"] = format_datetime(envelope.date)
    msg["Message-ID"] = envelope.message_id
    if envelope.references:
        msg["In-Reply-To"] = envelope.references[-1]
        msg["References"] = " ".join(envelope.references)
    # RFC 3834: automatic mail, never to be answered automatically; Outlook honours the second.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["Content-Language"] = "es-BO"
    msg.set_content(rendered.text, cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    return msg


# -- the same message, straight to bytes ------------------------------------------------
#
# compose() above is the reference; composing through EmailMessage and its generator costs
# milliseconds a mail (header parsing and refolding, pure-Python QP), most of a backlog's
# outbound time. compose_bytes() writes the very bytes ``compose(...).as_bytes(policy=
# policy.SMTP)`` gives (tests/unit/test_render.py compares them), and MimeBody lets one
# rendering serve every recipient: only the headers differ from one copy to the next.

_SMTP = policy.SMTP
_MAX_LINE = 78
_BOUNDARY_WIDTH = len(repr(sys.maxsize - 1))
# Values the header registry would write back unchanged: printable ASCII, one simple shape
# per kind of header. Anything else takes the registry's own path (encoding, quoting, folds).
_PLAIN = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_ADDRESSES = re.compile(
    r"[A-Za-z0-9._%+=-]+@[A-Za-z0-9.-]+(?:, [A-Za-z0-9._%+=-]+@[A-Za-z0-9.-]+)*"
)
_MSGID = re.compile(r"<[A-Za-z0-9._%+=$-]+@[A-Za-z0-9.-]+>")
_DATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}")
_SHAPES = {"to": _ADDRESSES, "cc": _ADDRESSES, "reply-to": _ADDRESSES, "message-id": _MSGID}
_SHAPES["date"] = _DATE
# One address or Message-ID: the registry writes it on one line whatever its length.
_ONE_TOKEN = {"reply-to": re.compile(r"[A-Za-z0-9._%+=-]+@[A-Za-z0-9.-]+"), "message-id": _MSGID}
# In-Reply-To and References are unstructured to the registry: a Message-ID too long for a
# line (a long domain is enough) comes out RFC 2047 encoded, which breaks threading. These
# are written as what they are, a list of msg-ids folded between ids, never encoded.
_THREADING = {"in-reply-to", "references"}
_THREAD_ID = re.compile(r"<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]+>")


def _msg_ids(name: str, value: str) -> bytes | None:
    """Return a threading header folded between its msg-ids, or None if it holds others."""
    ids = value.split(" ")
    if not all(_THREAD_ID.fullmatch(i) for i in ids):
        return None
    lines, line = [], f"{name}:"
    for msg_id in ids:
        if len(line) + 1 + len(msg_id) > _MAX_LINE:
            lines.append(line)
            line = ""
        line += f" {msg_id}"
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _header(name: str, value: object) -> bytes:
    """Return one header line (folded, RFC 2047 encoded when needed) as the generator would."""
    if isinstance(value, str):
        key = name.lower()
        shape = _SHAPES.get(key, _PLAIN)
        fits = len(name) + 2 + len(value) <= _MAX_LINE and "=?" not in value  # no RFC 2047
        if fits and shape.fullmatch(value):
            return f"{name}: {value}\r\n".encode("ascii")
        if key in _ONE_TOKEN and _ONE_TOKEN[key].fullmatch(value):
            return f"{name}: {value}\r\n".encode("ascii")
        if key in _THREADING and (threading := _msg_ids(name, value)) is not None:
            return threading
        if len(value.splitlines()) > 1:  # what EmailMessage.__setitem__ refuses too
            raise ValueError("Header values may not contain linefeed or carriage return characters")
    return _SMTP.fold_binary(name, _SMTP.header_factory(name, value))


# -- Subject: RFC 2047 written by hand ----------------------------------------------------
#
# The header registry folds a non-ASCII subject into encoded-words that split words and
# drop spaces: "Publicación específica señalización" came out as "…específicaseñalización"
# in every client (whitespace between adjacent encoded-words is not part of the text,
# RFC 2047 §6.2). Here each space that separates two words travels inside an encoded-word
# (as "_"), each encoded-word holds whole words (a word too long for one is cut between
# characters, never inside one), and lines are folded only between encoded-words.

_EW_OPEN, _EW_CLOSE = "=?utf-8?q?", "?="
_EW_TEXT = 75 - len(_EW_OPEN) - len(_EW_CLOSE)  # RFC 2047 §2: an encoded-word ≤ 75 chars
_Q_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_LONGEST_PLAIN = 60  # a longer plain word could not be folded: it is encoded (and cut)


def _q(text: str) -> str:
    """Return ``text`` in RFC 2047 "Q" encoding (§4.2, the strict set of §5 (3))."""
    out = []
    for char in text:
        if char in _Q_SAFE:
            out.append(char)
        elif char == " ":
            out.append("_")
        else:
            out.append("".join(f"={byte:02X}" for byte in char.encode("utf-8")))
    return "".join(out)


def _plain_word(word: str) -> bool:
    """Tell whether a word can stand unencoded in a header: short printable ASCII."""
    return (
        word.isascii()
        and word.isprintable()
        and "=?" not in word
        and "?=" not in word
        and len(word) <= _LONGEST_PLAIN
    )


def _encoded_words(text: str, first: int) -> list[str]:
    """Return ``text`` as encoded-words, each holding whole words (with their spaces).

    The first encoded-word has at most ``first`` characters (it may share the line with
    "Subject:"); the others at most 75.
    """
    budget = first - len(_EW_OPEN) - len(_EW_CLOSE)
    texts, current = [], ""
    for index, word in enumerate(text.split(" ")):
        piece = ("_" if index else "") + _q(word)
        if len(current) + len(piece) > budget and current:
            texts.append(current)
            current, budget = "", _EW_TEXT
        if len(current) + len(piece) <= budget:
            current += piece
            continue
        # A word longer than one encoded-word: cut between characters (=XX stays whole).
        for code in ["_"] * bool(index) + [_q(char) for char in word]:
            if len(current) + len(code) > budget:
                texts.append(current)
                current, budget = "", _EW_TEXT
            current += code
    if current:
        texts.append(current)
    return [f"{_EW_OPEN}{t}{_EW_CLOSE}" for t in texts]


def subject_header(subject: str) -> bytes:
    """Return the Subject header line: plain words while they can be, then RFC 2047.

    The words before the first one that needs encoding (the ``[RRSS-2026-0042]`` code)
    stay plain; the rest becomes encoded-words. Folded to 78 columns between tokens.
    """
    words = one_line(subject).split(" ") if one_line(subject) else []
    plain = 0
    while plain < len(words) and _plain_word(words[plain]):
        plain += 1
    tokens = words[:plain]
    if plain < len(words):
        first = _MAX_LINE - len("Subject: ") if not plain else 75
        tokens += _encoded_words(" ".join(words[plain:]), first)
    lines, line = [], "Subject:"
    for token in tokens:
        if len(line) + 1 + len(token) > _MAX_LINE and line.strip() != "Subject:":
            lines.append(line)
            line = ""
        line += f" {token}"
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


@lru_cache(maxsize=64)
def _from_header(name: str, address: str) -> bytes:
    local, _, domain = address.partition("@")
    return _header("From", Address(one_line(name), local, domain))


def _qp_part(content: str, subtype: str, tail: bytes = b"") -> bytes:
    """Return one text part (headers and quoted-printable body) as set_content writes it."""
    lines = content.encode("utf-8").splitlines()
    body = quoprimime.body_encode((b"\n".join(lines) + b"\n").decode("latin-1"), _MAX_LINE)
    head = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n"
    ).encode("ascii")
    crlf = "\r\n".join(body.split("\n")).encode("ascii")
    return head + tail + b"\r\n" + crlf


def _boundary(avoid: bytes) -> str:
    """Return a boundary like the generator's that no line of ``avoid`` holds."""
    while True:
        token = secrets.randbelow(sys.maxsize)
        boundary = f"{'=' * 15}{token:0{_BOUNDARY_WIDTH}d}=="
        if boundary.encode("ascii") not in avoid:
            return boundary


class MimeBody:
    """The MIME part of one rendered mail (multipart/alternative), built once.

    ``part`` is the multipart/alternative entity itself (to sit inside multipart/mixed
    when the mail carries files); ``raw`` is the same with the message's MIME-Version.
    """

    def __init__(self, rendered: Rendered) -> None:
        self.subject = one_line(rendered.subject)
        text = _qp_part(rendered.text, "plain")
        html = _qp_part(rendered.html, "html", b"MIME-Version: 1.0\r\n")
        boundary = _boundary(text + html)  # like the generator: no line of the parts holds it
        mark = f"--{boundary}".encode("ascii")
        self.part = (
            b"Content-Type: multipart/alternative;\r\n"
            + f' boundary="{boundary}"\r\n\r\n'.encode("ascii")
            + mark + b"\r\n" + text
            + b"\r\n" + mark + b"\r\n" + html
            + b"\r\n" + mark + b"--\r\n"
        )  # fmt: skip
        self.raw = b"MIME-Version: 1.0\r\n" + self.part


def _headers(subject: str, envelope: Envelope) -> bytes:
    """Return the header block of a mail we send, up to (not including) its MIME headers."""
    prefix = f"[{envelope.code}] " if envelope.code else ""
    lines = [
        _from_header(envelope.from_name, envelope.from_address),
        _header("To", ", ".join(envelope.to)),
    ]
    if envelope.cc:
        lines.append(_header("Cc", ", ".join(envelope.cc)))
    lines += [
        _header("Reply-To", envelope.reply_to),
        subject_header(prefix + subject),
        _header("Date", format_datetime(envelope.date)),
        _header("Message-ID", envelope.message_id),
    ]
    if envelope.references:
        lines.append(_header("In-Reply-To", envelope.references[-1]))
        lines.append(_header("References", " ".join(envelope.references)))
    lines.append(b"Auto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: All\r\n")
    # compose() sets Content-Language, but set_content() clears every Content-* header of
    # the message it fills, so it never reaches the mail; the same bytes leave it out too.
    return b"".join(lines)


def compose_bytes(body: MimeBody, envelope: Envelope) -> bytes:
    """Return the bytes of ``compose(rendered, envelope)`` for SMTP, without EmailMessage."""
    return _headers(body.subject, envelope) + body.raw


# -- a mail that carries files, written piece by piece -----------------------------------
#
# The files come from the archive and are base64-encoded a block at a time into the
# archive's copy of the mail: a 15 MB file is never held whole, neither here nor when the
# mail is sent (transport.smtp streams the archived file).


@dataclass(frozen=True)
class Enclosure:
    """One file a mail carries: its name and type, and the archived file holding it."""

    filename: str
    content_type: str
    path: Path


_READ = 57 * 4096  # whole base64 lines (57 bytes each) per read
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def _enclosure_head(enclosure: Enclosure) -> bytes:
    """Return the headers of one attached file (a non-ASCII name is RFC 2231 encoded)."""
    part = EmailMessage(policy=_SMTP)
    kind = enclosure.content_type.lower()
    part["Content-Type"] = kind if _CONTENT_TYPE.fullmatch(kind) else "application/octet-stream"
    part["Content-Transfer-Encoding"] = "base64"
    part.add_header("Content-Disposition", "attachment", filename=one_line(enclosure.filename))
    return b"".join(_SMTP.fold_binary(name, value) for name, value in part.items())


def _base64_of(path: Path) -> Iterator[bytes]:
    """Yield a file base64-encoded in 76-character CRLF lines, a block at a time."""
    with path.open("rb") as handle:
        while block := handle.read(_READ):
            yield base64.encodebytes(block).replace(b"\n", b"\r\n")


def compose_chunks(
    body: MimeBody, envelope: Envelope, enclosures: Sequence[Enclosure]
) -> Iterator[bytes]:
    """Yield a mail carrying ``enclosures`` (multipart/mixed), piece by piece.

    The layout is the one the stdlib generator writes for such a message.
    """
    boundary = _boundary(body.part)  # base64 lines hold no "-": only the text can clash
    mark = f"--{boundary}".encode("ascii")
    yield (
        _headers(body.subject, envelope)
        + b"MIME-Version: 1.0\r\n"
        + f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'.encode("ascii")
        + mark + b"\r\n" + body.part
    )  # fmt: skip
    for enclosure in enclosures:
        yield b"\r\n" + mark + b"\r\n" + _enclosure_head(enclosure) + b"\r\n"
        yield from _base64_of(enclosure.path)
    yield b"\r\n" + mark + b"--\r\n"
