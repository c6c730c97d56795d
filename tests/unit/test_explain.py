"""`mailflow explain`: how each saved mail is read, on every kind of mail the project knows.

The golden mails of tests/data/mail (requests, replies, notes, automatic and list mail),
the formats the tests build (encrypted, opaque, TNEF, a newsletter) and bytes that are no
mail at all; then the command itself, run as a person runs it, with and without the secret.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from testbed.formats import (
    PNG,
    certificate,
    keyring,
    newsletter,
    outlook_tnef_mail,
    pgp_mime_encrypted,
    smime_encrypted,
    smime_opaque,
    tnef_stream,
)

from mailflow.app.explain import KINDS, Context, as_text, explain
from mailflow.core.tokens import make_token, reply_address

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "mail"
TODAY = date(2026, 11, 20)
CONTEXT = Context(code_prefix="RRSS", our_address="rrss@ejemplo.gob.bo")
SECRET = "a-long-enough-hmac-key"
JSON_KEYS = {"file", "kind", "code", "new_text", "action", "argument", "urls", "reason"}


def _golden() -> list[tuple[str, str, str]]:
    """Return (file, expected kind, expected action) from the golden mails' table."""
    rows = []
    for line in (CORPUS / "README.md").read_text(encoding="utf-8").splitlines():
        if not (line.startswith("| ") and ".eml" in line):
            continue
        name, _client, style, auto, action, *_ = (c.strip() for c in line.strip("|").split(" | "))
        if auto == "bulk":
            kind = "bulk"
        elif auto != "human":
            kind = "automatic"
        elif style == "request":
            kind = "request"
        else:
            kind = "reply" if action != "-" else "note"
        rows.append((name, kind, action))
    return rows


@pytest.mark.parametrize(("name", "kind", "action"), _golden(), ids=[r[0] for r in _golden()])
def test_every_golden_mail_is_explained_as_the_daemon_reads_it(
    name: str, kind: str, action: str
) -> None:
    explanation = explain(name, (CORPUS / name).read_bytes(), CONTEXT, TODAY)
    assert explanation.kind == kind, explanation
    if kind in ("reply", "note"):  # automatic mail is never read for an action
        assert (explanation.action or "-") == action
    assert set(explanation.as_json()) >= JSON_KEYS
    text = as_text(explanation)
    assert text.startswith(f"{name}: ")
    if kind == "note":
        assert explanation.reason and (explanation.code or "").startswith("RRSS-2026-")
    if kind == "reply":
        assert (explanation.code or "").startswith("RRSS-2026-") and not explanation.reason
        assert "acción: " in text


def test_reply_shows_new_text_argument_links_and_where_the_text_ended() -> None:
    name = "outlook_android_publicado_captura.eml"
    explanation = explain(name, (CORPUS / name).read_bytes(), CONTEXT, TODAY)
    assert explanation.action == "PUBLICADO"
    assert "https://www.facebook.com/ejemplo.gob.bo/posts/pfbid02xQm8kLr5TnVw3s" in explanation.urls
    assert explanation.new_text.startswith("PUBLICADO")
    text = as_text(explanation)
    assert "el texto nuevo termina en: " in text
    assert "solicitud: RRSS-2026-0042" in text


def test_request_shows_procedure_fields_and_problems() -> None:
    name = "solicitud_texto_plano.eml"
    good = explain(name, (CORPUS / name).read_bytes(), CONTEXT, TODAY)
    assert good.procedure == "informacion_especifica"
    assert good.fields["Título"] == "Feria de Servicios Digitales 2026"
    assert good.problems == () and good.reason == ""
    raw = b"From: ana@ejemplo.gob.bo\nTo: rrss@ejemplo.gob.bo\nSubject: hola\n\nTipo: promocion\n"
    bad = explain("incompleta.eml", raw, CONTEXT, TODAY)
    assert bad.kind == "request"
    assert any("Título" in p for p in bad.problems)
    assert "no abre una solicitud" in bad.reason


@pytest.fixture(scope="module")
def cert() -> Iterator[tuple[Path, Path]]:
    with certificate() as pair:
        yield pair


