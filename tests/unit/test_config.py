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
    assert 'roles.jefatura_ugs.members[0]: "jefe@@x" no es una dirección de correo válida' in joined
    assert 'roles.jefatura_ugs.superior: "direccion_general" no es un rol configurado' in joined
    assert "organization.timezone:" in joined
    assert "organization.colour: clave desconocida" in joined
    assert 'schedule.digest_to[0]: "jefe" no es un rol configurado' in joined
    assert "roles.administrador_rrss: falta" in joined
    assert (
        "imap.password_env: nombra la variable $MAILFLOW_IMAP_PASSWORD, que no está definida"
        in joined
    )
    assert len(problems) >= 8


@pytest.mark.parametrize(
    ("section", "change", "expected"),
    [
        (
            "imap",
            {"password": "x"},
            "imap.password_env: indique solo una de password, password_env",
        ),
        ("smtp", {"from_address": "nadie"}, "smtp.from_address:"),
        ("smtp", {"security": "ssl"}, "smtp.security:"),
        ("organization", {"code_prefix": "rr ss"}, "organization.code_prefix:"),
        (
            "organization",
            {"office_hours_end": "07:00"},
            "organization.office_hours_end: 07:00 no es posterior a office_hours_start",
        ),
        ("imap", {"idle_seconds": 3600}, "imap.idle_seconds:"),
        ("security", {"secret_env": None}, "security.secret"),
        ("mail", {"attach_max_mb": 0}, "mail.attach_max_mb: 0 está fuera de rango"),
        ("mail", {"attach_max_mb": 50}, "mail.attach_max_mb: 50 está fuera de rango"),
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
    assert any("acéfalo" in p for p in problems_of(raw))
    raw["roles"]["jefatura_ugs"]["members"] = []  # vacant but has a superior: fine
    assert not any("jefatura_ugs" in p for p in problems_of(raw))


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="el archivo no existe"):
        load_settings(tmp_path / "nope.toml", {})
    bad = tmp_path / "bad.toml"
    bad.write_text("[organization\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no es TOML válido"):
        load_settings(bad, {})


def test_config_path_precedence() -> None:
    assert config_path("a.toml", {"MAILFLOW_CONFIG": "b.toml"}) == Path("a.toml")
    assert config_path(None, {"MAILFLOW_CONFIG": "b.toml"}) == Path("b.toml")
    assert config_path(None, {}) == Path("config/mailflow.toml")


# -- what check-config catches before production does -------------------------------------


def _with(raw: dict[str, Any], section: str, **values: Any) -> dict[str, Any]:
    for key, value in values.items():
        if value is None:
            raw[section].pop(key, None)
        else:
            raw[section][key] = value
    return raw


def test_an_empty_secret_file_is_named_with_its_key(tmp_path: Path) -> None:
    (tmp_path / "imap.secret").write_text("\n", encoding="utf-8")
    raw = _with(example(), "imap", password_env=None, password_file="imap.secret")
    problems = problems_of_at(raw, tmp_path)
    assert problems == [
        f"imap.password_file: el archivo {tmp_path / 'imap.secret'} no contiene nada; "
        "ponga ahí el secreto"
    ]


def test_an_unreadable_secret_file_says_why(tmp_path: Path) -> None:
    (tmp_path / "carpeta").mkdir()
    raw = _with(example(), "smtp", password_env=None, password_file="no-existe")
    raw = _with(raw, "security", secret_env=None, secret_file="carpeta")
    problems = problems_of_at(raw, tmp_path)
    assert f"smtp.password_file: {tmp_path / 'no-existe'} no se puede leer (no existe)" in problems
    assert (
        f"security.secret_file: {tmp_path / 'carpeta'} no se puede leer "
        "(es una carpeta, no un archivo)" in problems
    )


def test_an_empty_variable_is_caught_too() -> None:
    problems = problems_of(example(), {**SECRETS, "MAILFLOW_SMTP_PASSWORD": "  "})
    assert problems == [
        "smtp.password_env: la variable $MAILFLOW_SMTP_PASSWORD no contiene nada; "
        "ponga ahí el secreto"
    ]


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("imap", "port", "993x",
         'imap.port: "993x" no es válido; se espera un número entero, sin comillas '
         "(p. ej. port = 993)"),
        ("smtp", "security", "ssl",
         'smtp.security: "ssl" no es válido; se espera uno de "tls", "starttls" o "none" '
         '(p. ej. security = "starttls")'),
        ("schedule", "reminder_time", "9am",
         'schedule.reminder_time: "9am" no es válido; se espera una hora entre comillas, '
         '"HH:MM" (p. ej. reminder_time = "09:00")'),
        ("metrics", "enabled", "quizás",
         'metrics.enabled: "quizás" no es válido; se espera true o false, sin comillas '
         "(p. ej. enabled = false)"),
        ("imap", "idle_seconds", 3600,
         "imap.idle_seconds: 3600 no es válido; se espera un número menor o igual que 600 "
         "(p. ej. idle_seconds = 540)"),
        ("organization", "extra_holidays", "16/07/2026",
         'organization.extra_holidays: "16/07/2026" no es válido; se espera una lista entre '
         'corchetes, p. ej. ["…", "…"]'),
        ("organization", "code_prefix", "rr ss",
         'organization.code_prefix: "rr ss" no es válido; se espera de 2 a 10 mayúsculas o '
         'cifras, empezando por una letra (p. ej. code_prefix = "RRSS")'),
    ],
)  # fmt: skip
def test_a_wrong_type_echoes_the_value_and_the_expected_form(
    section: str, key: str, value: Any, expected: str
) -> None:
    assert problems_of(_with(example(), section, **{key: value})) == [expected]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("imap", "pasword_env"),
         "imap.pasword_env: clave desconocida (¿quiso decir «password_env»?)"),
        (("imapp",), "imapp: clave desconocida (¿quiso decir «imap»?)"),
        (("schedule", "digest_day"),
         "schedule.digest_day: clave desconocida (¿quiso decir «digest_weekday»?)"),
        (("security", "trusted_authserv"),
         "security.trusted_authserv: clave desconocida (¿quiso decir «trusted_authserv_id»?)"),
        (("metrics", "zzz"), "metrics.zzz: clave desconocida; aquí valen: enabled, listen"),
    ],
)  # fmt: skip
def test_an_unknown_key_names_the_nearest_valid_one(path: tuple[str, ...], expected: str) -> None:
    raw = example()
    target = raw
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = {} if len(path) == 1 else "x"
    assert expected in problems_of(raw)


