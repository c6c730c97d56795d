"""The command line as a person uses it: a real subprocess, real files, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "MAILFLOW_IMAP_PASSWORD": "imap-secret",
    "MAILFLOW_SMTP_PASSWORD": "smtp-secret",
    "MAILFLOW_SECRET": "a-long-enough-hmac-key",
}


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MAILFLOW_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "daemon.py"), *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_daemon_py_and_console_script_are_the_same_program() -> None:
    via_file = run("--help")
    script = Path(sys.executable).parent / "mailflow"
    via_script = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert via_file.returncode == via_script.returncode == 0
    assert via_file.stdout == via_script.stdout
    assert "check-config" in via_file.stdout and "procedures" in via_file.stdout


def test_check_config_passes_on_the_shipped_example() -> None:
    result = run("check-config", env=SECRETS)
    assert result.returncode == 0, result.stderr
    assert "la configuración es válida" in result.stdout


def test_check_config_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    text = (ROOT / "config" / "mailflow.toml").read_text(encoding="utf-8")
    text = text.replace('members = ["jefe.ugs@ejemplo.gob.bo"]', 'members = ["jefe@@x"]')
    text = text.replace('timezone = "America/La_Paz"', 'timezone = "Mars/Olympus"')
    bad = tmp_path / "mailflow.toml"
    bad.write_text(text, encoding="utf-8")
    result = run("--config", str(bad), "check-config", env=SECRETS)
    assert result.returncode == 1
    assert (
        'roles.jefatura_ugs.members[0]: "jefe@@x" no es una dirección de correo válida'
        in result.stderr
    )
    assert "organization.timezone" in result.stderr


def test_config_comes_from_the_environment_variable(tmp_path: Path) -> None:
    result = run("check-config", env={**SECRETS, "MAILFLOW_CONFIG": str(tmp_path / "no.toml")})
    assert result.returncode == 1
    assert "no.toml" in result.stderr and "el archivo no existe" in result.stderr


def test_missing_secret_says_which_variable() -> None:
    result = run("check-config", env={"MAILFLOW_SECRET": "a-long-enough-hmac-key"})
    assert result.returncode == 1
    assert "$MAILFLOW_IMAP_PASSWORD, que no está definida" in result.stderr


def test_bad_now_is_refused_with_an_example() -> None:
    result = run("--now", "yesterday", "check-config", env=SECRETS)
    assert result.returncode == 2
    assert "ISO-8601" in result.stderr
