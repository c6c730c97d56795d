"""Read a large spooled message without holding it: big bodies go to files, a skeleton is parsed.

The stdlib parser holds a message several times over (lines, joined payload, decoded
copy: about 7.7× a 20 MB attachment), and reads it line by line in Python. :func:`split`
reads the bytes once, in whole lines (many in one slice where none can be a boundary),
and follows MIME structure exactly as ``email.feedparser`` does (RFC 2046:
boundaries of every enclosing multipart end a part, repeated boundary lines, preamble,
epilogue, a missing closing boundary, ``multipart/digest`` defaults). Each large leaf
part that is a file (not the mail's text, not an attached message) is decoded as it is
read (base64, quoted-printable, or none) into its own spool file, hashed while writing;
in the skeleton, its body is dropped and a :data:`~mailflow.mail.parse.SPOOL_MARKER` header
names the file. Everything else is copied verbatim, so :func:`~mailflow.mail.parse.parse_message`
on the skeleton sees the same tree, headers and defects as on the whole message, and the
attachments get the same names, sizes and SHA-256 as before.

Whatever this reader cannot follow exactly (8-bit bytes in a base64 body, a huge header
block, very deep nesting, a boundary-like line longer than a read) raises
:class:`UnsplittableError`, and :func:`read_mail` falls back to the whole-message parse.
"""

from __future__ import annotations

import binascii
import io
import itertools
import quopri
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import BinaryIO, Protocol

from mailflow.mail.parse import (
    DECODE_SLICE_CHARS,
    MAX_CONTENT_TYPES,
    MAX_MESSAGE_BYTES,
    NOT_BASE64,
    SPOOL_MARKER,
    InboundMail,
    MailParseError,
    is_body_text,
    parse_message,
    read_headers,
    transfer_encoding,
)
from mailflow.mail.spool import CHUNK, RawMail, Spooled, SpoolWriter, head_of, size_of

SPOOL_PART_BYTES = 256 * 1024  # a leaf body larger than this (encoded) leaves the skeleton
# A mail in memory this large is split too (the stdlib parser is line by line in Python:
# 33 ms for a 1.9 MB mail with a photo, against 9 ms split, part file written).
SPLIT_FROM_BYTES = 2 * SPOOL_PART_BYTES
MAX_HEADER_BLOCK = 256 * 1024
MAX_NESTING = 60
LINE_PIECE = 64 * 1024  # a longer line is read in pieces
_LINE_END = re.compile(rb"\r\n|\r(?!\n)|\n")
_HEADER_LINE = re.compile(rb"^(From |[\041-\071\073-\176]*:|[\t ])")  # feedparser.headerRE
_BLANK = re.compile(rb"\r\n|\r|\n")
_RAW = ("", "7bit", "8bit", "binary")
_CONTENT_TYPE = b"content-type:"

_Piece = tuple[bytes, bool]  # a line (or a piece of a long one), and whether it starts a line


class UnsplittableError(Exception):
    """The message has a shape this reader does not follow exactly: parse it whole."""


@dataclass
class Split:
    """The skeleton to parse, the files its markers name, and a count the parser checks."""

    skeleton: bytes
    parts: dict[str, Spooled] = field(default_factory=dict)
    content_types: int = 0


class _Decoder(Protocol):
    def feed(self, data: bytes) -> None: ...

    def finish(self) -> None: ...


