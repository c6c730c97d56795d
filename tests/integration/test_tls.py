"""TLS against the test bed's real servers, with a throwaway CA (tests/testbed/ca.py).

Dovecot serves IMAPS and STARTTLS, the relay STARTTLS and implicit TLS, all with a
certificate for 127.0.0.1 signed by a CA made for this session. mailflow trusts it only
through ``ca_file``; without it, with another CA, or under another host name the
connection must fail before any password is sent, with an error that names the host and
the key to set.
"""

from __future__ import annotations

import email.policy
import itertools
import os
import re
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import TlsBed
from testbed.dovecot import Dovecot
from testbed.mail import build_message, deliver, fetch_raw
from testbed.ports import HOST

from mailflow.config import Imap, Smtp
from mailflow.transport.imap import ImapSource, ImapTlsError
from mailflow.transport.smtp import Outgoing, SmtpSender, SmtpTlsError

pytestmark = pytest.mark.servers

EHLO = "mailflow.test"
_counter = itertools.count(1)


def imap_settings(dovecot: Dovecot, address: str, **values: Any) -> Imap:
    return Imap.model_validate(
        {
            "host": HOST,
            "username": address,
            "password": dovecot.password,
            "timeout_seconds": 10,
            **values,
        }
    )


def smtp_settings(**values: Any) -> Smtp:
    return Smtp.model_validate(
        {"host": HOST, "from_address": "rrss@example.org", "timeout_seconds": 10, **values}
    )


def outgoing(key: str, recipient: str) -> Outgoing:
    message = build_message(
        "Redes Sociales <rrss@example.org>",
        (recipient,),
        f"[RRSS-2026-0001] {key}",
        f"Mensaje {key}, enviado por TLS.\n",
        headers={"Message-ID": f"<tls-{key}@example.org>"},
    )
    raw = message.as_bytes(policy=email.policy.SMTP)
    return Outgoing(key, "rrss@example.org", (recipient,), raw)


@pytest.fixture
def mailbox(tls_bed: TlsBed, request: pytest.FixtureRequest) -> str:
    """Return an empty mailbox of this test's own on the TLS Dovecot."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    domain = f"t{next(_counter)}-{slug}.tls.example.net"
    tls_bed.dovecot.add_domain(domain)
    return f"rrss@{domain}"


def raw_message(n: int) -> bytes:
    return (
        b"From: ana@example.org\r\nTo: rrss@example.org\r\nSubject: tls %d\r\n"
        b"Message-ID: <tls-in-%d@example.org>\r\n\r\nPor TLS.\r\n" % (n, n)
    )


def logins(dovecot: Dovecot, address: str) -> list[str]:
    """Return Dovecot's log lines of successful and failed logins of address."""
    lines = dovecot.log_path.read_text(errors="replace").splitlines()
    return [line for line in lines if f"user=<{address}>" in line]


# -- IMAP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_imap_over_tls_verified_by_ca_file_fetches_the_mail(
    tls_bed: TlsBed, mailbox: str, security: str
) -> None:
    dovecot = tls_bed.dovecot
    deliver(dovecot, [mailbox], raw_message(1))
    port = dovecot.imaps_port if security == "tls" else dovecot.imap_port
    settings = imap_settings(
        dovecot, mailbox, port=port, security=security, ca_file=tls_bed.ca.ca_file
    )
    with ImapSource(settings) as source:
        assert isinstance(source._client.socket(), ssl.SSLSocket)
        fetched = list(source.fetch_after(0))
    assert len(fetched) == 1 and fetched[0].raw.endswith(raw_message(1))
    assert any("TLS" in line and "Login:" in line for line in logins(dovecot, mailbox))


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_imap_refuses_a_certificate_from_an_unknown_ca_before_logging_in(
    tls_bed: TlsBed, mailbox: str, security: str
) -> None:
    dovecot = tls_bed.dovecot
    port = dovecot.imaps_port if security == "tls" else dovecot.imap_port
    settings = imap_settings(
        dovecot, mailbox, port=port, security=security, ca_file=tls_bed.ca.stranger_ca_file
    )
    with pytest.raises(ImapTlsError) as caught:
        ImapSource(settings).connect()
    text = str(caught.value)
    assert f"{HOST}:{port}" in text
    assert "[imap] ca_file" in text and "no es una CA de confianza" in text
    assert logins(dovecot, mailbox) == []  # the password never left


def test_imap_without_ca_file_trusts_only_the_system_cas(tls_bed: TlsBed, mailbox: str) -> None:
    dovecot = tls_bed.dovecot
    settings = imap_settings(dovecot, mailbox, port=dovecot.imaps_port, security="tls")
    with pytest.raises(ImapTlsError, match=r"\[imap\] ca_file"):
        ImapSource(settings).connect()


def test_imap_refuses_a_certificate_for_another_host_name(tls_bed: TlsBed, mailbox: str) -> None:
    dovecot = tls_bed.dovecot
    # "localhost" reaches the same listener, but the certificate names only 127.0.0.1.
    settings = imap_settings(
        dovecot,
        mailbox,
        host="localhost",
        port=dovecot.imaps_port,
        security="tls",
        ca_file=tls_bed.ca.ca_file,
    )
    with pytest.raises(ImapTlsError) as caught:
        ImapSource(settings).connect()
    text = str(caught.value)
    assert f"localhost:{dovecot.imaps_port}" in text
    assert 'no está emitido para "localhost"' in text and "[imap] host" in text
    assert logins(dovecot, mailbox) == []


