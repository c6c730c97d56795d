"""Labelled intake fields, Spanish dates, periods and the cronograma."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest

from mailflow.mail.dates import parse_date, parse_period, weekday_mismatch
from mailflow.mail.intake import (
    parse_cronograma,
    parse_intake,
    parse_procedure,
    read_fields,
    read_request,
)
from mailflow.mail.parse import parse_message
from mailflow.mail.replytext import extract_new_text

CORPUS = Path(__file__).resolve().parents[1] / "data" / "mail"
TODAY = date(2026, 11, 20)


def test_plain_text_request_from_corpus() -> None:
    mail = parse_message((CORPUS / "solicitud_texto_plano.eml").read_bytes())
    intake = parse_intake(mail.text, TODAY)
    assert intake.ok, intake.problems
    assert intake.procedure == "informacion_especifica"
    assert intake.titulo == "Feria de Servicios Digitales 2026"
    assert intake.objetivo == (
        "Informar a la población sobre los trámites en línea que se\npresentarán en la feria."
    )
    assert intake.resumen.endswith("Habrá atención para la firma digital y la ciudadanía digital.")
    assert "\n\n" in intake.resumen
    assert intake.publicar_desde == date(2026, 12, 1)
    assert intake.publicar_hasta == date(2026, 12, 15)
    assert intake.unidad == "Unidad de Tecnologías de Información"
    assert intake.protegida is False


def test_html_table_request_from_corpus() -> None:
    mail = parse_message((CORPUS / "solicitud_tabla_html.eml").read_bytes())
    from_html = parse_intake(mail.html, TODAY, html=True)
    from_text = parse_intake(mail.text, TODAY)
    assert from_html == from_text
    assert from_html.procedure == "promocion"
    assert from_html.titulo == "Campaña «Tu trámite en línea»"
    assert from_html.objetivo == (
        "Promocionar la plataforma de trámites\nen línea durante diciembre."
    )
    assert from_html.publicar_desde == date(2026, 12, 7)
    assert from_html.publicar_hasta == date(2026, 12, 31)
    assert from_html.protegida is True
    assert from_html.ok, from_html.problems


@pytest.mark.parametrize(
    "label",
    [
        "Título",
        "TITULO",
        "titulo",
        "*Título:*",
        "- Título",
        "1. Título",
        "Título de la publicación",
    ],
)
def test_labels_ignore_case_accents_and_markup(label: str) -> None:
    sep = "" if label.endswith(":*") else ":"
    assert read_fields(f"{label}{sep} Campaña")["titulo"] == "Campaña"


def test_first_label_wins_and_quoted_lines_are_skipped() -> None:
    fields = read_fields("Título: uno\n> Título: citado\nTítulo: dos")
    assert fields == {"titulo": "uno"}


def test_short_field_ends_at_blank_line_long_field_at_closing() -> None:
    text = "Título: A\ncontinúa\n\nnota suelta\nResumen: uno\n\ndos\nSaludos,\nAna"
    assert read_fields(text) == {"titulo": "A continúa", "resumen": "uno\n\ndos"}


def test_value_on_the_next_line() -> None:
    assert read_fields("Objetivo:\n\nInformar.\n")["objetivo"] == "Informar."


def test_missing_fields_are_listed_with_spanish_messages() -> None:
    intake = parse_intake("Tipo: información específica\nTítulo: X", TODAY)
    assert [p.field for p in intake.problems] == [
        "objetivo",
        "resumen",
        "publicar_desde",
        "publicar_hasta",
    ]
    assert intake.problems[0].message == "Falta «Objetivo»."
    assert not intake.ok


def test_missing_tipo() -> None:
    intake = parse_intake("Título: X", TODAY)
    assert intake.procedure is None
    assert [p.field for p in intake.problems] == ["tipo"]
    assert intake.problems[0].message.startswith("Falta «Tipo»")


def test_invalid_values_are_explained() -> None:
    text = (
        "Tipo: algo raro\nPublicar desde: lunes 1 de diciembre\nPublicar hasta: 30/11/2026\n"
        "Protegida: quizás\nEnlace: ninguno\n"
    )
    problems = {p.field: p.message for p in parse_intake(text, TODAY).problems}
    assert problems["tipo"].startswith("No se reconoce «algo raro»")
    assert problems["publicar_desde"] == "«Publicar desde»: el 01/12/2026 es martes, no lunes."
    assert problems["publicar_hasta"] == "«Publicar hasta» es antes de «Publicar desde»."
    assert "sí» o «no" in problems["protegida"]
    assert "https://" in problems["enlace"]


def test_unreadable_and_past_dates() -> None:
    intake = parse_intake(
        "Tipo: promoción\nTítulo: X\nObjetivo: Y\nPublicar desde: pronto\n"
        "Publicar hasta: 01/11/2026",
        TODAY,
    )
    problems = {p.field: p.message for p in intake.problems}
    assert "No se entiende la fecha «pronto»" in problems["publicar_desde"]
    assert problems["publicar_hasta"] == "«Publicar hasta» (01/11/2026) ya pasó."


def test_eliminacion_needs_a_link() -> None:
    ok = parse_intake("Tipo: eliminación\nEnlace: https://facebook.com/x/posts/1.", TODAY)
    assert ok.ok
    assert ok.enlace == "https://facebook.com/x/posts/1"
    missing = parse_intake("Tipo: eliminar publicación", TODAY)
    assert [p.field for p in missing.problems] == ["enlace"]


def test_period_field() -> None:
    intake = parse_intake(
        "Tipo: promoción\nTítulo: X\nObjetivo: Y\n"
        "Tiempo de publicación: del 1 al 15 de diciembre de 2026",
        TODAY,
    )
    assert (intake.publicar_desde, intake.publicar_hasta) == (date(2026, 12, 1), date(2026, 12, 15))
    assert intake.ok


def test_custom_required_and_aliases() -> None:
    intake = parse_intake(
        "Tipo: campaña pagada\nTítulo: X",
        TODAY,
        aliases={"promocion": ["campaña pagada"]},
        required={"promocion": ("titulo", "unidad")},
    )
    assert intake.procedure == "promocion"
    assert [p.field for p in intake.problems] == ["unidad"]


@pytest.mark.parametrize(
    ("value", "procedure"),
    [
        ("Publicación de información específica", "informacion_especifica"),
        ("información específica", "informacion_especifica"),
        ("INFORMACION_ESPECIFICA", "informacion_especifica"),
        ("promoción", "promocion"),
        ("Publicación de promoción", "promocion"),
        ("Publicación de imágenes con diseño", "imagenes_diseno"),
        ("imagenes_diseno", "imagenes_diseno"),
        ("diseño", "imagenes_diseno"),
        ("directa", "directa"),
        ("Publicación de fotografía", "directa"),
        ("Publicación de vídeo", "directa"),
        ("Publicación informativa cotidiana", "directa"),
        ("Eliminación", "eliminacion"),
        ("eliminar un post", "eliminacion"),
        ("3", "informacion_especifica"),
        ("Tipo 1", "promocion"),
        ("6", "directa"),
        ("", None),
        ("8", None),
        ("otra cosa", None),
    ],
)
def test_parse_procedure(value: str, procedure: str | None) -> None:
    assert parse_procedure(value) == procedure


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("01/12/2026", date(2026, 12, 1)),
        ("1/12/26", date(2026, 12, 1)),
        ("1-12-2026", date(2026, 12, 1)),
        ("1.12.2026", date(2026, 12, 1)),
        ("2026-12-01", date(2026, 12, 1)),
        ("1 de diciembre de 2026", date(2026, 12, 1)),
        ("1 diciembre 2026", date(2026, 12, 1)),
        ("1 de Diciembre del 2026", date(2026, 12, 1)),
        ("1ro de dic. 2026", date(2026, 12, 1)),
        ("1º de diciembre de 2026", date(2026, 12, 1)),
        ("lunes 1 de diciembre", date(2026, 12, 1)),
        ("martes, 1 de diciembre", date(2026, 12, 1)),
        ("15 de setiembre", date(2026, 9, 15)),
        ("el 4 de ENERO de 2027", date(2027, 1, 4)),
        ("31/02/2026", None),
        ("13/13/2026", None),
        ("mañana", None),
        ("", None),
        ("1 de diciembrex de 2026", None),
        # Short forms: Outlook and spreadsheets, the abbreviated month, the month first.
        ("10-dic-2026", date(2026, 12, 10)),
        ("10/Dic/26", date(2026, 12, 10)),
        ("20-dic", date(2026, 12, 20)),
        ("20 de dic.", date(2026, 12, 20)),
        ("diciembre 20", date(2026, 12, 20)),
        ("Diciembre 20, 2026", date(2026, 12, 20)),
        ("dic. 20 de 2026", date(2026, 12, 20)),
    ],
)
def test_parse_date(text: str, expected: date | None) -> None:
    assert parse_date(text, TODAY) == expected


def test_date_without_year_needs_today() -> None:
    assert parse_date("1 de diciembre") is None


def test_weekday_mismatch() -> None:
    assert weekday_mismatch("martes 1 de diciembre", date(2026, 12, 1)) == ""
    assert weekday_mismatch("01/12/2026", date(2026, 12, 1)) == ""
    assert "martes, no lunes" in weekday_mismatch("lunes 1 de diciembre", date(2026, 12, 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("del 1 al 15 de diciembre de 2026", (date(2026, 12, 1), date(2026, 12, 15))),
        ("01/12/2026 - 15/12/2026", (date(2026, 12, 1), date(2026, 12, 15))),
        ("1 de diciembre hasta el 3 de enero de 2027", (date(2026, 12, 1), date(2027, 1, 3))),
        ("del 28 al 3 de diciembre", (date(2026, 11, 28), date(2026, 12, 3))),
        ("todo diciembre", (None, None)),
    ],
)
def test_parse_period(text: str, expected: tuple[date | None, date | None]) -> None:
    assert parse_period(text, TODAY) == expected


def test_cronograma_one_line() -> None:
    reading = parse_cronograma("ENTREGO\nCronograma: material 04/12/2026; publicación 07/12/2026")
    assert [(m.label, m.due) for m in reading.milestones] == [
        ("material", date(2026, 12, 4)),
        ("publicacion", date(2026, 12, 7)),
    ]
    assert reading.due("Publicación") == date(2026, 12, 7)
    assert reading.due("diseño") is None
    assert reading.problems == ()


def test_cronograma_list_with_stages_and_problems() -> None:
    text = "Cronograma:\n- Etapa 6: 4 de diciembre\n- publicación el 7/12/26\n- revisión pronto\n"
    reading = parse_cronograma(text, TODAY)
    assert [(m.label, m.due, m.stage) for m in reading.milestones] == [
        ("etapa 6", date(2026, 12, 4), 6),
        ("publicacion", date(2026, 12, 7), None),
    ]
    assert reading.problems[0].field == "cronograma"
    assert "revisión pronto" in reading.problems[0].message


def test_cronograma_from_corpus_reply() -> None:
    mail = parse_message((CORPUS / "apple_mail_entrego_cronograma_adjunto.eml").read_bytes())
    reading = parse_cronograma(extract_new_text(mail.text))
    assert reading.due("material") == date(2026, 12, 4)
    assert reading.due("publicacion") == date(2026, 12, 7)


def test_no_cronograma() -> None:
    assert parse_cronograma("APRUEBO").milestones == ()


def test_large_input_is_bounded() -> None:
    text = ("Título: " + "x" * 1000 + "\n") * 200 + "1" * 100_000 + " de " * 10_000
    start = time.perf_counter()
    parse_intake(text, TODAY)
    parse_cronograma("Cronograma: " + "1 de " * 50_000)
    assert time.perf_counter() - start < 3


# Outlook desktop writes the text/plain alternative of a table one cell per line.
OUTLOOK_TABLE_TEXT = """Tipo

