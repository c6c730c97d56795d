"""The files of a request: which travel in a mail, how they are listed, how they are written."""

from __future__ import annotations

import email
import email.policy
import hashlib
import random
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

from mailflow.app.files import (
    RequestFile,
    batches,
    is_tiny_inline,
    kind_label,
    limit_label,
    plan,
    refusal_of,
    size_label,
)
from mailflow.mail.parse import MAX_PARTS, Attachment, parse_message
from mailflow.mail.render import Enclosure, Envelope, MimeBody, Rendered, compose_chunks
from mailflow.store.schema import AttachmentRow

KB = 1024
MB = 1024 * KB


def _file(name: str, size: int, inbound: int = 1, *, available: bool = True) -> RequestFile:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return RequestFile(digest, name, "image/jpeg", size, 1, "a@x.bo", inbound, available)


def test_a_mail_takes_the_files_that_fit_in_their_order() -> None:
    files = [_file("a", 600 * KB), _file("b", 600 * KB), _file("c", 300 * KB), _file("d", 2 * MB)]
    chosen = plan(files, MB, attach=True)
    assert [f.filename for f in chosen.attached] == ["a", "c"]  # b no longer fits, c does
    assert [f.filename for f in chosen.left_out] == ["b", "d"]
    assert plan(files, MB, attach=False).attached == ()  # copies list, never carry
    missing = [_file("x", KB, available=False), _file("y", KB)]
    assert [f.filename for f in plan(missing, MB, attach=True).attached] == ["y"]


def test_archivos_sends_the_rest_in_mails_under_the_bound() -> None:
    files = [_file(n, s) for n, s in [("a", 600 * KB), ("b", 600 * KB), ("c", 300 * KB)]]
    files += [_file("big", 3 * MB), _file("d", 100 * KB)]
    groups = batches(files, MB)
    assert [[f.filename for f in g] for g in groups] == [["a", "c", "d"], ["b"]]
    assert all(sum(f.size for f in g) <= MB for g in groups)
    assert batches([_file("big", 3 * MB)], MB) == []  # never travels by mail


def test_labels_read_as_an_office_writes_them() -> None:
    assert size_label(1_572_864) == "1,5 MB"
    assert size_label(340 * KB) == "340 KB"
    assert size_label(12) == "12 bytes"
    assert limit_label(15 * MB) == "15 MB"
    assert limit_label(int(7.5 * MB)) == "7,5 MB"
    assert kind_label("image/jpeg") == "imagen JPEG"
    assert kind_label("application/pdf") == "documento PDF"
    assert kind_label("video/x-msvideo") == "vídeo MSVIDEO"
    assert kind_label("application/x-unknown") == "application/x-unknown"


def test_tiny_inline_images_are_not_material() -> None:
    def row(size: int, *, inline: bool, kind: str = "image/png") -> AttachmentRow:
        return AttachmentRow(filename="x", content_type=kind, size=size, sha256="0", inline=inline)

    assert is_tiny_inline(row(8 * KB, inline=True))  # a signature logo, a tracking pixel
    assert not is_tiny_inline(row(8 * KB + 1, inline=True))  # a photo pasted in the body
    assert not is_tiny_inline(row(2 * KB, inline=False))  # attached on purpose
    assert not is_tiny_inline(row(2 * KB, inline=True, kind="application/pdf"))


def test_programs_and_empty_files_are_refused() -> None:
    def part(name: str, size: int = 10, kind: str = "application/octet-stream") -> Attachment:
        return Attachment(name, kind, size, "0")

    assert "no admitido (.exe)" in str(refusal_of(part("Factura.PDF.exe")))
    assert "no admitido (.js)" in str(refusal_of(part("script.js")))
    assert "no admitido" in str(refusal_of(part("x.bin", kind="application/x-msdownload")))
    assert "vacío" in str(refusal_of(part("vacio.pdf", 0)))
    assert refusal_of(part("arte-final.png", kind="image/png")) is None


def test_a_mail_with_files_is_written_piece_by_piece_and_reads_back(tmp_path: Path) -> None:
    photo = tmp_path / "a"
    photo.write_bytes(random.Random(1).randbytes(700_001))  # not a multiple of 57
    empty = tmp_path / "b"
    empty.write_bytes(b"")
    rendered = Rendered("Acción requerida: feria", "Hola.\n.línea con punto\n", "<p>Hola</p>")
    envelope = Envelope(
        from_name="Redes Sociales",
        from_address="rrss@ejemplo.gob.bo",
        reply_to="rrss@ejemplo.gob.bo",
        to=["directora@ejemplo.gob.bo"],
        cc=[],
        message_id="<rrss-1@ejemplo.gob.bo>",
        references=[],
        code="RRSS-2026-0042",
        date=datetime(2026, 12, 4, 9, 0, tzinfo=ZoneInfo("America/La_Paz")),
    )
    long_name = "Fotografía del atrio — versión final aprobada por la Dirección Ejecutiva.jpg"
    pieces = list(
        compose_chunks(
            MimeBody(rendered),
            envelope,
            [
                Enclosure(long_name, "image/jpeg", photo),
                Enclosure("vacío.txt", "text/plain", empty),
            ],
        )
    )
    assert max(len(p) for p in pieces) < 400_000  # never the whole file at once
    raw = b"".join(pieces)
    assert raw.isascii() and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content_type() == "multipart/mixed"
    assert str(parsed["Subject"]) == "[RRSS-2026-0042] Acción requerida: feria"
    files = list(parsed.iter_attachments())
    assert [f.get_filename() for f in files] == [long_name, "vacío.txt"]
    assert files[0].get_content() == photo.read_bytes()
    body = parsed.get_body(("plain",))
    assert body is not None and ".línea con punto" in body.get_content()


def test_parts_beyond_the_bound_are_named_not_lost() -> None:
    message = EmailMessage()
    message["From"] = "analista@ejemplo.gob.bo"
    message["Subject"] = "Fotos de la feria"
    message.set_content("Adjunto las fotos.")
    for n in range(300):
        message.add_attachment(b"x", maintype="image", subtype="jpeg", filename=f"foto-{n:03}.jpg")
    mail = parse_message(message.as_bytes(policy=email.policy.SMTP))
    kept = [a.filename for a in mail.attachments]
    dropped = [d.filename for d in mail.dropped]
    assert len(kept) == MAX_PARTS - 2  # the multipart itself and the text are parts too
    assert kept + dropped == [f"foto-{n:03}.jpg" for n in range(300)]
    assert all(f"más de {MAX_PARTS} partes" in d.reason for d in mail.dropped)
