"""Malformed input at scale, real half: a backlog of broken mail through the real daemon.

Every message is APPENDed as exact bytes into the shared mailbox, all of them before one
`run --once` pass, and a valid request goes last: each broken one must be archived (the
bytes whose SHA-256 the ledger names), and either quarantined or answered with its reason
in the ledger, or opened; the valid one after them must still open in the same pass.
Attachments with hostile names are stored under content-addressed names inside the
archive, and shown with a safe name.
"""

from __future__ import annotations

import base64
import hashlib
import os
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from testbed.mail import append
from testbed.site import INFO_REQUEST, Scenario, Site

from .kit import ledger

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
BIG = 30 * 1024 * 1024
BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def _head(site: Site, subject: str = "Solicitud", extra: str = "") -> str:
    return (
        f"From: Analista <{site.addr('analista')}>\r\nTo: {site.shared}\r\n"
        f"Subject: {subject}\r\nMessage-ID: {make_msgid(domain=site.domain)}\r\n"
        f"Date: Tue, 01 Dec 2026 09:00:00 -0400\r\nMIME-Version: 1.0\r\n{extra}"
    )


def _with_attachment(site: Site, name: str, data: bytes, ctype: str = "application/pdf") -> bytes:
    message = EmailMessage()
    message["From"] = site.addr("analista")
    message["To"] = site.shared
    message["Subject"] = "Solicitud con adjunto"
    message["Message-ID"] = make_msgid(domain=site.domain)
    message.set_content(INFO_REQUEST)
    maintype, subtype = ctype.split("/")
    message.add_attachment(data, maintype=maintype, subtype=subtype, filename="x")
    raw = message.as_bytes()
    # The name as a client would write it, byte for byte (RFC 2231 for non-ASCII and NUL).
    encoded = "".join(c if c.isalnum() else f"%{b:02X}" for c in name for b in c.encode())
    return raw.replace(b'filename="x"', f"filename*=utf-8''{encoded}".encode())


def _nested(site: Site, depth: int) -> bytes:
    inner = (_head(site, "nivel 0") + "\r\n" + INFO_REQUEST).encode()
    for level in range(1, depth + 1):
        inner = (
            (
                _head(site, f"nivel {level}", 'Content-Type: multipart/mixed; boundary="n"\r\n')
                + "\r\n--n\r\nContent-Type: text/plain\r\n\r\nReenvío.\r\n--n\r\n"
                "Content-Type: message/rfc822\r\n\r\n"
            ).encode()
            + inner
            + b"\r\n--n--\r\n"
        )
    return inner


def corpus(site: Site) -> dict[str, bytes]:
    """Return the malformed messages by name (the 30 MB one is added by the test)."""
    body = INFO_REQUEST.replace("\n", "\r\n")
    return {
        "boundary-mismatch": (
            _head(site, extra='Content-Type: multipart/mixed; boundary="AAA"\r\n')
            + f"\r\n--BBB\r\nContent-Type: text/plain\r\n\r\n{body}\r\n--BBB--\r\n"
        ).encode(),
        "boundary-never-closed": (
            _head(site, extra='Content-Type: multipart/alternative; boundary="b"\r\n')
            + f"\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n--b\r\n"
            "Content-Type: text/html\r\n\r\n<p>sin cierre"
        ).encode(),
        "boundary-empty": (
            _head(site, extra='Content-Type: multipart/mixed; boundary=""\r\n')
            + f"\r\n--\r\n\r\n{body}\r\n----\r\n"
        ).encode(),
        "unknown-charset": (
            (
                _head(site, extra="Content-Type: text/plain; charset=x-klingon-9\r\n") + "\r\n"
            ).encode()
            + INFO_REQUEST.encode("latin-1", "replace")
        ),
        "latin1-bytes-declared-utf8": (
            (_head(site, extra="Content-Type: text/plain; charset=utf-8\r\n") + "\r\n").encode()
            + INFO_REQUEST.encode("latin-1", "replace")
        ),
        "broken-base64": (
            _head(site, extra="Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n")
            + "\r\n"
            + base64.b64encode(INFO_REQUEST.encode()).decode()[:-7]
            + "!!*==\r\n"
        ).encode(),
        "broken-quoted-printable": (
            _head(site, extra="Content-Transfer-Encoding: quoted-printable\r\n")
            + "\r\n=ZZ=\r\n=F"
            + body
        ).encode(),
        "8bit-garbage-headers": (
            _head(
                site,
                "Solicitud \xff\xfe \udcff".encode("utf-8", "surrogateescape").decode("latin-1"),
            )
            + "\r\n"
            + body
        ).encode("latin-1", "replace"),
        "encoded-word-bad-charset": (
            _head(site, "=?x-unknown?Q?Solicitud=FF?= =?utf-8?B?!!!?=") + "\r\n" + body
        ).encode(),
        "enormous-subject": (_head(site, "S" * 60_000) + "\r\n" + body).encode(),
        "thousand-received-headers": (
            "".join(
                f"Received: from relay{n}.example by mx; Tue, 1 Dec 2026\r\n" for n in range(1000)
            )
            + _head(site)
            + "\r\n"
            + body
        ).encode(),
        "header-without-colon": (
            _head(site) + "Esto no es una cabecera\r\n" + "X" * 5000 + "\r\n\r\n" + body
        ).encode(),
        "nested-rfc822-3": _nested(site, 3),
        "nested-rfc822-40": _nested(site, 40),
        "zero-byte-attachment": _with_attachment(site, "vacío.pdf", b""),
        "dot-dot-slash": _with_attachment(site, "../../../../tmp/evil.pdf", b"%PDF-1.4 x"),
        "dot-dot-backslash": _with_attachment(site, "..\\..\\boot.ini", b"[boot]"),
        "nul-in-name": _with_attachment(site, "factura\x00.pdf.exe", b"MZ"),
        "very-long-name": _with_attachment(site, "n" * 5000 + ".pdf", b"%PDF"),
        "rtl-override-name": _with_attachment(
            site, "factura\u202egpj.exe", b"MZ", "application/octet-stream"
        ),
        "reserved-name": _with_attachment(site, "CON.txt", b"x", "text/plain"),
    }