def test_an_unknown_key_deep_inside_a_list_of_tables() -> None:
    raw = example()
    raw["roles"]["jefatura_ugs"]["substitutes"][0]["form"] = "2026-12-21"
    assert problems_of(raw) == [
        "roles.jefatura_ugs.substitutes[0].form: clave desconocida (¿quiso decir «from»?)"
    ]


@pytest.mark.parametrize(
    ("secret", "source"),
    [
        ("corto", "la variable $MAILFLOW_SECRET"),
        ("123456789012345", "la variable $MAILFLOW_SECRET"),
    ],
)
def test_a_too_short_secret_is_named_with_where_it_came_from(secret: str, source: str) -> None:
    problems = problems_of(example(), {**SECRETS, "MAILFLOW_SECRET": secret})
    assert problems == [
        f"security.secret_env: {source} tiene {len(secret)} caracteres; el secreto necesita "
        "al menos 16 (p. ej. la salida de `openssl rand -hex 32`)"
    ]


def test_a_too_short_secret_written_in_the_file_is_caught_as_well() -> None:
    raw = _with(example(), "security", secret_env=None, secret="corto")
    assert problems_of(raw) == [
        "security.secret: el valor tiene 5 caracteres; el secreto necesita al menos 16 "
        "(p. ej. la salida de `openssl rand -hex 32`)"
    ]


def test_every_problem_of_a_section_at_once_secrets_included() -> None:
    raw = _with(example(), "imap", port="x", folder=3)
    problems = problems_of(raw, {})
    assert [p.split(":")[0] for p in problems if p.startswith("imap")] == [
        "imap.port",
        "imap.folder",
        "imap.password_env",
    ]


def test_gap_reports_go_to_roles_or_addresses() -> None:
    raw = example()
    raw["schedule"]["gap_report_to"] = ["administrador_rrss", "soporte@ejemplo.gob.bo", "admin"]
    assert problems_of(raw) == [
        'schedule.gap_report_to[2]: "admin" no es un rol configurado ni una dirección'
    ]


def test_read_only_loading_reads_no_secret_at_all(tmp_path: Path) -> None:
    raw = _with(example(), "imap", password_env=None, password_file="no-existe")
    settings = parse_settings(raw, tmp_path / "mailflow.toml", {}, secrets=False)
    assert settings.imap.password is not None
    with pytest.raises(RuntimeError, match="without the mail secrets"):
        settings.security.secret.get_secret_value()


def problems_of_at(raw: dict[str, Any], folder: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, folder / "mailflow.toml", SECRETS)
    return info.value.problems


def test_the_poai_file_is_validated_with_its_own_name(tmp_path: Path) -> None:
    poai = tomllib.loads((ROOT / "config" / "poai.toml").read_text(encoding="utf-8"))
    poai["functions"][0]["weight"] = 35  # the weights now add up to 105
    poai["functions"][1]["target"] = 0
    lines = [f"position = {poai['position']!r}"]
    for function in poai["functions"]:
        lines.append("[[functions]]")
        lines += [f"{key} = {value!r}" for key, value in function.items()]
    written = tmp_path / "metas.toml"
    written.write_text("\n".join(lines).replace("'", '"'), encoding="utf-8")
    raw = example()
    raw.setdefault("paths", {})["poai_file"] = str(written)

    problems = problems_of(raw)

    assert any(
        p.startswith(f"{written}: functions[1].target: 0 no es válido; se espera") for p in problems
    ), problems
    written.write_text("[[functions]\n", encoding="utf-8")
    broken = f"paths.poai_file: {written}: no es TOML válido"
    assert any(p.startswith(broken) for p in problems_of(raw))
    raw["paths"]["poai_file"] = "no-such-poai.toml"
    assert [p for p in problems_of(raw) if "poai" in p] == [
        f"paths.poai_file: {ROOT / 'config' / 'no-such-poai.toml'}: no existe; copie "
        "config/poai.toml del código fuente junto al archivo de configuración, o quite la "
        "clave para usar el que viene con mailflow"
    ]


def test_a_poai_table_in_the_main_file_still_wins_over_the_poai_file() -> None:
    raw = example()
    raw.setdefault("paths", {})["poai_file"] = "no-such-poai.toml"
    raw["poai"] = {
        "position": "Diseñador",
        "functions": [{"id": "unica", "name": "Diseño", "weight": 100, "target": 10}],
    }
    settings = parse_settings(raw, ROOT / "config" / "x.toml", SECRETS)
    assert [f.id for f in settings.poai.functions] == ["unica"]
    assert settings.poai.position == "Diseñador"
