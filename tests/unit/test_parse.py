"""bytes -> InboundMail: headers, bodies, attachments, automatic-mail classification."""

from __future__ import annotations

import contextlib
import hashlib
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailflow.mail.autoreply import AutoKind
from mailflow.mail.parse import (
    MAX_MESSAGE_BYTES,
    InboundMail,
    MailParseError,
    parse_message,
    sanitize_filename,
)

CORPUS = Path(__file__).resolve().parents[1] / "data" / "mail"


def _load(name: str) -> InboundMail:
    return parse_message((CORPUS / name).read_bytes())


def _mail(headers: str, body: str = "hola\n") -> bytes:
    return (headers.strip("\n") + "\n\n" + body).encode("utf-8")


BASE = """From: Ana <ana@ejemplo.gob.bo>
To: rrss@ejemplo.gob.bo
Subject: prueba
Message-ID: <m1@ejemplo.gob.bo>
"""


def test_outlook_headers() -> None:
    mail = _load("outlook_desktop_apruebo_top.eml")
    assert mail.from_address == "mquispe@ejemplo.gob.bo"
    assert mail.from_name == "María Quispe"
    assert mail.to == ("rrss+k7qm2xv9ab@ejemplo.gob.bo",)
    assert mail.delivered_to == ("rrss+k7qm2xv9ab@ejemplo.gob.bo",)
    assert mail.in_reply_to == ("<rrss-k7Qm2xV9aB@ejemplo.gob.bo>",)
    assert mail.thread_ids == ("<rrss-k7Qm2xV9aB@ejemplo.gob.bo>",)
    assert mail.subject == (
        "RE: [RRSS-2026-0042] Verificación de propuesta: Feria de Servicios Digitales 2026"
    )
    assert mail.date == datetime(2026, 11, 20, 10, 31, 7, tzinfo=timezone(timedelta(hours=-4)))
    assert mail.message_id.startswith("<DM6PR04MB6571")
    assert mail.authentication_results[0].startswith("mx.ejemplo.gob.bo; dkim=pass")
    assert mail.text.startswith("APRUEBO")
    assert '<p class="MsoNormal">' in mail.html
    assert mail.auto is AutoKind.HUMAN  # X-Auto-Response-Suppress is on human Outlook mail
    assert not mail.is_automatic


def test_html_only_body_is_converted_with_quote_markers() -> None:
    mail = _load("gmail_android_html_publicado_enlace.eml")
    assert mail.html
    assert mail.text.startswith("Publicado: ver en Instagram <https://www.instagram.com/p/")
    assert "\n> Solicitud [RRSS-2026-0042]" in mail.text


def test_attachments_metadata_and_payload() -> None:
    mail = _load("solicitud_texto_plano.eml")
    names = [a.filename for a in mail.attachments]
    assert names == ["feria_2025_stand.png", "atención firma digital.jpg"]
    png = mail.attachments[0]
    assert png.content_type == "image/png"
    assert png.data.startswith(b"\x89PNG")
    assert png.size == len(png.data)
    assert png.sha256 == hashlib.sha256(png.data).hexdigest()
    assert "data" not in repr(png)


def test_rfc2231_filename_and_path_traversal() -> None:
    assert _load("apple_mail_entrego_cronograma_adjunto.eml").attachments[0].filename == (
        "Propuesta de contenido – Feria 2026.pdf"
    )
    broken = _load("mime_roto_sin_cierre.eml")
    assert broken.attachments[0].filename == "propuesta v2.pdf"
    assert "CloseBoundaryNotFoundDefect" in broken.defects


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ana\\foto.jpg", "foto.jpg"),
        ("a\x00b\x1fc.pdf", "a_b_c.pdf"),
        ("  .oculto.  ", "oculto"),
        ("CON.txt", "_CON.txt"),
        ('x<>:"|?*.png', "x_______.png"),
        ("", "adjunto.bin"),
        ("../", "adjunto.bin"),
        ("a" * 300 + ".pdf", "a" * 116 + ".pdf"),
        ("Cafe\u0301.png", "Café.png"),
    ],
)
def test_sanitize_filename(raw: str, safe: str) -> None:
    assert sanitize_filename(raw) == safe