def test_imap_starttls_required_but_not_offered_is_refused_before_login(
    dovecot: Dovecot, maildomain: str
) -> None:
    # The session's plain Dovecot has ssl = no: it does not announce STARTTLS.
    address = f"rrss@{maildomain}"
    settings = imap_settings(dovecot, address, port=dovecot.imap_port, security="starttls")
    with pytest.raises(ImapTlsError, match=r"no ofrece STARTTLS.*security = \"tls\""):
        ImapSource(settings).connect()
    assert logins(dovecot, address) == []  # no silent downgrade: no login in clear


# -- SMTP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_smtp_over_tls_verified_by_ca_file_delivers(
    tls_bed: TlsBed, mailbox: str, security: str
) -> None:
    relay = tls_bed.relay
    relay.reset()
    port = relay.tls_port if security == "tls" else relay.port
    settings = smtp_settings(port=port, security=security, ca_file=tls_bed.ca.ca_file)
    item = outgoing(f"smtp-{security}", mailbox)
    [result] = SmtpSender(settings, local_hostname=EHLO).send_many_sync([item])
    assert result.accepted == (mailbox,)
    [relayed] = relay.accepted
    assert relayed.tls, "the relay saw the message in clear"
    assert [raw for raw in fetch_raw(tls_bed.dovecot, mailbox) if raw.endswith(item.raw)]


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_smtp_refuses_a_certificate_from_an_unknown_ca(
    tls_bed: TlsBed, mailbox: str, security: str
) -> None:
    relay = tls_bed.relay
    relay.reset()
    port = relay.tls_port if security == "tls" else relay.port
    settings = smtp_settings(
        port=port,
        security=security,
        ca_file=tls_bed.ca.stranger_ca_file,
        username=mailbox,
        password="secret",
    )
    with pytest.raises(SmtpTlsError) as caught:
        SmtpSender(settings, local_hostname=EHLO).send_many_sync([outgoing("x", mailbox)])
    text = str(caught.value)
    assert f"{HOST}:{port}" in text and "[smtp] ca_file" in text
    assert relay.accepted == []


def test_smtp_refuses_a_certificate_for_another_host_name(tls_bed: TlsBed, mailbox: str) -> None:
    relay = tls_bed.relay
    relay.reset()
    settings = smtp_settings(
        host="localhost", port=relay.port, security="starttls", ca_file=tls_bed.ca.ca_file
    )
    with pytest.raises(SmtpTlsError) as caught:
        SmtpSender(settings, local_hostname=EHLO).send_many_sync([outgoing("y", mailbox)])
    text = str(caught.value)
    assert f"localhost:{relay.port}" in text
    assert 'no está emitido para "localhost"' in text and "[smtp] host" in text
    assert relay.accepted == []


# -- the operator sees it ------------------------------------------------------------------


def test_run_once_reports_an_untrusted_certificate_and_which_key_to_set(
    tls_bed: TlsBed, mailbox: str, tmp_path: Path
) -> None:
    """`mailflow run --once` exits 1 with the host and the key, not a traceback."""
    config = tmp_path / "mailflow.toml"
    domain = mailbox.partition("@")[2]
    roles = "\n".join(
        f'[roles.{role}]\nmembers = ["{role.replace("_", ".")}@{domain}"]\n'
        for role in (
            "direccion_ejecutiva",
            "jefatura_ugs",
            "profesional_promocion",
            "equipo_diseno",
            "administrador_rrss",
            "comite_rrss",
        )
    )
    config.write_text(
        f"""
[organization]
name = "Agencia de Ejemplo"
domain = "{domain}"

[imap]
host = "{HOST}"
port = {tls_bed.dovecot.imaps_port}
security = "tls"
ca_file = "{tls_bed.ca.stranger_ca_file}"
username = "{mailbox}"
password = "{tls_bed.dovecot.password}"
timeout_seconds = 10

[smtp]
host = "{HOST}"
port = {tls_bed.relay.port}
security = "starttls"
ca_file = "{tls_bed.ca.ca_file}"
from_address = "{mailbox}"

[store]
url = "sqlite:///{tmp_path / "mailflow.db"}"
archive_dir = "archive"

[security]
secret = "a-secret-for-reply-tokens"

{roles}
""",
        encoding="utf-8",
    )
    script = Path(sys.executable).parent / "mailflow"
    check = subprocess.run(
        [str(script), "--config", str(config), "check-config"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "MAILFLOW_CONFIG": ""},
    )
    assert check.returncode == 0, check.stderr
    done = subprocess.run(
        [str(script), "--config", str(config), "run", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert f"{HOST}:{tls_bed.dovecot.imaps_port}" in done.stderr
    assert "[imap] ca_file" in done.stderr and "Traceback" not in done.stderr


def test_check_config_names_an_unreadable_ca_file(tmp_path: Path) -> None:
    from mailflow.config import parse_settings
    from mailflow.errors import ConfigError

    raw = {
        "imap": {"host": "h", "username": "u", "password": "p", "ca_file": "missing.pem"},
        "smtp": {"host": "h", "from_address": "a@example.org", "ca_file": str(__file__)},
    }
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, tmp_path / "mailflow.toml", {})
    problems = "\n".join(caught.value.problems)
    assert f"imap.ca_file: {tmp_path / 'missing.pem'} no se puede leer (no existe)" in problems
    assert "smtp.ca_file:" in problems and "no contiene un certificado PEM" in problems
