"""Injection: hostile text never becomes a header, never runs as HTML, secrets never get logged.

Headers are checked on every mail the daemon handed to the real SMTP relay, as bytes;
HTML escaping on every shipped template rendered with hostile values in every variable;
secrets on the log records and the console of a daemon taken through a whole scenario.
"""

from __future__ import annotations

import email.policy
import logging
import re
from collections.abc import Iterator
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from testbed.mail import send_as
from testbed.site import INFO_REQUEST, SECRET, Scenario

from mailflow.mail.render import Renderer
from mailflow.ops.sample import TEMPLATES, sample_context

from .kit import forged, ledger, open_request, send_raw_as, variant

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "mail"

# Every character some software takes for a line break (str.splitlines and RFC 5322).
BREAKS = ("\r\n", "\r", "\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e")
INJECTED = "Bcc: victima@evil.example"
# What our mails carry (compose() and the MIME parts); anything else was injected.
HEADERS = {
    "from", "to", "cc", "reply-to", "subject", "date", "message-id", "in-reply-to",
    "references", "auto-submitted", "x-auto-response-suppress", "content-language",
    "mime-version", "content-type", "content-transfer-encoding",
}  # fmt: skip


def _encoded(text: str) -> str:
    """Return ``text`` as one RFC 2047 encoded word, so its breaks survive transport."""
    return "=?utf-8?b?" + __import__("base64").b64encode(text.encode()).decode() + "?="


def _hostile_requests(scenario: Scenario) -> None:
    """Open requests whose subject and fields hide every line break before a header."""
    site = scenario.site
    for n, brk in enumerate(BREAKS):
        title = f"Feria {n}{brk}{INJECTED}{brk}X-Injected: yes"
        # The title by the Título field (a form line keeps all but \r and \n) ...
        body = INFO_REQUEST.replace("Feria de servicios digitales 2026", title.replace("\n", " "))
        body = body.replace("Unidad: UTI", f"Unidad: UTI{brk}Cc: otro@evil.example")
        site.send("analista", f"Solicitud {n}", body)
        # ... and by the subject, encoded so CR/LF arrive decoded (no Título: a help mail).
        message = forged(
            site,
            "analista",
            "x",
            INFO_REQUEST.replace("Título: Feria de servicios digitales 2026\n", ""),
        )
        message.replace_header("Subject", _encoded(title))
        send_raw_as(site, "analista", message)
    scenario.run()


def _header_lines(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return head.split("\r\n")


def test_line_breaks_in_subjects_and_fields_never_reach_a_header(scenario: Scenario) -> None:
    _hostile_requests(scenario)
    site = scenario.site
    opened = scenario.runtime.requests.summaries()
    assert len(opened) == len(BREAKS)  # nothing was refused for its title
    # Without a Título the subject is only quoted in the help mail: checked below too.
    outcomes = [e.outcome for e in ledger(scenario)]
    assert outcomes == ["processed", "format_error"] * len(BREAKS)
    # The directora approves one, so confirmations and next-stage mails are checked too.
    code = opened[0]["code"]
    mail = site.wait_for("directora", lambda m: code in str(m["Subject"]))
    site.reply("directora", mail, "APRUEBO\nX-Injected: yes")
    scenario.run()

    mails = [m.raw for m in site.relay.accepted if m.mail_from == site.shared]
    assert len(mails) > 2 * len(BREAKS)  # acknowledgements, action mails, help, confirmation
    for raw in mails:
        for line in _header_lines(raw):
            assert line.isascii()
            if line[:1] in (" ", "\t"):
                continue  # a folded continuation
            name = line.partition(":")[0].lower()
            assert name in HEADERS, line
        message = BytesParser(policy=email.policy.default).parsebytes(raw)
        for part in message.walk():
            for name, value in part.items():
                assert not any(b in str(value) for b in BREAKS), (name, value)
        assert "bcc" not in {k.lower() for k in message}
        assert "x-injected" not in {k.lower() for k in message}
    # Recipients are only those the directory names.
    rcpts = {r for m in site.relay.accepted if m.mail_from == site.shared for r in m.rcpt_tos}
    assert all(r.endswith("@" + site.domain) for r in rcpts), rcpts


# -- HTML escaping in every template -----------------------------------------------------

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>\"&'"


def _hostile(value: Any) -> Any:
    """Replace every string in a sample context by the hostile string (keys stay)."""
    if isinstance(value, str):
        return HOSTILE
    if isinstance(value, dict):
        return {k: _hostile(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hostile(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_hostile(v) for v in value)
    return value


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES_DIR)


@pytest.mark.parametrize("name", TEMPLATES)
def test_hostile_values_are_escaped_in_every_html_template(renderer: Renderer, name: str) -> None:
    context = _hostile(sample_context(HOSTILE))
    rendered = renderer.render(name, context)
    assert "<script" not in rendered.html.lower()
    assert "<img" not in rendered.html.lower()
    assert "onerror=alert(1)>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html  # the value is shown, escaped
    assert not any(b in rendered.subject for b in BREAKS[1:3])


def test_hostile_digest_entries_are_escaped(renderer: Renderer) -> None:
    """The digest's rows are objects, not dicts: feed hostile titles through them."""
    context = sample_context("Agencia", title=HOSTILE)
    html = renderer.render("digest", context).html
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html


# -- secrets never in logs ---------------------------------------------------------------

DB_PASSWORD = "Db-pa55word-never-logged"


@pytest.fixture
def with_db_password(scenario: Scenario) -> Iterator[Scenario]:
    """The scenario, its PostgreSQL URL carrying a password (trust auth ignores it)."""
    url = scenario.site.db_url
    if not url.startswith("postgresql"):
        yield scenario
        return
    user = url.split("://", 1)[1].split("@", 1)[0]
    with variant(scenario, f"://{user}@", f"://{user}:{DB_PASSWORD}@") as other:
        yield other


def test_secrets_never_reach_the_logs(
    with_db_password: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = with_db_password
    site = scenario.site
    secrets = [SECRET, DB_PASSWORD]
    with caplog.at_level(logging.DEBUG):
        code, action_mail = open_request(scenario)
        send_raw_as(site, "atacante", forged(site, "directora", f"APRUEBO [{code}]", "APRUEBO"))
        site.send("desconocido", "Hola", "Tipo: nada")
        send_as(site.relay, site.addr("x"), [site.shared], raw=b"\x00\xff broken\r\n\r\n")
        scenario.run()
        site.reply("directora", action_mail, "APRUEBO")
        scenario.run()
    assert scenario.show(code)["stage"]["number"] == 3
    records = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    assert len(caplog.records) > 5
    # The command line too, verbose.
    result = scenario.cli("-v", "run", "--once")
    console = result.stdout + result.stderr
    imap = site.dovecot.password  # the test bed's is a common word: look for it as a value
    secrets += [f"'{imap}'", f'"{imap}"', f"={imap}", f":{imap}@", f" {imap} "]
    for secret in secrets:
        assert secret not in records
        assert secret not in console
    assert not re.search(r"password\s*[=:]\s*\S", records, re.IGNORECASE)