@SQLITE_ONLY
def test_a_backlog_of_malformed_mail_is_archived_and_the_loop_goes_on(
    scenario: Scenario, tmp_path: Path
) -> None:
    site = scenario.site
    messages = corpus(site)
    names = [*messages, "30-mb-attachment"]
    for raw in messages.values():
        append(site.dovecot, site.shared, raw)
    append(
        site.dovecot, site.shared, _with_attachment(site, "foto.png", os.urandom(BIG), "image/png")
    )
    site.send("analista", "Solicitud válida al final", INFO_REQUEST)
    scenario.run()

    entries = ledger(scenario)
    for name, entry in zip(names, entries, strict=False):
        print(f"{name}: {entry.outcome} {entry.detail[:100]}")  # shown with -s, for the report
    assert len(entries) == len(names) + 1, [e.detail for e in entries]
    root = scenario.runtime.settings.store.archive_dir
    for name, entry in zip(names, entries, strict=False):
        archived = root / entry.sha256[:2] / f"{entry.sha256}.eml"
        assert hashlib.sha256(archived.read_bytes()).hexdigest() == entry.sha256, name
        assert entry.outcome in ("processed", "format_error", "quarantined"), (name, entry)
        if entry.outcome != "processed":
            assert entry.detail, (name, entry)  # the reason, for `mailflow inbox`
    assert entries[-1].outcome == "processed"  # the valid mail after all of them

    # The deep nesting is not read past the bound (answered with its reason).
    by_name = dict(zip(names, entries, strict=False))
    assert by_name["nested-rfc822-40"].outcome != "processed"
    assert by_name["30-mb-attachment"].outcome == "processed"

    # Attachments: safe names shown, content-addressed files, nothing outside the archive.
    shown = []
    for summary in scenario.runtime.requests.summaries():
        shown += [a["filename"] for a in scenario.show(summary["code"])["attachments"]]
    assert len(shown) >= 4, shown
    for filename in shown:
        assert not set("/\\\x00") & set(filename), filename
        assert not set(BIDI) & set(filename), filename
        assert 0 < len(filename) <= 120 and not filename.startswith(".")
    # Programs and empty files do not join a request (Gmail and Outlook would refuse the
    # mails forwarding them); their sender is told, by their safe names.
    assert not {"factura_.pdf.exe", "factura_gpj.exe"} & set(shown)
    assert not any(name.endswith("o.pdf") for name in shown)  # the empty one
    told = "\n".join(
        m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        for m in site.inbox("analista")
        if "Archivos no incorporados" in str(m["Subject"])
    )
    assert "factura_.pdf.exe: tipo de archivo no admitido (.exe)" in told
    assert "factura_gpj.exe: tipo de archivo no admitido (.exe)" in told
    assert ".pdf: el archivo está vacío (0 bytes)" in told
    stray = [p for p in tmp_path.rglob("*") if p.name in ("evil.pdf", "boot.ini")]
    assert stray == []
    assert not Path("/tmp/evil.pdf").exists()
    for path in root.rglob("*"):
        if path.is_file():
            assert len(path.stem) == 64 and path.resolve().is_relative_to(root.resolve())