def test_default_filename_follows_content_type() -> None:
    assert sanitize_filename("", "image/png") == "adjunto.png"


def test_unknown_charset_falls_back() -> None:
    mail = _load("charset_desconocido_rechazo.eml")
    assert "no está confirmada" in mail.text
    assert "José Luis" in mail.text


def test_unsafe_codec_is_not_used() -> None:
    raw = _mail(BASE + "Content-Type: text/plain; charset=punycode", "APRUEBO " + "x" * 50_000)
    start = time.perf_counter()
    mail = parse_message(raw)
    assert time.perf_counter() - start < 2
    assert mail.text.startswith("APRUEBO")


def test_latin1_zimbra_body() -> None:
    assert _load("zimbra_apruebo_comite_latin1.eml").text.startswith("APRUEBO COMITÉ")


def test_broken_boundary_gives_empty_body_not_an_error() -> None:
    mail = _load("mime_roto_frontera_erronea.eml")
    assert mail.text == ""
    assert mail.attachments == ()
    assert "StartBoundaryNotFoundDefect" in mail.defects


@pytest.mark.parametrize(
    ("extra", "kind"),
    [
        ("Auto-Submitted: auto-replied", AutoKind.AUTO_REPLY),
        ("Auto-Submitted: auto-generated; owner-email=x@y", AutoKind.AUTO_GENERATED),
        ("Auto-Submitted: auto-notified", AutoKind.AUTO_GENERATED),
        ("Auto-Submitted: no", AutoKind.HUMAN),
        ("X-Auto-Response-Suppress: All", AutoKind.HUMAN),
        ("X-Autoreply: yes", AutoKind.AUTO_REPLY),
        ("Precedence: bulk", AutoKind.BULK),
        ("Precedence: junk", AutoKind.BULK),
        ("Precedence: list", AutoKind.BULK),
        ("Precedence: auto_reply", AutoKind.AUTO_REPLY),
        ("Return-Path: <>", AutoKind.AUTO_GENERATED),
        ("Return-Path: <ana@ejemplo.gob.bo>", AutoKind.HUMAN),
    ],
)
def test_auto_headers(extra: str, kind: AutoKind) -> None:
    assert parse_message(_mail(BASE + extra)).auto is kind


@pytest.mark.parametrize(
    "subject",
    [
        "Respuesta automática: [RRSS-2026-0042] Verificación",
        "=?utf-8?Q?RESPUESTA_AUTOM=C3=81TICA=3A_x?=",
        "Fuera de la oficina: hasta el lunes",
        "Automatic reply: [RRSS-2026-0042]",
        "Out of Office: Re: x",
        "Out of office AutoReply: x",
    ],
)
def test_out_of_office_subjects(subject: str) -> None:
    mail = parse_message(_mail(BASE.replace("Subject: prueba", f"Subject: {subject}")))
    assert mail.auto is AutoKind.AUTO_REPLY


def test_human_subject_mentioning_vacations_is_human() -> None:
    mail = parse_message(_mail(BASE.replace("prueba", "RE: fuera de la oficina el lunes?")))
    assert mail.auto is AutoKind.HUMAN


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@mx.ejemplo.gob.bo", "postmaster@ejemplo.gob.bo"])
def test_daemon_senders_are_bounces(sender: str) -> None:
    mail = parse_message(_mail(BASE.replace("Ana <ana@ejemplo.gob.bo>", sender)))
    assert mail.auto is AutoKind.BOUNCE


def test_dsn_bounce() -> None:
    mail = _load("bounce_dsn_postfix.eml")
    assert mail.auto is AutoKind.BOUNCE
    assert mail.return_path == "<>"
    assert "could not\nbe delivered" in mail.text
    assert "Reporting-MTA" not in mail.text
    assert any(b"Status: 5.1.1" in a.data for a in mail.attachments)


def test_read_receipt_is_automatic_not_bounce() -> None:
    assert _load("outlook_confirmacion_lectura_mdn.eml").auto is AutoKind.AUTO_GENERATED


