"""Open Outlook's TNEF ``winmail.dat`` into the files and the text it carries.

Outlook sends rich-text mail as one ``application/ms-tnef`` attachment: the screenshot of a
``PUBLICADO`` is inside it, not beside it. :func:`open_tnef` decodes it with ``tnefparse``
(pure Python, no external programs) into plain files and the plain or HTML body. A stream
that does not decode is kept as it came (``winmail.dat``), so nothing is lost. A body kept
only as compressed RTF stays unread (``tnefparse`` needs another library to inflate it);
Outlook sends a ``text/plain`` part beside the TNEF then.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass

from tnefparse import TNEF  # type: ignore[import-untyped]

TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")
MAX_TNEF_FILES = 100


@dataclass(frozen=True)
class TnefFile:
    """One file found inside a TNEF stream."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class TnefContent:
    """What a TNEF stream held: its files, its plain text and its HTML."""

    files: tuple[TnefFile, ...] = ()
    text: str = ""
    html: str = ""


def is_tnef(content_type: str, filename: str) -> bool:
    """Tell whether a part is a TNEF stream, by type or by Outlook's file name."""
    return content_type.lower() in TNEF_TYPES or filename.lower() == "winmail.dat"


def open_tnef(data: bytes) -> TnefContent | None:
    """Decode a TNEF stream, or return None when it is not one (or is broken)."""
    try:
        tnef = TNEF(data, do_checksum=False)
    except Exception:  # tnefparse raises ValueError, IndexError, struct errors on junk
        return None
    files = []
    for attachment in tnef.attachments[:MAX_TNEF_FILES]:
        content = attachment.data if isinstance(attachment.data, bytes) else b""
        name = _filename(attachment)
        name = name.strip("\x00").strip()
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        files.append(TnefFile(name, ctype, content))
    return TnefContent(tuple(files), _text(tnef.body), _text(tnef.htmlbody))


def _filename(attachment: object) -> str:
    """Return an attachment's name: the long MAPI name, else the 8-bit title (cp1252)."""
    try:
        return str(attachment.long_filename() or "")  # type: ignore[attr-defined]
    except (UnicodeDecodeError, AttributeError):
        # tnefparse decodes the title as UTF-8; Outlook writes it in the ANSI code page.
        raw = getattr(attachment, "_name", b"")
        return _text(raw) if isinstance(raw, bytes) else ""


def _text(value: object) -> str:
    """Return a TNEF body as text (tnefparse gives bytes or str, NUL-terminated)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8").rstrip("\x00")
        except UnicodeDecodeError:
            return value.decode("cp1252", errors="replace").rstrip("\x00")
    return value.rstrip("\x00") if isinstance(value, str) else ""
