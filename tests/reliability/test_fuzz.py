"""Malformed input at scale, pure half: every text reader takes anything, and takes it in time.

tests/unit/test_parse_properties.py fuzzes the MIME parser with small inputs. Here the
hypothesis runs feed every reader the daemon applies to a mail (reply text, intake form,
cronograma, HTML, dates, loop detection, routing, tokens, direct posts, the designer
line) with strings built from the characters their regexes care about, repeated up to
tens of thousands of times: the shape that makes a backtracking regex quadratic. They
may return nothing useful, never raise. The adversarial cases then give each reader a
megabyte of its worst input; a quadratic regex there takes hours, so the suite's hang
guard (pytest-timeout, marked below) fails the test instead of the build hanging.
"""

from __future__ import annotations

from datetime import date, datetime
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow.app.products import designer, directa_form, labelled, type_in
from mailflow.core.routing import authenticated, route
from mailflow.core.tokens import find_tokens
from mailflow.mail.autoreply import classify_auto
from mailflow.mail.dates import find_date, parse_period, weekday_mismatch
from mailflow.mail.htmltext import html_to_text
from mailflow.mail.intake import parse_cronograma, parse_intake, read_fields
from mailflow.mail.parse import MailParseError, parse_message
from mailflow.mail.replytext import extract_new_text, read_reply

TODAY = date(2026, 12, 1)
# The characters and words the readers' regexes and loops turn on.
PIECES = [
    "a", "1", " ", "\t", "\n", "\r\n", "\xa0", "\u200b", "\u2028", ":", ";", "-", "–", ".", ",",
    "@", "<", ">", "/", "=", "\"", "'", "[", "]", "(", ")", "?", "¿", "*", "_", "á",
    "> ", ">>", "RE: ", "Fwd: ", "APRUEBO", "no ", "comité", "de ", "al ", "hasta el ",
    "12/12/2026", "2026-12-12", "1 de diciembre", "Tipo:", "Título:", "Diseño:", "Cronograma:",
    "Etapa 6:", "El lun., 1 dic. 2026 escribió:", "From:", "-----Original Message-----",
    "http://", "https://x.bo/", "dkim=pass", "header.d=", "spf=", "rrss+", "-s2-",
    "RRSS-2026-0042", "<p>", "</p>", "<br>", "<blockquote>", "<div", "<!--", "-->", "&amp;",
    "&#", "<script>", "<style>", "PUBLICADO", "--", "=?utf-8?q?",
]  # fmt: skip

hostile_text = st.lists(
    st.tuples(st.sampled_from(PIECES), st.integers(min_value=1, max_value=3000)),
    max_size=6,
).map(lambda runs: "".join(piece * count for piece, count in runs))
any_text = hostile_text | st.text(max_size=3000)

NO_DESIGN = SimpleNamespace(stages={})  # a procedure with no design stage (pure stand-in)


def read_everything(text: str) -> None:
    """Apply every reader of the message path to ``text``; none may raise."""
    extract_new_text(text)
    read_reply(text, text[:500])
    parse_intake(text, TODAY)
    parse_intake(text, TODAY, html=True)
    read_fields(text)
    parse_cronograma(text, TODAY)
    html_to_text(text)
    find_date(text, TODAY)
    parse_period(text, TODAY)
    weekday_mismatch(text, TODAY)
    classify_auto(
        subject=text,
        from_address=text,
        auto_submitted=text,
        precedence=text,
        return_path=text,
        list_id=text,
        report_type=text,
        content_type=text,
    )
    route([text], [text], text, "RRSS")
    authenticated([text], "mx.ejemplo.bo", text)
    find_tokens([text])
    directa_form(text, text[:500])
    labelled(text, ("diseno",))
    type_in(text)
    designer(text, NO_DESIGN, [], "a@b.bo", datetime(2026, 12, 1))  # type: ignore[arg-type]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(any_text)
def test_every_reader_takes_any_text(text: str) -> None:
    read_everything(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_text, hostile_text, st.sampled_from(["plain", "html", "mixed"]))
def test_the_parser_takes_any_headers_and_bodies(header: str, body: str, shape: str) -> None:
    """A message whose subject, From and body are hostile text: parsed, or a typed error."""
    head = f"From: {header[:2000]}\r\nSubject: {header}\r\nTo: rrss@x.bo\r\n"
    if shape == "plain":
        raw = f"{head}\r\n{body}"
    elif shape == "html":
        raw = f"{head}Content-Type: text/html; charset=utf-8\r\n\r\n{body}"
    else:
        raw = (
            f'{head}Content-Type: multipart/mixed; boundary="{header[:60]}"\r\n\r\n'
            f"--{header[:60]}\r\n\r\n{body}\r\n--{header[:60]}--\r\n"
        )
    try:
        mail = parse_message(raw.encode("utf-8", "surrogatepass"))
    except MailParseError:
        return
    read_everything(mail.text)
    read_everything(mail.subject)


# -- a megabyte of each reader's worst input -----------------------------------------------

MB = 1024 * 1024
WORST: dict[str, str] = {
    "word-run": "1" * MB,  # an address or code pattern's first class, never completed
    "spaces": " " * MB,
    "nbsp-tabs": "\xa0\t" * (MB // 2),
    "newlines": "\n" * MB,
    "quoted": "> " * (MB // 2),
    "blank-paragraphs": "\n \n" * (MB // 3),
    "labels": "a:" * (MB // 2),
    "design-line": "Diseño: " + "1" * MB,
    "dates": "1 de " * (MB // 5),
    "periods": "\t" * MB + "al",
    "urls": "http://" * (MB // 7),
    "html-tags": "<div " * (MB // 5),
    "html-comments": "<!--" * (MB // 4),
    "tokens": "rrss+rrss-2026-0042-s2-" * (MB // 23),
    "dkim": "dkim=pass header.d=" * (MB // 19),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(WORST))
def test_a_megabyte_of_the_worst_input_is_read_in_time(name: str) -> None:
    read_everything(WORST[name])


@pytest.mark.timeout(120)
def test_the_designer_line_is_bounded() -> None:
    """The designer's address search used to be quadratic in its line (hours for 1 MB)."""
    from mailflow.app import products

    assert products._ADDRESS.search("Diseño: " + "1" * 300_000) is None
    found = designer(
        "PUBLICADO foto\nDiseño: Ana <ana.perez@ejemplo.gob.bo>",
        NO_DESIGN,  # type: ignore[arg-type]
        [],
        "a@b.bo",
        datetime(2026, 12, 1),
    )
    assert found[0] == "ana.perez@ejemplo.gob.bo"
