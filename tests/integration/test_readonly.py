"""The commands that only read, run as an auditor would: without any mail secret.

The site's config is rewritten the way the shipped example is written (every secret in an
environment variable), and the real `mailflow` runs with none of them exported. Every
command the table marks read-only must work; adding one to the table without adding it
here fails :func:`test_every_read_only_command_is_covered`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from testbed.site import INFO_REQUEST, Scenario, code_of

from mailflow.cli import COMMANDS, build_parser
from mailflow.daemon.needs import Needs

only_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
MAILFLOW = Path(sys.executable).parent / "mailflow"
SECRET_VARIABLES = ("MAILFLOW_IMAP_PASSWORD", "MAILFLOW_SMTP_PASSWORD", "MAILFLOW_SECRET")


def read_only_arguments(code: str, tmp: Path) -> dict[str, list[str]]:
    """Return, per read-only command of the table, the arguments a person would give."""
    saved = tmp / "respuesta.eml"
    saved.write_bytes(
        f"From: ana@x.bo\r\nTo: rrss@x.bo\r\nSubject: Re: [{code}] Solicitud\r\n"
        "Message-ID: <r1@x.bo>\r\n\r\nAPRUEBO\r\n".encode()
    )
    return {
        "procedures": ["procedures"],
        "requests list": ["requests", "list"],
        "requests show": ["requests", "show", code],
        "evidence": ["evidence", code, "--out", str(tmp / "evidencia.zip")],
        "report poai": ["report", "poai", "--year", "2026", "--out", str(tmp / "poai")],
        "archive verify": ["archive", "verify"],
        "status": ["status"],
        "explain": ["explain", "--json", str(saved)],
    }


def secretless_config(scenario: Scenario) -> Path:
    """Write the site's config with every secret read from the environment, as shipped."""
    site = scenario.site
    text = site.config_path.read_text(encoding="utf-8")
    text = text.replace(
        f'password = "{site.dovecot.password}"', 'password_env = "MAILFLOW_IMAP_PASSWORD"'
    )
    text = text.replace(
        'from_name = "Redes Sociales"',
        f'from_name = "Redes Sociales"\nusername = "{site.shared}"\n'
        'password_env = "MAILFLOW_SMTP_PASSWORD"',
    )
    text = re.sub(r'secret = "[^"]*"', 'secret_env = "MAILFLOW_SECRET"', text)
    path = site.root / "sin-secretos.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `mailflow` with no MAILFLOW_* variable at all in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFLOW_")}
    return subprocess.run(
        [str(MAILFLOW), "--config", str(config), "--now", "2026-12-01T11:00", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def opened_request(scenario: Scenario) -> str:
    """Open one request by mail and let the directora approve it; return its code."""
    site = scenario.site
    site.send("analista", "Solicitud de publicación: feria", INFO_REQUEST)
    scenario.run()
    code = code_of(site.wait_for("analista", lambda m: "Solicitud recibida" in str(m["Subject"])))
    action = site.wait_for("directora", lambda m: "Acción requerida" in str(m["Subject"]))
    site.reply("directora", action, "APRUEBO", style="outlook")
    scenario.run()
    site.wait_for("jefe.ugs", lambda m: "Acción requerida" in str(m["Subject"]))
    return code


def test_every_read_only_command_is_covered(tmp_path: Path) -> None:
    marked = {c.words for c in COMMANDS if c.needs is Needs.READ}
    assert marked == set(read_only_arguments("X", tmp_path))
    # Each command of the table parses as written in the table.
    parser = build_parser()
    for words, args in read_only_arguments("RRSS-2026-0001", tmp_path).items():
        assert parser.parse_args(args).command_spec.words == words


@only_sqlite
def test_read_only_commands_need_no_mail_secret(scenario: Scenario, tmp_path: Path) -> None:
    code = opened_request(scenario)
    config = secretless_config(scenario)
    for words, args in read_only_arguments(code, tmp_path).items():
        result = run(config, *args)
        # `status` is unhealthy (exit 1): no daemon ever ran on this store, only passes.
        expected = 1 if words == "status" else 0
        assert result.returncode == expected, (words, result.stdout, result.stderr)
        assert result.stdout.strip(), words
        for variable in SECRET_VARIABLES:
            assert variable not in result.stderr, (words, result.stderr)
        assert "unencrypted" not in result.stderr and "sin cifrar" not in result.stderr, words
        assert "check-config" not in result.stderr, (words, result.stderr)
    assert (tmp_path / "evidencia.zip").is_file()
    assert (tmp_path / "poai" / "index.html").is_file()
    status = json.loads(run(config, "status", "--json").stdout)
    assert status["problems"] == [
        f"ningún daemon ha trabajado nunca en {scenario.site.shared}@127.0.0.1/INBOX"
    ]


@only_sqlite
def test_commands_that_send_mail_say_which_secret_and_where(scenario: Scenario) -> None:
    opened_request(scenario)
    config = secretless_config(scenario)
    result = run(config, "run", "--once")
    assert result.returncode == 1
    assert (
        "imap.password_env: nombra la variable $MAILFLOW_IMAP_PASSWORD, que no está definida"
        in result.stderr
    )
    assert "smtp.password_env: nombra la variable $MAILFLOW_SMTP_PASSWORD" in result.stderr
    assert "security.secret_env: nombra la variable $MAILFLOW_SECRET" in result.stderr
    assert "`mailflow run` necesita los secretos del correo" in result.stderr


@only_sqlite
def test_requests_show_speaks_the_institutions_words(scenario: Scenario) -> None:
    code = opened_request(scenario)
    config = secretless_config(scenario)
    result = run(config, "requests", "show", code)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    # Names, not ids: the procedure, the roles, the status.
    assert "Procedimiento: Publicación de información específica" in text
    assert "Estado: en curso" in text
    assert "A cargo de: Jefatura de la Unidad de Gestión de Servicios" in text
    for identifier in ("informacion_especifica", "jefatura_ugs", "direccion_ejecutiva", "en_curso"):
        assert identifier not in text, identifier
    # The stage as the manual words it, and where it stands among the nine.
    assert "Etapa 3 de 9: Deriva información al Profesional en Promoción de servicios" in text
    # Local dates as people write them, never ISO timestamps.
    assert re.search(r"\d{4}-\d{2}-\d{2}T", text) is None, text
    assert "Abierta: mar 1 dic 2026, 09:30" in text  # START, Tuesday in La Paz
    assert "Plazo: mié 2 dic 2026, 16:30" in text  # one business day after the approval
    assert "(etapa 2, Dirección Ejecutiva)" in text
    assert "Historial (2 entradas):" in text
    # The JSON keeps its ids and ISO moments (the interface contract).
    data = json.loads(run(config, "requests", "show", code, "--json").stdout)
    assert data["procedure"] == "informacion_especifica"
    assert data["stage"]["role"] == "jefatura_ugs"
    assert data["stage"]["due"] == "2026-12-02T16:30:00-04:00"