class _Lines:
    """Lines as feedparser cracks them (CRLF, CR or LF), with its false-EOF boundary stack."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.buffer = b""
        self.pos = 0
        self.eof = False
        self.line_start = True
        self.tail = b""
        self.content_types = 0
        self.pushed: list[_Piece] = []
        self.boundaries: list[re.Pattern[bytes]] = []

    def readline(self) -> _Piece | None:
        """Return the next piece, or None at the end or at a line an open boundary matches."""
        item = self.pushed.pop() if self.pushed else self._next()
        if item is None:
            return None
        if item[1] and any(b.match(item[0]) for b in self.boundaries):
            self.pushed.append(item)
            return None
        return item

    def unread(self, item: _Piece) -> None:
        """Put a piece back; the next readline returns it."""
        self.pushed.append(item)

    def body(self) -> Iterator[bytes]:
        """Yield what ``readline`` would up to the next boundary, many whole lines at a time.

        Only a line that starts with ``--`` can match a boundary, so the lines before the
        next such line (or the end of the buffer) are taken in one slice; whatever cannot be
        decided from the buffer alone goes through ``readline``, which stays the reference.
        """
        while True:
            block = self._block()
            if block is None:
                item = self.readline()
                if item is None:
                    return
                block = item[0]
            yield block

    def _block(self) -> bytes | None:
        """Take whole buffered lines before the next one starting with ``--``, or None."""
        buffer, start = self.buffer, self.pos
        if self.pushed or not self.line_start or buffer.startswith(b"--", start):
            return None
        limit = len(buffer)
        if not self.eof and buffer.endswith(b"\r"):  # maybe the first half of a CRLF
            limit -= 1
        if limit - start < 2:
            return None
        ends = [
            found
            for probe in (b"\n--", b"\r--")
            if (found := buffer.find(probe, start, limit)) >= 0
        ]
        end = (
            min(ends)
            if ends
            else max(buffer.rfind(b"\n", start, limit), buffer.rfind(b"\r", start, limit))
        )
        if end < start:
            return None  # no whole line buffered: readline reads more (or cuts a long one)
        block = buffer[start : end + 1]
        self.pos = end + 1
        if b":" in block:  # a Content-Type never spans a line end: count whole lines at once
            self.content_types += block.lower().count(_CONTENT_TYPE)
        return block

    def _next(self) -> _Piece | None:
        while True:
            found = _LINE_END.search(self.buffer, self.pos)
            pending_cr = (
                found is not None
                and found.group() == b"\r"
                and found.end() == len(self.buffer)
                and not self.eof
            )
            if found is not None and not pending_cr:
                return self._take(found.end(), ends=True)
            if self.eof:
                return (
                    self._take(len(self.buffer), ends=True) if self.pos < len(self.buffer) else None
                )
            if len(self.buffer) - self.pos >= LINE_PIECE:
                cut = self.pos + LINE_PIECE
                if self.line_start and self.buffer.startswith(b"--", self.pos):
                    raise UnsplittableError("a boundary-like line longer than a read")
                return self._take(cut - (self.buffer[cut - 1 : cut] == b"\r"), ends=False)
            block = self.source.read(CHUNK)
            self.buffer = self.buffer[self.pos :] + block
            self.pos = 0
            self.eof = not block

    def _take(self, end: int, *, ends: bool) -> _Piece:
        piece = self.buffer[self.pos : end]
        self.pos = end
        starts = self.line_start
        self.line_start = ends
        if b":" in piece:  # never in base64 lines: most lines skip the lower-casing
            self.content_types += (self.tail + piece).lower().count(_CONTENT_TYPE)
        self.tail = b"" if ends else piece[-(len(_CONTENT_TYPE) - 1) :]
        return piece, starts


class _Splitter:
    def __init__(self, source: BinaryIO, workdir: Path | None, threshold: int) -> None:
        self.lines = _Lines(source)
        self.workdir = workdir
        self.threshold = threshold
        self.out: list[bytes] = []
        self.parts: dict[str, Spooled] = {}

    def part(self, parent_type: str, in_multipart: bool, depth: int) -> None:
        """Copy (or spool) one message or body part, mirroring ``FeedParser._parsegen``."""
        if depth > MAX_NESTING:
            raise UnsplittableError("nested too deep")
        headers, blank = self._headers()
        try:
            msg = read_headers(b"".join(headers))
            if parent_type == "multipart/digest":
                msg.set_default_type("message/rfc822")
            ctype = msg.get_content_type()
            boundary = msg.get_boundary() if ctype.startswith("multipart/") else None
        except Exception as exc:  # the whole parse meets the same trouble and reports it
            raise UnsplittableError(f"header block: {type(exc).__name__}") from exc
        kind = (
            _spool_kind(msg) if blank and not ctype.startswith(("multipart/", "message/")) else None
        )
        if kind is not None:
            self._leaf(headers, blank, kind, in_multipart)
            return
        self.out += headers
        if blank:
            self.out.append(blank)
        if boundary is not None:
            self._multipart(boundary, ctype, depth)
        self._copy_rest()

    def _headers(self) -> tuple[list[bytes], bytes]:
        """Read a header block; return its lines and the blank line that ended it (or b"")."""
        headers: list[bytes] = []
        size = 0
        while (item := self.lines.readline()) is not None:
            piece, starts = item
            if starts and not _HEADER_LINE.match(piece):
                if _BLANK.match(piece):
                    return headers, piece
                self.lines.unread(item)  # no separator: this line starts the body
                break
            headers.append(piece)
            size += len(piece)
            if size > MAX_HEADER_BLOCK:
                raise UnsplittableError("header block too large")
        return headers, b""

    def _multipart(self, boundary: str, ctype: str, depth: int) -> None:
        try:
            separator = b"--" + boundary.encode("ascii", "surrogateescape")
        except UnicodeEncodeError:
            return  # no line of the message can match it: all is preamble
        pattern = re.compile(
            b"(?P<sep>"
            + re.escape(separator)
            + rb")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
        )
        while (item := self.lines.readline()) is not None:
            piece, starts = item
            found = pattern.match(piece) if starts else None
            self.out.append(piece)
            if found is None:
                continue  # the preamble (after a part, only a boundary can come)
            if found.group("end"):
                return  # the epilogue follows; the caller copies it
            while (again := self.lines.readline()) is not None:
                if not (again[1] and pattern.match(again[0])):
                    self.lines.unread(again)
                    break
                self.out.append(again[0])
            self.lines.boundaries.append(pattern)
            self.part(ctype, True, depth + 1)
            self.lines.boundaries.pop()

    def _copy_rest(self) -> None:
        self.out += self.lines.body()

    def _leaf(self, headers: list[bytes], blank: bytes, kind: str, in_multipart: bool) -> None:
        """Keep a small body in the skeleton; decode a large one into a file."""
        held: list[bytes] = []
        size = 0
        blocks = self.lines.body()
        for block in blocks:
            held.append(block)
            size += len(block)
            if size > self.threshold:
                break
        else:
            self.out += [*headers, blank, *held]
            return
        token = secrets.token_hex(16)
        with SpoolWriter(self.workdir, ".part") as writer:
            decoder = _decoder(kind, writer)
            pending = b""
            for piece in itertools.chain(held, blocks):
                if kind != "raw" and not piece.isascii():
                    raise UnsplittableError("8-bit bytes in an encoded body")
                decoder.feed(pending)
                pending = piece
            if in_multipart:  # the line break before a boundary belongs to the boundary
                pending = pending[: len(pending) - _eol_length(pending)]
            decoder.feed(pending)
            decoder.finish()
            self.parts[token] = writer.finish()
        self.out += [*headers, f"{SPOOL_MARKER}: {token}".encode() + blank, blank]


def _eol_length(data: bytes) -> int:
    """Return the length of the line break ``data`` ends with (CRLF, CR or LF), else 0."""
    if data.endswith(b"\r\n"):
        return 2
    return 1 if data.endswith((b"\r", b"\n")) else 0


def _spool_kind(msg: Message) -> str | None:
    """Say how a leaf's body is decoded when spooled, or None to keep it in the skeleton."""
    if is_body_text(msg):
        return None
    ours = transfer_encoding(msg)
    if ours in ("base64", "quoted-printable"):
        return ours
    try:
        stdlib = str(msg.get("content-transfer-encoding", "")).lower()
    except Exception:  # a header the stdlib cannot read: leave the part to it
        return None
    return "raw" if ours in _RAW and stdlib in _RAW else None