def test_attached_message_is_one_attachment() -> None:
    inner = "From: x@y\nSubject: interno\n\nAPRUEBO\n"
    raw = _mail(
        BASE + 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"',
        "--b\nContent-Type: text/plain\n\nreenvío\n--b\nContent-Type: message/rfc822\n\n"
        + inner
        + "--b--\n",
    )
    mail = parse_message(raw)
    assert mail.text.strip() == "reenvío"
    assert [a.filename for a in mail.attachments] == ["adjunto.eml"]
    assert b"APRUEBO" in mail.attachments[0].data


def test_apple_mail_split_text_parts_are_joined() -> None:
    raw = _mail(
        BASE + 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"',
        "--b\nContent-Type: text/plain\n\nENTREGO\n--b\nContent-Type: image/png\n"
        "Content-Disposition: inline; filename=a.png\n\nxx\n--b\nContent-Type: text/plain\n\n"
        "Cronograma: material 04/12/2026\n--b--\n",
    )
    mail = parse_message(raw)
    assert mail.text.startswith("ENTREGO")
    assert "Cronograma" in mail.text
    assert mail.attachments[0].inline


def test_malformed_headers_do_not_raise() -> None:
    raw = _mail(
        'From: "unterminated <ana@ejemplo.gob.bo\nTo: ,,,@,<>\nCc: =?x-unknown?Q?=FF?= <c@d>\n'
        "Date: not a date\nMessage-ID: \nIn-Reply-To: garbage-without-brackets\n"
        "References: <a@b> <a@b>  <c@d>\nSubject: =?utf-8?B?invalid base64?=\n"
    )
    mail = parse_message(raw)
    assert mail.date is None
    assert mail.in_reply_to == ("garbage-without-brackets",)
    assert mail.references == ("<a@b>", "<c@d>")
    assert mail.cc == ("c@d",)


def test_date_in_utc() -> None:
    mail = parse_message(_mail(BASE + "Date: Fri, 20 Nov 2026 14:45:10 +0000"))
    assert mail.date == datetime(2026, 11, 20, 14, 45, 10, tzinfo=UTC)


@pytest.mark.parametrize("raw", [b"", b"   \r\n\r\n"])
def test_empty_input_is_a_parse_error(raw: bytes) -> None:
    with pytest.raises(MailParseError):
        parse_message(raw)


def test_oversized_input_is_a_parse_error() -> None:
    with pytest.raises(MailParseError, match="supera"):
        parse_message(b"x" * (MAX_MESSAGE_BYTES + 1))


def test_non_bytes_is_a_parse_error() -> None:
    with pytest.raises(MailParseError):
        parse_message("From: x@y\n\nhola")  # type: ignore[arg-type]


def test_headers_only_garbage_still_parses() -> None:
    mail = parse_message(b"\xff\xfe\x00garbage without colon\n")
    assert mail.from_address == ""


def test_huge_header_values_are_bounded() -> None:
    raw = _mail(
        BASE
        + "Content-Type: text/plain; "
        + 'a="' * 20_000
        + "\n"
        + "Cc: "
        + "(" * 50_000
        + "\nReferences: "
        + "<a@b> " * 30_000
    )
    start = time.perf_counter()
    parse_message(raw)
    assert time.perf_counter() - start < 5


def test_pathological_html_is_bounded() -> None:
    html = "<div>" * 50_000 + "<a" * 50_000 + "<!--" * 20_000 + "<blockquote>" * 20_000
    raw = _mail(BASE + "Content-Type: text/html; charset=utf-8", html)
    start = time.perf_counter()
    parse_message(raw)
    assert time.perf_counter() - start < 5


def test_deep_nesting_is_bounded() -> None:
    head = BASE + 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b0"'
    body = "".join(
        f'--b{i}\nContent-Type: multipart/mixed; boundary="b{i + 1}"\n\n' for i in range(300)
    )
    body += "--b300\nContent-Type: text/plain\n\nAPRUEBO\n"
    start = time.perf_counter()
    with contextlib.suppress(MailParseError):
        parse_message(_mail(head, body))
    assert time.perf_counter() - start < 5
