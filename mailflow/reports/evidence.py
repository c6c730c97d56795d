"""Export one request as evidence: every mail and file, a timeline, and SHA-256 sums.

``mailflow evidence RRSS-2026-0042 --out solicitud.zip`` writes a ZIP with one folder
named by the code::

    RRSS-2026-0042/index.html         the timeline, readable in any browser
    RRSS-2026-0042/correos/…eml       every mail in and out, in time order
    RRSS-2026-0042/adjuntos/…         every attached file
    RRSS-2026-0042/MANIFEST.sha256    ``sha256sum -c MANIFEST.sha256`` checks all the above

Files are copied from the archive and re-hashed on the way: an archived file that no
longer matches its name (or is gone) stops the export instead of producing evidence
that would not hold.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mailflow.core.model import Procedure, ProductType
from mailflow.errors import MailflowError
from mailflow.reports.poai import environment, short_time
from mailflow.store.archive import CHUNK, Archive
from mailflow.store.record import archive_entries_of, history_of, products_of, request_named
from mailflow.store.schema import ArchiveEntryRow, ArchiveKind, HistoryRow, ProductRow
from mailflow.store.unitofwork import Session

_HEADER_BYTES = 64 * 1024
_SAFE = re.compile(r"[^\w.-]+")


_RANK = {("eml", "in"): 0, ("attachment", "in"): 1, ("attachment", "out"): 3, ("eml", "out"): 3}


class EvidenceError(MailflowError):
    """The evidence cannot be produced (unknown request, missing or altered file)."""


@dataclass(frozen=True)
class Event:
    """Describe one line of the timeline: a mail, a file, or an accepted action."""

    at: datetime
    rank: int  # orders what happened at the same instant: mail in, files, action, mail out
    kind: str  # "entrada", "salida", "adjunto", "accion"
    who: str
    what: str
    stage: str = ""
    note: str = ""
    path: str = ""
    sha256: str = ""


def mail_headers(path: Path) -> dict[str, str]:
    """Return From, To, Subject and Date of an archived mail, decoded for display."""
    with path.open("rb") as handle:
        head = handle.read(_HEADER_BYTES)
    head = re.split(rb"\r?\n\r?\n", head, maxsplit=1)[0]
    parsed = BytesHeaderParser(policy=compat32).parsebytes(head)
    out = {}
    for name in ("from", "to", "subject", "date"):
        value = str(parsed.get(name, ""))[:2000]
        # Broken encoded words are shown as they are.
        with contextlib.suppress(Exception):
            value = str(make_header(decode_header(value)))
        out[name] = " ".join(value.split())
    return out


class EvidenceWriter:
    """Copy files into the ZIP under one folder, re-hashing each into the manifest."""

    def __init__(self, archive: Archive, zf: zipfile.ZipFile, folder: str) -> None:
        self.archive, self.zf, self.folder = archive, zf, folder
        self.manifest: list[tuple[str, str]] = []
        self.problems: list[str] = []

    def copy(self, sha256: str, name: str, at: datetime) -> str:
        """Copy the archived blob ``sha256`` to ``name``; return its path in the ZIP."""
        source = self.archive.locate(sha256)
        if source is None:
            self.problems.append(f"falta en el archivo: {sha256} ({name})")
            return ""
        digest = hashlib.sha256()
        info = zipfile.ZipInfo(f"{self.folder}/{name}", date_time=_zip_time(at))
        info.compress_type = zipfile.ZIP_DEFLATED
        with source.open("rb") as src, self.zf.open(info, "w") as dst:
            while block := src.read(CHUNK):
                digest.update(block)
                dst.write(block)
        if digest.hexdigest() != sha256:
            self.problems.append(f"alterado en el archivo: {source}")
        self.manifest.append((digest.hexdigest(), name))
        return name

    def write(self, name: str, data: bytes, at: datetime) -> None:
        """Write a generated file (the timeline) and list it in the manifest."""
        info = zipfile.ZipInfo(f"{self.folder}/{name}", date_time=_zip_time(at))
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zf.writestr(info, data)
        self.manifest.append((hashlib.sha256(data).hexdigest(), name))

    def finish(self, at: datetime) -> None:
        """Write MANIFEST.sha256 in the format ``sha256sum -c`` reads."""
        lines = "".join(f"{digest}  {name}\n" for digest, name in self.manifest)
        info = zipfile.ZipInfo(f"{self.folder}/MANIFEST.sha256", date_time=_zip_time(at))
        self.zf.writestr(info, lines.encode())


def _zip_time(at: datetime) -> tuple[int, int, int, int, int, int]:
    return (max(at.year, 1980), at.month, at.day, at.hour, at.minute, at.second)


def _filename(name: str) -> str:
    return _SAFE.sub("_", name).strip("._")[:80] or "archivo"


def export_request(
    session: Session,
    archive: Archive,
    code: str,
    out: Path,
    *,
    procedure_of: Any,
    org_name: str,
    zone: ZoneInfo,
    templates_dir: Path,
    now: datetime,
) -> int:
    """Write the evidence ZIP of request ``code`` to ``out``; return how many files it holds."""
    request = request_named(session, code.upper())
    if request is None:
        raise EvidenceError(f"no existe la solicitud {code}; vea `mailflow requests list`")
    procedure: Procedure = procedure_of(request.procedure)
    entries = archive_entries_of(session, request.id)
    history = history_of(session, request.id)
    products = products_of(session, request.id)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.part")
    try:
        with zipfile.ZipFile(partial, "w") as zf:
            writer = EvidenceWriter(archive, zf, request.code)
            events = _copy_files(writer, entries, zone)
            files = {e.sha256: e.path for e in events if e.path}
            events += _actions(history, procedure, zone)
            events.sort(key=lambda e: (e.at, e.rank))
            page = (
                environment(templates_dir)
                .get_template("evidence.html.j2")
                .render(
                    request=request,
                    procedure=procedure,
                    events=events,
                    products=[_product(p, zone) for p in products],
                    files=files,
                    org_name=org_name,
                    generated=now.astimezone(zone),
                    short_time=short_time,
                )
            )
            writer.write("index.html", page.encode("utf-8"), now.astimezone(zone))
            writer.finish(now.astimezone(zone))
        if writer.problems:
            raise EvidenceError(
                "el archivo no respalda esta solicitud (ejecute `mailflow archive verify`): "
                + "; ".join(writer.problems[:10])
            )
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return len(writer.manifest) + 1


def _copy_files(
    writer: EvidenceWriter, entries: Sequence[ArchiveEntryRow], zone: ZoneInfo
) -> list[Event]:
    """Copy each archived mail and attachment once; return their timeline events."""
    events: list[Event] = []
    copied: dict[str, str] = {}
    # Numbered in timeline order: what came in, its files, then what we sent in answer.
    ordered = sorted(entries, key=lambda e: (e.at, _RANK[(e.kind, e.direction)], e.id))
    number = 0
    for entry in ordered:
        at = entry.at.astimezone(zone)
        if entry.kind == ArchiveKind.EML:
            number += 1
            way = "entrada" if entry.direction == "in" else "salida"
            name = f"correos/{number:03d}-{way}-{entry.sha256[:12]}.eml"
        else:
            name = f"adjuntos/{entry.sha256[:12]}-{_filename(entry.filename or 'adjunto')}"
        if entry.sha256 not in copied:
            copied[entry.sha256] = writer.copy(entry.sha256, name, at)
        path = copied[entry.sha256]
        source = writer.archive.locate(entry.sha256)
        if entry.kind == ArchiveKind.EML:
            head = mail_headers(source) if source is not None else {}
            inbound = entry.direction == "in"
            events.append(
                Event(
                    at=at,
                    rank=_RANK[(entry.kind, entry.direction)],
                    kind="entrada" if inbound else "salida",
                    who=head.get("from", "") if inbound else f"para {entry.person or '?'}",
                    what=head.get("subject", ""),
                    path=path,
                    sha256=entry.sha256,
                )
            )
        else:
            events.append(
                Event(
                    at=at,
                    rank=_RANK[(entry.kind, entry.direction)],
                    kind="adjunto",
                    who=entry.person or "",
                    what=f"{entry.filename} ({entry.content_type}, {entry.size} bytes)",
                    path=path,
                    sha256=entry.sha256,
                )
            )
    return events


def _actions(history: Sequence[HistoryRow], procedure: Procedure, zone: ZoneInfo) -> list[Event]:
    """Return one timeline event per accepted action, with its stage's name."""
    events = []
    for h in history:
        stage = procedure.stages.get(h.stage)
        label = f"Etapa {h.stage}" + (f": {stage.name}" if stage else "")
        if stage is not None and stage.responsible:
            label += f" ({stage.responsible})"
        note = h.note or ""
        urls = [u for u in (h.details or {}).get("urls", []) if u not in note]
        events.append(
            Event(
                at=h.at.astimezone(zone),
                rank=2,
                kind="accion",
                who=h.actor,
                what=h.action,
                stage=label,
                note=" ".join(filter(None, [note, *urls])),
            )
        )
    return events


def _product(row: ProductRow, zone: ZoneInfo) -> dict[str, Any]:
    """Return what the timeline shows of one product."""
    return {
        "type": ProductType(row.type).label,
        "urls": row.urls,
        "designer": row.designer or "—",
        "designed_at": short_time(row.designed_at, zone),
        "publisher": row.publisher,
        "published_at": short_time(row.published_at, zone),
        "screenshots": row.screenshots,
    }
