"""The files of a request: what they are, where they came from, which travel in each mail.

The files of a request are its :class:`~mailflow.store.schema.AttachmentRow` rows, whatever
mail brought them (the request itself, a proposal, the final designs, a note): each
knows the stage it was delivered at and who sent it. :func:`files_of` lists them newest
mail first; :func:`plan` picks, in that order, those that fit in one mail under
``[mail] attach_max_mb``; :func:`files_view` is what every template shows of them (the
*Archivos* section). :func:`keep_files` stores the files of an accepted mail and says
which it could not keep, and why.

Tiny inline images (signature logos, tracking pixels) are stored with the mail but
never listed nor forwarded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import Any
from zoneinfo import ZoneInfo

from mailflow.app.context import observations_of
from mailflow.core.model import Procedure
from mailflow.mail.parse import Attachment, InboundMail, tiny_inline
from mailflow.store.archive import Archive
from mailflow.store.catalog import attachment_entry
from mailflow.store.material import request_attachments, request_observations
from mailflow.store.schema import AttachmentRow, InboundRow, RequestRow
from mailflow.store.unitofwork import Session

MB = 1024 * 1024

# Files our mail must never carry: Gmail and Outlook refuse a mail with one of these (and
# they are how malware travels), so forwarding one would lose the whole mail.
# fmt: off
BLOCKED_SUFFIXES = frozenset((
    ".ade", ".adp", ".apk", ".appx", ".appxbundle", ".bat", ".cab", ".chm", ".cmd", ".com",
    ".cpl", ".diagcab", ".diagcfg", ".diagpack", ".dll", ".dmg", ".ex_", ".exe", ".hta",
    ".img", ".ins", ".iso", ".isp", ".jar", ".jnlp", ".js", ".jse", ".lib", ".lnk", ".mde",
    ".mjs", ".msc", ".msi", ".msix", ".msixbundle", ".msp", ".mst", ".nsh", ".pif", ".ps1",
    ".reg", ".scr", ".sct", ".shb", ".sys", ".vb", ".vbe", ".vbs", ".vhd", ".vxd", ".wsc",
    ".wsf", ".wsh", ".xll",
))
# fmt: on
BLOCKED_TYPES = frozenset(
    {
        "application/x-msdownload",
        "application/x-msdos-program",
        "application/x-ms-installer",
        "application/x-msi",
        "application/vnd.microsoft.portable-executable",
        "application/x-dosexec",
        "application/java-archive",
        "application/x-sh",
    }
)


@dataclass(frozen=True)
class RequestFile:
    """One file of a request, as every mail lists it."""

    sha256: str
    filename: str
    content_type: str
    size: int
    stage: int | None
    person: str | None
    inbound_id: int | None
    available: bool = True  # its bytes are in the archive


@dataclass(frozen=True)
class Plan:
    """Which files of a request one mail lists and which it carries."""

    files: tuple[RequestFile, ...]
    attached: tuple[RequestFile, ...]
    limit: int  # bytes
    attaching: bool  # False: a mail that only lists (copies, acknowledgements)

    @property
    def left_out(self) -> tuple[RequestFile, ...]:
        """Return the files this mail lists but does not carry."""
        carried = {f.sha256 for f in self.attached}
        return tuple(f for f in self.files if f.sha256 not in carried)


@dataclass(frozen=True)
class NotKept:
    """A file of an accepted mail that did not join the request, and why (Spanish)."""

    filename: str
    reason: str


@dataclass
class Kept:
    """What :func:`keep_files` did with the files of one mail."""

    rows: list[AttachmentRow] = field(default_factory=list)
    refused: list[NotKept] = field(default_factory=list)
    too_large: list[AttachmentRow] = field(default_factory=list)

    @property
    def listed(self) -> list[AttachmentRow]:
        """Return the rows that are material of the request (not tiny inline images)."""
        return [r for r in self.rows if not is_tiny_inline(r)]


def is_tiny_inline(row: AttachmentRow) -> bool:
    """Tell whether a stored file is a signature logo or a tracking pixel."""
    return tiny_inline(bool(row.inline), row.content_type, row.size)


def files_of(session: Session, request: RequestRow, archive: Archive) -> list[RequestFile]:
    """Return the files of a request: newest mail first, in each mail in its order.

    A file sent twice (a reply that carries the original again) is listed once, with the
    stage and person that brought it first.
    """
    seen: set[str] = set()
    files: list[RequestFile] = []
    for row in request_attachments(session, request.id):
        if row.sha256 in seen or is_tiny_inline(row):
            continue
        seen.add(row.sha256)
        files.append(
            RequestFile(
                sha256=row.sha256,
                filename=row.filename,
                content_type=row.content_type,
                size=row.size,
                stage=row.stage,
                person=row.person,
                inbound_id=row.inbound_id,
                available=archive.locate(row.sha256) is not None,
            )
        )
    # Stable sort: rows are oldest first, so within one mail the order is kept.
    files.sort(key=lambda f: -(f.inbound_id or 0))
    return files


def plan(files: Sequence[RequestFile], limit: int, *, attach: bool) -> Plan:
    """Pick, in order, the files that fit together in one mail of ``limit`` bytes."""
    chosen: list[RequestFile] = []
    room = limit
    for file in files if attach else ():
        if file.available and file.size <= room:
            chosen.append(file)
            room -= file.size
    return Plan(tuple(files), tuple(chosen), limit, attach)


def batches(files: Sequence[RequestFile], limit: int) -> list[list[RequestFile]]:
    """Split files into as few mails as first-fit gives, each at most ``limit`` bytes.

    Files larger than ``limit`` on their own are left out (they never travel by mail).
    """
    out: list[tuple[int, list[RequestFile]]] = []
    for file in files:
        if not file.available or file.size > limit:
            continue
        for index, (used, group) in enumerate(out):
            if used + file.size <= limit:
                group.append(file)
                out[index] = (used + file.size, group)
                break
        else:
            out.append((file.size, [file]))
    return [group for _, group in out]


# -- what mails show ------------------------------------------------------------------

_KINDS = {
    "application/pdf": "documento PDF",
    "application/msword": "documento Word",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "documento Word",
    "application/vnd.oasis.opendocument.text": "documento de texto",
    "application/vnd.ms-excel": "hoja de cálculo Excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "hoja de cálculo Excel",
    "application/vnd.oasis.opendocument.spreadsheet": "hoja de cálculo",
    "application/vnd.ms-powerpoint": "presentación PowerPoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (
        "presentación PowerPoint"
    ),
    "application/zip": "archivo ZIP",
    "application/x-zip-compressed": "archivo ZIP",
    "text/plain": "texto",
    "text/csv": "tabla CSV",
    "message/rfc822": "correo",
}
_MAIN = {"image": "imagen", "video": "vídeo", "audio": "audio", "text": "texto"}


def kind_label(content_type: str) -> str:
    """Return a file type as people name it: "imagen JPEG", "documento PDF"."""
    kind = content_type.lower()
    if kind in _KINDS:
        return _KINDS[kind]
    main, _, sub = kind.partition("/")
    if main in _MAIN:
        sub = sub.removeprefix("x-").removeprefix("vnd.").split("+")[0]
        return f"{_MAIN[main]} {sub.upper()}" if sub else _MAIN[main]
    return kind or "archivo"


def size_label(size: int) -> str:
    """Return a size as a Bolivian office writes it: "1,5 MB", "340 KB", "12 bytes"."""
    if size >= MB:
        return f"{size / MB:.1f} MB".replace(".", ",")
    if size >= 1024:
        return f"{round(size / 1024)} KB"
    return f"{size} bytes"


def limit_label(limit: int) -> str:
    """Return the attachment bound as configured: "15 MB", "7,5 MB"."""
    value = limit / MB
    return (f"{value:g}".replace(".", ",")) + " MB"


def _why_not(file: RequestFile, plan: Plan) -> str:
    if not file.available:
        return "no adjunto: falta en el archivo de mailflow (avise a quien lo administra)"
    if file.size > plan.limit:
        return (
            f"no adjunto: pesa más que el límite de {limit_label(plan.limit)} por correo; "
            "está guardado en el archivo de la solicitud"
        )
    if plan.attaching:
        return f"no adjunto: no cabe en este correo (límite de {limit_label(plan.limit)})"
    return "listado aquí, no adjunto a este aviso"


def files_view(plan: Plan, procedure: Procedure) -> dict[str, Any]:
    """Return the template variables of the Archivos section of one mail."""
    carried = {f.sha256 for f in plan.attached}
    rows = []
    for number, file in enumerate(plan.files, 1):
        stage = procedure.stages.get(file.stage or 0)
        name = stage.name.rstrip(".") if stage else ""
        rows.append(
            {
                "number": number,
                "name": file.filename,
                "kind": kind_label(file.content_type),
                "size": size_label(file.size),
                "stage": file.stage,
                "stage_name": name if len(name) <= 60 else name[:57].rstrip() + "…",
                "person": file.person or "(remitente desconocido)",
                "attached": file.sha256 in carried,
                "status": "adjunto" if file.sha256 in carried else _why_not(file, plan),
            }
        )
    sendable = [f for f in plan.left_out if f.available and f.size <= plan.limit]
    return {
        "files": rows,
        "files_attached": len(carried),
        "files_more": bool(sendable),  # ARCHIVOS would send something
        "files_limit": limit_label(plan.limit),
    }


@dataclass(frozen=True)
class Material:
    """What every mail about one request shows of its files and its observations."""

    files: tuple[RequestFile, ...]
    observations: tuple[dict[str, Any], ...]
    procedure: Procedure
    limit: int  # bytes

    def view(self, *, attach: bool) -> tuple[dict[str, Any], tuple[RequestFile, ...]]:
        """Return the template variables of one mail and the files it carries.

        ``attach`` for a mail that asks its reader to act; False lists the files only.
        """
        chosen = plan(self.files, self.limit, attach=attach)
        variables = {"observations": list(self.observations), **files_view(chosen, self.procedure)}
        return variables, chosen.attached


def material_of(
    session: Session,
    request: RequestRow,
    procedure: Procedure,
    archive: Archive,
    *,
    zone: ZoneInfo,
    limit: int,
) -> Material:
    """Return the files and observations of ``request`` as its mails show them."""
    return Material(
        files=tuple(files_of(session, request, archive)),
        observations=tuple(observations_of(request_observations(session, request.id), zone)),
        procedure=procedure,
        limit=limit,
    )


# -- storing the files of an accepted mail --------------------------------------------


def refusal_of(part: Attachment) -> str | None:
    """Say why a file cannot join a request, or None when it can."""
    suffix = PurePath(part.filename.lower()).suffix
    if suffix in BLOCKED_SUFFIXES or part.content_type.lower() in BLOCKED_TYPES:
        return (
            f"tipo de archivo no admitido ({suffix or part.content_type}): los programas y "
            "scripts no se reenvían (Gmail y Outlook rechazarían el correo que los lleve); "
            "envíelo comprimido con contraseña o como enlace"
        )
    if part.size == 0:
        return "el archivo está vacío (0 bytes)"
    return None


def keep_files(
    session: Session,
    archive: Archive,
    request: RequestRow,
    ledger: InboundRow,
    mail: InboundMail,
    *,
    stage: int,
    now: datetime,
    limit: int,
) -> Kept:
    """Stream each file of ``mail`` into the archive and index it as delivered at ``stage``."""
    kept = Kept(refused=[NotKept(d.filename, d.reason) for d in mail.dropped])
    person = mail.from_address or None
    for part in mail.attachments:
        reason = refusal_of(part)
        if reason is not None:
            kept.refused.append(NotKept(part.filename, reason))
            continue
        suffix = PurePath(part.filename).suffix[:16] or ".bin"
        stored = archive.put_stream(part.chunks(), suffix)
        row = AttachmentRow(
            request_id=request.id,
            inbound_id=ledger.id,
            filename=part.filename,
            content_type=part.content_type,
            size=stored.size,
            sha256=stored.sha256,
            stage=stage,
            person=person,
            inline=part.inline or bool(part.content_id),
        )
        session.add(row)
        session.add(attachment_entry(row, person=person, at=now))
        kept.rows.append(row)
        if row.size > limit and not is_tiny_inline(row):
            kept.too_large.append(row)
    return kept
