"""Configuration loading: the shipped example is valid; broken files list every problem."""

from __future__ import annotations

import tomllib
from datetime import date, time
from pathlib import Path
from typing import Any

import pytest

from mailflow.config import config_path, load_settings, parse_settings
from mailflow.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "mailflow.toml"
SECRETS = {
    "MAILFLOW_IMAP_PASSWORD": "imap-secret",
    "MAILFLOW_SMTP_PASSWORD": "smtp-secret",
    "MAILFLOW_SECRET": "a-long-enough-hmac-key",
}


def example() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


def problems_of(raw: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, ROOT / "config" / "x.toml", SECRETS if env is None else env)
    return info.value.problems


def test_shipped_example_is_valid() -> None:
    settings = load_settings(EXAMPLE, SECRETS)
    assert settings.organization.timezone == "America/La_Paz"
    assert settings.organization.extra_holidays == (date(2026, 7, 16),)
    assert settings.imap.password.get_secret_value() == "imap-secret"
    assert settings.schedule.reminder_time == time(9, 0)
    assert settings.roles["comite_rrss"].quorum == "majority"
    sub = settings.roles["jefatura_ugs"].substitutes[0]
    assert (sub.start, sub.until) == (date(2026, 12, 21), date(2027, 1, 8))
    assert settings.mail.attach_max_mb == 15
    assert settings.mail.attach_max_bytes == 15 * 1024 * 1024


def test_relative_paths_resolve_against_the_config_folder() -> None:
    settings = load_settings(EXAMPLE, SECRETS)
    assert settings.store.url == f"sqlite:///{ROOT / 'store' / 'mailflow.db'}"
    assert settings.store.archive_dir == ROOT / "store" / "archive"
    assert settings.paths.procedures_dir == ROOT / "config" / "procedures"


def test_postgresql_url_is_left_alone() -> None:
    raw = example()
    raw["store"]["url"] = "postgresql+psycopg://mf@127.0.0.1/mf"
    settings = parse_settings(raw, EXAMPLE, SECRETS)
    assert settings.store.url == "postgresql+psycopg://mf@127.0.0.1/mf"


def test_secrets_never_show_in_repr() -> None:
    settings = load_settings(EXAMPLE, SECRETS)
    assert "imap-secret" not in repr(settings)
    assert "a-long-enough-hmac-key" not in str(settings)


def test_password_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "imap.secret").write_text("from-file\n", encoding="utf-8")
    raw = example()
    del raw["imap"]["password_env"]
    raw["imap"]["password_file"] = "imap.secret"
    settings = parse_settings(raw, tmp_path / "mailflow.toml", SECRETS)
    assert settings.imap.password.get_secret_value() == "from-file"


def test_every_problem_is_reported_at_once_with_its_key_path() -> None:
    raw = example()
    raw["roles"]["jefatura_ugs"]["members"] = ["jefe@@x"]
    raw["roles"]["jefatura_ugs"]["superior"] = "direccion_general"
    raw["organization"]["timezone"] = "America/Nowhere"
    raw["organization"]["colour"] = "red"
    raw["schedule"]["digest_to"] = ["jefe"]
    del raw["roles"]["administrador_rrss"]
    problems = problems_of(raw, {})
    joined = "\n".join(problems)
    assert 'roles.jefatura_ugs.members[0]: "jefe@@x" is not a valid address' in joined
    assert 'roles.jefatura_ugs.superior: "direccion_general" is not a configured role' in joined
    assert "organization.timezone:" in joined
    assert "organization.colour: unknown key" in joined
    assert 'schedule.digest_to[0]: "jefe" is not a configured role' in joined
    assert "roles.administrador_rrss: missing" in joined
    assert "imap: password_env names $MAILFLOW_IMAP_PASSWORD, which is not set" in joined
    assert len(problems) >= 8


@pytest.mark.parametrize(
    ("section", "change", "expected"),
    [
        ("imap", {"password": "x"}, "imap: set only one of password, password_env"),
        ("smtp", {"from_address": "nadie"}, "smtp.from_address:"),
        ("smtp", {"security": "ssl"}, "smtp.security:"),
        ("organization", {"code_prefix": "rr ss"}, "organization.code_prefix:"),
        ("organization", {"office_hours_end": "07:00"}, "office_hours_start must be earlier"),
        ("imap", {"idle_seconds": 3600}, "imap.idle_seconds:"),
        ("security", {"secret_env": None}, "security.secret"),
        ("mail", {"attach_max_mb": 0}, "mail.attach_max_mb: 0 is out of range"),
        ("mail", {"attach_max_mb": 50}, "mail.attach_max_mb: 50 is out of range"),
        ("mail", {"attach_max_mb": "quince"}, "mail.attach_max_mb:"),
    ],
)
def test_single_mistakes_are_named(section: str, change: dict[str, Any], expected: str) -> None:
    raw = example()
    for key, value in change.items():
        if value is None:
            del raw[section][key]
        else:
            raw[section][key] = value
    assert any(expected in p for p in problems_of(raw)), problems_of(raw)


def test_vacant_role_needs_a_superior() -> None:
    raw = example()
    raw["roles"]["direccion_ejecutiva"]["members"] = []
    assert any("vacant" in p for p in problems_of(raw))
    raw["roles"]["jefatura_ugs"]["members"] = []  # vacant but has a superior: fine
    assert not any("jefatura_ugs" in p for p in problems_of(raw))


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml", {})
    bad = tmp_path / "bad.toml"
    bad.write_text("[organization\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, {})


def test_config_path_precedence() -> None:
    assert config_path("a.toml", {"MAILFLOW_CONFIG": "b.toml"}) == Path("a.toml")
    assert config_path(None, {"MAILFLOW_CONFIG": "b.toml"}) == Path("b.toml")
    assert config_path(None, {}) == Path("config/mailflow.toml")