Publicación de información específica

Título

Feria de servicios digitales 2026

Objetivo

Difundir la feria.
"""
OUTLOOK_TABLE_HTML = """<html><body><table class=MsoTableGrid border=1>
<tr><td><p class=MsoNormal><b>Tipo</b></p></td>
<td><p class=MsoNormal>Publicación de información específica</p></td></tr>
<tr><td><p class=MsoNormal><b>Título</b></p></td>
<td><p class=MsoNormal>Feria de servicios digitales 2026</p></td></tr>
<tr><td><p class=MsoNormal><b>Objetivo</b></p></td><td>Difundir la feria.</td></tr>
<tr><td><b>Resumen</b></td><td>Atención en el atrio de la Agencia.</td></tr>
<tr><td><b>Publicar desde</b></td><td>10-dic-2026</td></tr>
<tr><td><b>Publicar hasta</b></td><td>diciembre 20</td></tr>
</table><p>Saludos,<br>Ana</p></body></html>"""


def test_outlook_table_is_read_from_the_html_when_the_text_part_yields_no_fields() -> None:
    assert parse_intake(OUTLOOK_TABLE_TEXT, TODAY).raw == {}
    intake = read_request(OUTLOOK_TABLE_TEXT, OUTLOOK_TABLE_HTML, TODAY)
    assert intake.ok, intake.problems
    assert intake.procedure == "informacion_especifica"
    assert intake.titulo == "Feria de servicios digitales 2026"
    assert intake.publicar_desde == date(2026, 12, 10)
    assert intake.publicar_hasta == date(2026, 12, 20)


def test_text_part_wins_when_it_has_the_fields() -> None:
    text = "Tipo: promoción\nTítulo: Campaña de diciembre\nObjetivo: Difundir los trámites."
    html = "<p>Tipo: promoción</p>"
    assert read_request(text, html, TODAY).titulo == "Campaña de diciembre"
    assert read_request(text, "", TODAY).procedure == "promocion"
    assert read_request("", "<p>Tipo: promoción</p><p>Título: X</p>", TODAY).titulo == "X"


def test_table_with_labels_in_a_header_row() -> None:
    html = (
        "<table><tr><th>Tipo</th><th>Título</th><th>Objetivo</th><th>Resumen</th>"
        "<th>Publicar desde</th><th>Publicar hasta</th></tr>"
        "<tr><td>Información específica</td><td>Feria 2026</td><td>Difundir la feria</td>"
        "<td>En el atrio</td><td>10/12/2026</td><td>20 de dic.</td></tr></table>"
    )
    intake = parse_intake(html, TODAY, html=True)
    assert intake.ok, intake.problems
    assert intake.titulo == "Feria 2026"
    assert intake.resumen == "En el atrio"
    assert intake.publicar_hasta == date(2026, 12, 20)
