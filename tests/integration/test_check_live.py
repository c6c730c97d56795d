"""`mailflow check-config --live` against the real Dovecot and SMTP relay of the test bed.

It logs in to both servers, says what it found, and checks `[security]
trusted_authserv_id` against the last mails of the mailbox: set to an id no header
carries, every privileged opening would wait for CONFIRMO, and nothing used to say so.
"""

from __future__ import annotations

import email.policy
import subprocess

from testbed.mail import append, build_message
from testbed.site import Scenario

TRUSTED = "mx.institucion.test"


def _trusting(scenario: Scenario, trusted: str | None = TRUSTED) -> None:
    """Set (or leave out) trusted_authserv_id in the site's config."""
    path = scenario.site.config_path
    text = path.read_text(encoding="utf-8")
    if trusted is not None:
        text = text.replace("[security]\n", f'[security]\ntrusted_authserv_id = "{trusted}"\n')
    path.write_text(text, encoding="utf-8")


def _mail(scenario: Scenario, n: int, authentication_results: str | None = None) -> None:
    site = scenario.site
    headers = {"Authentication-Results": authentication_results} if authentication_results else {}
    message = build_message(
        site.addr("analista"), [site.shared], f"Consulta {n}", "Buenos días.", headers=headers
    )
    append(site.dovecot, site.shared, message.as_bytes(policy=email.policy.SMTP))


def _live(scenario: Scenario) -> subprocess.CompletedProcess[str]:
    return scenario.cli("check-config", "--live", timeout=120)


def test_live_says_what_it_found_on_both_servers(scenario: Scenario) -> None:
    _mail(scenario, 1)
    result = _live(scenario)
    assert result.returncode == 0, result.stderr
    site = scenario.site
    assert (
        f"IMAP {site.shared}@{site.dovecot.host}:{site.dovecot.imap_port}: sesión iniciada; "
        "carpeta INBOX con 1 correo, UIDVALIDITY " in result.stdout
    )
    assert "; IDLE" in result.stdout
    assert f"SMTP {site.relay.host}:{site.relay.port}: conexión SIN cifrar" in result.stdout
    assert "la configuración es válida" in result.stdout
    assert "aviso:" not in result.stderr  # no trusted_authserv_id: nothing to warn about


def test_a_trusted_authserv_id_no_mail_carries_is_warned_about(scenario: Scenario) -> None:
    _trusting(scenario)
    for n in range(3):  # the server adds no Authentication-Results, or another one's
        _mail(scenario, n, "otro.servidor.test; spf=pass smtp.mailfrom=x.test" if n else None)
    result = _live(scenario)
    assert result.returncode == 0, result.stderr
    assert (
        f"aviso: security.trusted_authserv_id = «{TRUSTED}», pero ninguno de los últimos 3 "
        "correos de INBOX trae Authentication-Results con ese id (encontrados: "
        "«otro.servidor.test» (2))" in result.stderr
    )
    assert "espera CONFIRMO" in result.stderr


def test_a_trusted_authserv_id_the_mail_carries_is_confirmed(scenario: Scenario) -> None:
    _trusting(scenario)
    domain = scenario.site.domain
    _mail(scenario, 1)
    _mail(scenario, 2, f"{TRUSTED}; dkim=pass header.d={domain}; spf=pass smtp.mailfrom={domain}")
    result = _live(scenario)
    assert result.returncode == 0, result.stderr
    assert "aviso:" not in result.stderr
    assert (
        f"security.trusted_authserv_id: 1 de los últimos 2 correos traen "
        f"Authentication-Results de «{TRUSTED}»" in result.stdout
    )


def test_an_empty_mailbox_cannot_confirm_the_trusted_id(scenario: Scenario) -> None:
    _trusting(scenario)
    result = _live(scenario)
    assert result.returncode == 0, result.stderr
    assert "la carpeta INBOX está vacía, no se pudo comprobar" in result.stderr


def test_a_refused_login_is_a_problem_with_its_key(scenario: Scenario) -> None:
    path = scenario.site.config_path
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace(f'password = "{scenario.site.dovecot.password}"', 'password = "otra"'),
        encoding="utf-8",
    )
    result = _live(scenario)
    assert result.returncode == 1
    assert "imap: " in result.stderr and "revise imap.username y la contraseña" in result.stderr