def test_encrypted_and_opaque_mail(cert: tuple[Path, Path]) -> None:
    encrypted = explain("cifrado.eml", smime_encrypted(cert[0]), CONTEXT, TODAY)
    assert encrypted.kind == "encrypted"
    assert "no se puede leer" in encrypted.reason
    opaque = explain("opaco.eml", smime_opaque(*cert), CONTEXT, TODAY)
    assert opaque.kind == "unreadable"
    assert "opaco" in opaque.reason
    with keyring() as ring:
        assert explain("pgp.eml", pgp_mime_encrypted(ring), CONTEXT, TODAY).kind == "encrypted"


def test_tnef_reply_shows_its_files() -> None:
    stream = tnef_stream("x", [("captura.png", PNG)])
    explanation = explain("tnef.eml", outlook_tnef_mail(stream, "APRUEBO"), CONTEXT, TODAY)
    assert explanation.kind == "reply"
    assert "captura.png" in as_text(explanation)


def test_newsletter_is_bulk_and_junk_is_unreadable() -> None:
    bulk = explain("boletin.eml", newsletter(), CONTEXT, TODAY)
    assert bulk.kind == "bulk"
    assert "List-Unsubscribe" in bulk.reason
    assert explain("vacio.eml", b"   ", CONTEXT, TODAY).kind == "unreadable"
    assert explain("sin-remitente.eml", b"Subject: x\n\nAPRUEBO", CONTEXT, TODAY).kind == (
        "unreadable"
    )


def test_our_own_mail_is_automatic() -> None:
    raw = b"From: rrss@ejemplo.gob.bo\nTo: ana@ejemplo.gob.bo\nSubject: x\n\nAPRUEBO"
    assert explain("propio.eml", raw, CONTEXT, TODAY).kind == "automatic"


def _tokened_reply(folder: Path) -> Path:
    sender = "directora@ejemplo.gob.bo"
    token = make_token(SECRET.encode(), "RRSS-2026-0042", 2, sender)
    raw = (
        f"From: {sender}\nTo: {reply_address('rrss@ejemplo.gob.bo', token)}\n"
        "Subject: RE: [RRSS-2026-0042] Acción requerida\n\n"
        "Aprobé.\n\nSaludos,\nDirectora\n\n"
        "El vie, 20 nov 2026 a las 10:12, Mesa <rrss@ejemplo.gob.bo> escribió:\n> OBSERVO\n"
    ).encode()
    path = folder / "respuesta.eml"
    path.write_bytes(raw)
    return path


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MAILFLOW_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "daemon.py"), "--config", "config/mailflow.toml", *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_command_prints_one_json_object_per_file_without_any_secret(tmp_path: Path) -> None:
    files = [str(_tokened_reply(tmp_path)), str(CORPUS / "solicitud_tabla_html.eml")]
    result = _run("explain", "--json", *files, env={})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    reply, request = (json.loads(line) for line in lines)
    assert set(reply) >= JSON_KEYS and reply["kind"] in KINDS
    assert (reply["file"], reply["kind"], reply["code"]) == (files[0], "reply", "RRSS-2026-0042")
    assert (reply["action"], reply["argument"], reply["new_text"]) == (
        "APRUEBO",
        "",
        "Aprobé.\n\nSaludos,\nDirectora",
    )
    assert "sin verificar" in reply["matched"]
    assert request["kind"] == "request" and request["procedure"] == "promocion"


def test_command_verifies_the_token_when_the_secret_is_set(tmp_path: Path) -> None:
    path = _tokened_reply(tmp_path)
    env = {"MAILFLOW_SECRET": SECRET, "MAILFLOW_IMAP_PASSWORD": "x", "MAILFLOW_SMTP_PASSWORD": "x"}
    result = _run("explain", str(path), env=env)
    assert result.returncode == 0, result.stderr
    assert "verificado: emitido para directora@ejemplo.gob.bo, etapa 2" in result.stdout
    assert "acción: APRUEBO" in result.stdout
    wrong = _run("explain", str(path), env={**env, "MAILFLOW_SECRET": "another-long-secret-key"})
    assert "no válido para directora@ejemplo.gob.bo" in wrong.stdout


def test_command_changes_nothing(tmp_path: Path) -> None:
    before = sorted(p.name for p in ROOT.iterdir())
    missing, reply = str(tmp_path / "falta.eml"), str(_tokened_reply(tmp_path))
    result = _run("explain", missing, reply, env={})
    assert result.returncode == 1
    assert "falta.eml: no se puede leer" in result.stderr
    assert result.stdout.startswith(f"{reply}: respuesta con una acción")  # it went on
    assert sorted(p.name for p in ROOT.iterdir()) == before