def _decoder(kind: str, writer: SpoolWriter) -> _Decoder:
    if kind == "base64":
        return _Base64(writer)
    if kind == "quoted-printable":
        return _QuotedPrintable(writer)
    return _Copy(writer)


class _Copy:
    def __init__(self, writer: SpoolWriter) -> None:
        self.writer = writer

    def feed(self, data: bytes) -> None:
        self.writer.write(data)

    def finish(self) -> None:
        pass


class _Base64:
    """Decode as :func:`mailflow.mail.parse._base64_chunks` does: stray characters skipped."""

    def __init__(self, writer: SpoolWriter) -> None:
        self.writer = writer
        self.held: list[bytes] = []
        self.size = 0
        self.carry = b""

    def feed(self, data: bytes) -> None:
        self.held.append(data)  # lines are short: decode them a slice at a time
        self.size += len(data)
        if self.size >= DECODE_SLICE_CHARS:
            self._decode()

    def _decode(self) -> None:
        text = self.carry + b"".join(self.held).translate(None, NOT_BASE64)
        self.held.clear()
        self.size = 0
        cut = len(text) - len(text) % 4
        self.carry = text[cut:]
        if cut:
            self.writer.write(binascii.a2b_base64(text[:cut]))

    def finish(self) -> None:
        self._decode()
        if len(self.carry) > 1:  # one lone sextet carries no whole byte
            self.writer.write(binascii.a2b_base64(self.carry + b"=" * (-len(self.carry) % 4)))


