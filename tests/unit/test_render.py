"""Mail templates: every one renders in both parts, escapes HTML, and builds a safe message."""

from __future__ import annotations

import email
import email.policy
import random
import re
from dataclasses import replace
from datetime import date, datetime
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mailflow.mail.render import (
    Envelope,
    MimeBody,
    Renderer,
    TemplateError,
    _header,
    compose,
    compose_bytes,
    fecha,
)
from mailflow.ops.sample import TEMPLATES, sample_context

TZ = ZoneInfo("America/La_Paz")
EVIL = '<script>alert("x")</script>'


def context(title: str = "Día del Software Libre") -> dict[str, Any]:
    ctx = sample_context("Agencia de Ejemplo", title)
    ctx["note"] = f"Revisar el logo {EVIL}"
    ctx["request"]["due"] = datetime(2026, 12, 7, 16, 30, tzinfo=TZ)
    return ctx


NAMES = list(TEMPLATES)


def test_every_event_has_a_template() -> None:
    assert set(NAMES) <= set(Renderer().names())


@pytest.mark.parametrize("name", NAMES)
def test_template_renders_both_parts_and_escapes_html(name: str) -> None:
    out = Renderer().render(name, context(title=f"Feria {EVIL}"))
    assert out.subject and "\n" not in out.subject
    assert out.text.strip() and out.html.strip()
    assert "<script>" not in out.html
    assert "&lt;script" not in out.text  # the text part is not HTML: never escaped
    assert "Agencia de Ejemplo" in out.html


def test_subject_cannot_carry_a_header_injection() -> None:
    out = Renderer().render("acknowledgement", context(title="Hola\r\nBcc: todos@x.bo"))
    msg = compose(out, envelope())
    raw = msg.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert "Hola Bcc: todos@x.bo" in str(parsed["Subject"])


def envelope() -> Envelope:
    return Envelope(
        from_name="Redes Sociales",
        from_address="rrss@ejemplo.gob.bo",
        reply_to="rrss+rrss-2026-0042-s2-abcdefghijklmnop@ejemplo.gob.bo",
        to=["directora@ejemplo.gob.bo"],
        cc=["jefe.ugs@ejemplo.gob.bo"],
        message_id="<rrss-rrss-2026-0042-s2-abcdefghijklmnop.1a2b@ejemplo.gob.bo>",
        references=["<CAF123@mail.gmail.com>", "<rrss-x.1@ejemplo.gob.bo>"],
        code="RRSS-2026-0042",
        date=datetime(2026, 12, 4, 9, 0, tzinfo=TZ),
    )


def test_composed_message_threads_and_marks_itself_automatic() -> None:
    msg = compose(Renderer().render("action_needed", context()), envelope())
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["Subject"].startswith("[RRSS-2026-0042] ")
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["X-Auto-Response-Suppress"] == "All"
    assert parsed["In-Reply-To"] == "<rrss-x.1@ejemplo.gob.bo>"
    assert parsed["References"] == "<CAF123@mail.gmail.com> <rrss-x.1@ejemplo.gob.bo>"
    assert parsed.get_content_type() == "multipart/alternative"
    plain = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert plain is not None and "APRUEBO" in plain.get_content()
    assert html is not None and "&lt;script&gt;" in html.get_content()


def test_missing_template_is_a_clear_error() -> None:
    with pytest.raises(TemplateError, match=r"no existe la plantilla de correo nope\.txt\.j2"):
        Renderer().render("nope", {})


def test_undefined_variable_is_an_error_not_silence() -> None:
    with pytest.raises(TemplateError, match="acknowledgement"):
        Renderer().render("acknowledgement", {"org_name": "x"})


def test_institution_override_wins(tmp_path: Any) -> None:
    (tmp_path / "help.txt.j2").write_text(
        '{% extends "_base.txt.j2" %}{% block subject %}Propio{% endblock %}'
        "{% block body %}cuerpo propio{% endblock %}",
        encoding="utf-8",
    )
    out = Renderer(tmp_path).render("help", context())
    assert out.subject == "Propio" and out.text.startswith("cuerpo propio")
    assert "Estimado" in Renderer(tmp_path).render("help", context()).html  # shipped html kept


