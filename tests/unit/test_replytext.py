"""Reply stripping and keyword reading: unit cases and the golden corpus."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailflow.core.model import Action
from mailflow.mail.parse import parse_message
from mailflow.mail.replytext import Unclear, extract_new_text, read_action, read_reply

CORPUS = Path(__file__).resolve().parents[1] / "data" / "mail"


def _corpus_rows() -> list[dict[str, str]]:
    """Read the expectation table of tests/data/mail/README.md."""
    rows = []
    lines = (CORPUS / "README.md").read_text(encoding="utf-8").splitlines()
    table = [line for line in lines if line.startswith("| ") and ".eml" in line]
    header = ["file", "client", "style", "auto", "action", "unclear", "source", "text"]
    for line in table:
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


ROWS = _corpus_rows()


def test_corpus_table_covers_every_file() -> None:
    listed = {row["file"] for row in ROWS}
    on_disk = {p.name for p in CORPUS.glob("*.eml")}
    assert listed == on_disk
    assert len(on_disk) >= 30


@pytest.mark.parametrize("row", ROWS, ids=[row["file"] for row in ROWS])
def test_corpus(row: dict[str, str]) -> None:
    mail = parse_message((CORPUS / row["file"]).read_bytes())
    reading = read_action(extract_new_text(mail.text), mail.subject)
    assert mail.auto.value == row["auto"], mail.auto_reason
    assert (reading.action.value if reading.action else "-") == row["action"]
    assert (reading.unclear.value if reading.unclear else "-") == row["unclear"]
    assert reading.source == row["source"]
    if row["text"] != "-":
        assert row["text"] in reading.text or row["text"] in reading.urls


@pytest.mark.parametrize(
    ("body", "action", "rest"),
    [
        ("APRUEBO", Action.APRUEBO, ""),
        ("apruebo", Action.APRUEBO, ""),
        ("Aprobado.", Action.APRUEBO, ""),
        ("APROBADA", Action.APRUEBO, ""),
        ("*APRUEBO*", Action.APRUEBO, ""),
        ("APRUEBO COMITE", Action.APRUEBO_COMITE, ""),
        ("Apruebo comité: información protegida", Action.APRUEBO_COMITE, "información protegida"),
        ("Apruebo para el Comité", Action.APRUEBO_COMITE, ""),
        ("rechazo: el logo no es el vigente", Action.RECHAZO, "el logo no es el vigente"),
        ("RECHAZADO - fuera de plazo", Action.RECHAZO, "fuera de plazo"),
        ("OBSERVO\n- uno\n- dos", Action.OBSERVO, "- uno\n- dos"),
        ("Derivo", Action.DERIVO, ""),
        ("Entregado, va el material.", Action.ENTREGO, "va el material."),
        (
            "PUBLICADO https://facebook.com/x/posts/1",
            Action.PUBLICADO,
            "https://facebook.com/x/posts/1",
        ),
        ("Eliminada.", Action.ELIMINADO, ""),
        ("ANULO: ya no se realizará la feria", Action.ANULO, "ya no se realizará la feria"),
        ("Anulado.", Action.ANULO, ""),
        ("Buenos días,\n\nAPRUEBO", Action.APRUEBO, ""),
        ("Estimada Lic. Quispe:\nOBSERVO cambiar la foto", Action.OBSERVO, "cambiar la foto"),
    ],
)
def test_reads_keyword(body: str, action: Action, rest: str) -> None:
    reading = read_action(body)
    assert reading.action is action
    assert reading.text == rest
    assert reading.unclear is None


@pytest.mark.parametrize(
    ("body", "unclear"),
    [
        ("No apruebo", Unclear.NEGATED),
        ("NO APRUEBO el diseño", Unclear.NEGATED),
        ("no lo apruebo todavía", Unclear.NEGATED),
        ("No rechazo, pero observo", Unclear.NEGATED),
        ("Aprobado?", Unclear.QUESTION),
        ("¿Apruebo?", Unclear.QUESTION),
        ("apruebo pero ¿quién firma?", Unclear.QUESTION),
        ("Apruebo, pero cambien el color", Unclear.CONDITIONAL),
        ("Aprobado siempre que se corrija la fecha", Unclear.CONDITIONAL),
        ("¿Derivo?", Unclear.QUESTION),
        ("Gracias, lo reviso", Unclear.NO_KEYWORD),
        ("Hola, apruebo", Unclear.NO_KEYWORD),
        ("", Unclear.EMPTY),
        ("   \n\n ", Unclear.EMPTY),
        ("...", Unclear.EMPTY),
    ],
)
def test_never_an_action(body: str, unclear: Unclear) -> None:
    reading = read_action(body)
    assert reading.action is None
    assert not reading.is_action
    assert reading.unclear is unclear


def test_rechazo_may_carry_a_question() -> None:
    reading = read_action("RECHAZO: ¿por qué no usan el logo vigente?")
    assert reading.action is Action.RECHAZO


def test_question_after_first_paragraph_does_not_block_approval() -> None:
    assert read_action("APRUEBO\n\n¿Nos vemos el lunes?").action is Action.APRUEBO


@pytest.mark.parametrize(
    ("subject", "action"),
    [
        ("RE: [RRSS-2026-0042] APRUEBO", Action.APRUEBO),
        ("RE: RV: [RRSS-2026-0042] Derivo", Action.DERIVO),
        ("Fwd: Re: [RRSS-2026-0042] rechazo fuera de plazo", Action.RECHAZO),
        ("APRUEBO - RE: [RRSS-2026-0042] Verificación", Action.APRUEBO),
        ("RE: [RRSS-2026-0042] Verificación de propuesta", None),
        ("RE: [RRSS-2026-0042] No apruebo", None),
    ],
)
def test_subject_fallback(subject: str, action: Action | None) -> None:
    reading = read_action("", subject)
    assert reading.action is action
    if action is not None:
        assert reading.source == "subject"


def test_body_wins_over_subject() -> None:
    reading = read_action("Gracias", "RE: [RRSS-2026-0042] APRUEBO")
    assert reading.action is None
    assert reading.unclear is Unclear.NO_KEYWORD


def test_urls_are_collected_without_trailing_punctuation() -> None:
    reading = read_action("PUBLICADO en https://facebook.com/a/posts/1, y https://x.com/b/1.")
    assert reading.urls == ("https://facebook.com/a/posts/1", "https://x.com/b/1")


@pytest.mark.parametrize(
    "body",
    [
        "APRUEBO\n\nEl vie, 20 nov 2026 a las 10:12, Mesa (<\nrrss@ejemplo.gob.bo>) escribió:"
        "\n\n> OBSERVO",
        "APRUEBO\n\nEl vie, 20 nov 2026 a las 10:12, Mesa <rrss@ejemplo.gob.bo>\nescribió:\n> x",
        "APRUEBO\n-----Mensaje original-----\nDe: x\nOBSERVO",
        "APRUEBO\n----- Original Message -----\nFrom: x\nOBSERVO",
        "APRUEBO\nDe: Mesa <rrss@x>\nEnviado: viernes\nPara: yo\nAsunto: OBSERVO\n\nOBSERVO",
        "APRUEBO\n*De:* Mesa\n*Enviado el:* viernes\n*Para:* yo\n*Asunto:* x\nOBSERVO",
        "APRUEBO\n________________________________\nFrom: Mesa\nSent: Friday\nOBSERVO",
        "APRUEBO\n\nEnviado desde mi iPhone\n\nOBSERVO",
        "APRUEBO\n\nObtener Outlook para Android<https://aka.ms/x>\nOBSERVO",
        "APRUEBO\n-- \nMaría\nOBSERVO",
        "APRUEBO\n\nInicio del mensaje reenviado:\n\nOBSERVO",
        "> OBSERVO\n> más\n\nAPRUEBO",
        "El 20/11/26 a las 10:12, Mesa escribió:\n> OBSERVO\n\nAPRUEBO",
        "On Fri, Nov 20, 2026 at 10:12 AM Mesa <rrss@x> wrote:\n> OBSERVO\nAPRUEBO",
    ],
)
def test_strips_quotes_headers_footers(body: str) -> None:
    new = extract_new_text(body)
    assert "OBSERVO" not in new
    assert new.startswith("APRUEBO") or new.endswith("APRUEBO")


def test_keeps_interleaved_answers() -> None:
    body = "> ¿Aprueba?\nAPRUEBO\n> ¿Y la fecha?\nla del cronograma"
    assert extract_new_text(body) == "APRUEBO\nla del cronograma"


def test_plain_line_starting_with_el_is_not_an_attribution() -> None:
    body = "ENTREGO\nEl material va adjunto.\nEl cronograma sigue igual."
    assert extract_new_text(body) == body


def test_windows_newlines() -> None:
    assert read_reply("APRUEBO\r\n\r\n> OBSERVO\r\n").action is Action.APRUEBO


def test_pathological_input_is_fast() -> None:
    bodies = [
        "El " + "a " * 50_000 + "\n" * 3,
        ("De: x\n" * 20_000),
        ">" * 200_000,
        "APRUEBO " + "¿" * 100_000,
        ("El x\n" * 30_000) + "escribió:",
    ]
    start = time.perf_counter()
    for body in bodies:
        read_reply(body, "RE: " + "[x]" * 10_000)
    assert time.perf_counter() - start < 5