class _QuotedPrintable:
    """Decode a few lines at a time, cut only after a line feed (as ``_qp_chunks`` does)."""

    def __init__(self, writer: SpoolWriter) -> None:
        self.writer = writer
        self.held = bytearray()

    def feed(self, data: bytes) -> None:
        # Cut where line-by-line feeding did: at the first line feed once a slice is held.
        self.held += data
        while (end := self.held.find(b"\n", DECODE_SLICE_CHARS - 1)) >= 0:
            self.writer.write(quopri.decodestring(bytes(self.held[: end + 1])))
            del self.held[: end + 1]

    def finish(self) -> None:
        if self.held:
            self.writer.write(quopri.decodestring(bytes(self.held)))
            self.held.clear()


def split(source: BinaryIO, workdir: Path | None, threshold: int = SPOOL_PART_BYTES) -> Split:
    """Read a message once; return its skeleton and the files of its large parts."""
    splitter = _Splitter(source, workdir, threshold)
    try:
        splitter.part("", False, 0)
    except BaseException:
        for stored in splitter.parts.values():
            stored.discard()
        raise
    return Split(b"".join(splitter.out), splitter.parts, splitter.lines.content_types)


@contextmanager
def read_mail(
    raw: RawMail, workdir: Path | None, threshold: int = SPOOL_PART_BYTES
) -> Iterator[InboundMail]:
    """Parse a message, in memory or spooled; the part files last until the block ends.

    A mail held in memory is split too once it is large enough to have a part to spool:
    splitting and parsing the skeleton cost a fraction of the stdlib's line-by-line parse.
    Raise only :class:`MailParseError`, with the same reasons as :func:`parse_message`.
    """
    if isinstance(raw, bytes) and len(raw) < SPLIT_FROM_BYTES:
        yield parse_message(raw)
        return
    size = size_of(raw)
    if size > MAX_MESSAGE_BYTES:
        raise MailParseError(f"mensaje de {size} bytes supera el límite de {MAX_MESSAGE_BYTES}")
    try:
        with io.BytesIO(raw) if isinstance(raw, bytes) else raw.open() as handle:
            parts = split(handle, workdir, threshold)
    except UnsplittableError:
        parts = None
    if parts is None:  # held whole, as before this reader existed
        yield parse_message(head_of(raw, size + 1))
        return
    try:
        if parts.content_types > MAX_CONTENT_TYPES:
            raise MailParseError(f"más de {MAX_CONTENT_TYPES} partes MIME")
        if not parts.parts and not parts.skeleton.strip():
            raise MailParseError("mensaje vacío")
        yield parse_message(parts.skeleton, parts.parts)
    finally:
        for stored in parts.parts.values():
            stored.discard()