def test_spanish_dates() -> None:
    assert fecha(date(2026, 12, 25)) == "viernes 25 de diciembre de 2026"
    assert fecha(datetime(2026, 8, 6, 16, 30)) == "jueves 6 de agosto de 2026, 16:30"
    assert fecha(None) == "sin plazo"


# -- compose_bytes: the same bytes without EmailMessage -------------------------------------


def _same_boundary(raw: bytes) -> bytes:
    return re.sub(rb"={15}\d+==", b"=BOUNDARY=", raw)


@pytest.mark.parametrize("name", NAMES)
def test_compose_bytes_writes_what_compose_writes(name: str) -> None:
    rendered = Renderer().render(name, context(title=f"Año {EVIL} " + "largo " * 20))
    for env in (envelope(), replace(envelope(), cc=[], references=[], code=None)):
        expected = compose(rendered, env).as_bytes(policy=email.policy.SMTP)
        assert _same_boundary(compose_bytes(MimeBody(rendered), env)) == _same_boundary(expected)


HEADER_VALUES = [
    "plain ascii subject",
    "=?utf-8?q?Hola?= looks encoded",
    "two  spaces",
    " leading space",
    "Acción requerida",
    "x" * 90,
    "word " * 30,
    '"Quoted Name" <quoted@ejemplo.gob.bo>',
    "Pérez <perez@ejemplo.gob.bo>, otra@ejemplo.gob.bo",
    "a@b.bo, c@d.bo",
    "<not-a-msgid",
    "Mon, 07 Dec 2026 16:30:00 -0400",
    "tab\there",
]


@pytest.mark.parametrize(
    "header", ["Subject", "To", "Reply-To", "Message-ID", "Date", "References"]
)
def test_fast_headers_match_the_registry(header: str) -> None:
    rng = random.Random(header)
    printable = [chr(c) for c in range(32, 127)] + ["é", "\u2014"]
    values = HEADER_VALUES + [
        "".join(rng.choices(printable, k=rng.randint(1, 90))) for _ in range(300)
    ]
    for value in values:
        msg = EmailMessage()
        try:
            msg[header] = value
            expected = email.policy.SMTP.fold_binary(header, msg[header])
        except Exception as exc:  # the registry refuses it: so must we
            with pytest.raises(type(exc)):
                _header(header, value)
            continue
        assert _header(header, value) == expected, value


def test_compose_bytes_refuses_line_breaks_in_headers() -> None:
    rendered = Renderer().render("acknowledgement", context())
    for bad in (
        replace(envelope(), to=["a@b.bo\r\nBcc: x@y.bo"]),
        replace(envelope(), reply_to="r@b.bo\nX: y"),
    ):
        with pytest.raises(ValueError):
            compose(rendered, bad)
        with pytest.raises(ValueError):
            compose_bytes(MimeBody(rendered), bad)


LONG_ID = (
    "<rrss-rrss-2026-0001-s1-ufya2k7fn7v5mosa.a1b2c3d4e5f6"
    "@unidad-de-comunicacion.agencia-ejemplo.gob.bo>"
)


@pytest.mark.parametrize("header", ["In-Reply-To", "References"])
def test_threading_headers_are_never_encoded(header: str) -> None:
    # The header registry RFC 2047-encodes a Message-ID longer than a line (a long domain
    # is enough), and mail clients then cannot thread the answer.
    ids = ["<CAF123@mail.gmail.com>", LONG_ID, "<rrss-x.1@ejemplo.gob.bo>"]
    raw = _header(header, " ".join(ids))
    assert b"=?" not in raw
    parsed = email.message_from_bytes(raw + b"\r\n", policy=email.policy.default)
    assert str(parsed[header]).split() == ids
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


@pytest.mark.parametrize("header", ["Reply-To", "Message-ID"])
def test_one_long_token_matches_the_registry(header: str) -> None:
    value = (
        LONG_ID if header == "Message-ID" else LONG_ID.strip("<>").replace("rrss-rrss", "rrss+rrss")
    )
    msg = EmailMessage()
    msg[header] = value
    assert _header(header, value) == email.policy.SMTP.fold_binary(header, msg[header])
