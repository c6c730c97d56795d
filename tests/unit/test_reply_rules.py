"""The reply reader's rules, one Spanish reply per rule: each client, language and habit.

Every reply here is written for this project the way the named client quotes (the
author writes in Spanish; the quote header is in the language of the author's mail
client). Each case would be misread by a reader that does not know its rule.
"""

from __future__ import annotations

import pytest

from mailflow.core.model import Action
from mailflow.mail.replytext import (
    Cut,
    Unclear,
    extract_new_text,
    read_action,
    read_reply,
    reduce_reply,
)

# The original every reply below quotes: our own mail, which names the keywords itself.
ORIGINAL = (
    "Solicitud RRSS-2026-0042: Feria de servicios digitales 2026\n"
    "Responda APRUEBO, OBSERVO <sugerencias> o RECHAZO <motivo>."
)


def _quoted(text: str = ORIGINAL) -> str:
    return "\n".join(f"> {line}" for line in text.split("\n"))


# --------------------------------------------------------------------------- attribution lines


@pytest.mark.parametrize(
    "attribution",
    [
        "Le ven. 20 nov. 2026 à 10:12, Mesa RRSS <rrss@ejemplo.gob.bo> a écrit :",
        "Em sex., 20 de nov. de 2026 às 10:12, Mesa RRSS <rrss@ejemplo.gob.bo> escreveu:",
        "Am Fr., 20. Nov. 2026 um 10:12 Uhr schrieb Mesa RRSS <rrss@ejemplo.gob.bo>:",
        "Il giorno ven 20 nov 2026 alle ore 10:12 Mesa RRSS <rrss@ejemplo.gob.bo> ha scritto:",
        "Op vr 20 nov. 2026 om 10:12 schreef Mesa RRSS <rrss@ejemplo.gob.bo>:",
        "пт, 20 нояб. 2026 г. в 10:12, Mesa RRSS <rrss@ejemplo.gob.bo>:",
        '20.11.2026, 10:12, "Mesa RRSS" <rrss@ejemplo.gob.bo>:',
        "W dniu 20.11.2026 o 10:12, Mesa RRSS <rrss@ejemplo.gob.bo>\nnapisał:",
    ],
)
def test_attribution_in_other_languages_ends_the_new_text(attribution: str) -> None:
    body = f"OBSERVO cambiar la foto de portada\n\n{attribution}\n\n{_quoted()}"
    reading = read_reply(body)
    assert reading.action is Action.OBSERVO
    assert reading.text == "cambiar la foto de portada"


def test_french_attribution_with_the_reply_written_below_it() -> None:
    # Thunderbird in French, bottom-posted: the keyword is under the quote.
    body = f"Le 20/11/2026 à 10:12, Mesa RRSS a écrit :\n{_quoted()}\n\nAprobé."
    reading = read_reply(body)
    assert reading.action is Action.APRUEBO
    assert reading.text == ""


def test_gmail_numeric_attribution_with_the_reply_below_it() -> None:
    body = (
        "2026-11-20 10:12 GMT-04:00 Mesa RRSS <rrss@ejemplo.gob.bo>:\n\n"
        f"{_quoted()}\n\nRECHAZO el logo no es el vigente"
    )
    reading = read_reply(body)
    assert reading.action is Action.RECHAZO
    assert reading.text == "el logo no es el vigente"


def test_gmail_numeric_attribution_without_a_quote_ends_the_new_text() -> None:
    body = f"OBSERVO falta la fecha\n\n2026-11-20 10:12 GMT-04:00 Mesa RRSS\n\n{ORIGINAL}"
    assert extract_new_text(body) == "OBSERVO falta la fecha"


def test_author_line_right_above_a_wrapped_attribution_is_kept() -> None:
    body = (
        "APRUEBO, el material está listo.\n"
        'Op 20 nov. 2026 10:12 schreef "Mesa RRSS" <rrss@ejemplo.gob.bo> het\n'
        f"volgende geschreven:\n\n{_quoted()}"
    )
    assert extract_new_text(body) == "APRUEBO, el material está listo."


def test_attribution_wrapped_around_the_address_and_a_quoted_verb() -> None:
    # Polymail puts the address on lines of its own and the verb after a ">".
    body = (
        "DERIVO\n\nOn Fri, Nov 20, 2026 at 10:12 AM Mesa RRSS\n\n<\n"
        f"mailto:rrss@ejemplo.gob.bo\n> wrote:\n{ORIGINAL}"
    )
    assert extract_new_text(body) == "DERIVO"


def test_a_sentence_that_quotes_someone_is_not_an_attribution() -> None:
    body = "OBSERVO\nComo Ana escribió: el título es largo.\nEl 12/12 va mejor."
    assert extract_new_text(body) == body


# --------------------------------------------------------------------------- separators, headers


@pytest.mark.parametrize(
    "header",
    [
        "-------- Original Message --------\nSubject: Feria\nDate: Fri, 20 Nov 2026 10:12:00",
        "-----Ursprüngliche Nachricht-----\nVon: Mesa RRSS\nGesendet: Freitag, 20. November 2026",
        "-------- Message d'origine --------\nDe : Mesa RRSS",
        "________________________________\nDate: Fri, 20 Nov 2026 10:12:00 -0400\n"
        "Subject: Feria\nFrom: rrss@ejemplo.gob.bo\nTo: ana@ejemplo.gob.bo",
        "De : Mesa RRSS [mailto:rrss@ejemplo.gob.bo]\nEnvoyé le : vendredi 20 novembre 2026 10:12\n"
        "À : Ana\nObjet : Feria",
        "От: Mesa RRSS\nОтправлено: 20 ноября 2026 г. 10:12\nКому: Ana\nТема: Feria",
        "Da: Mesa RRSS\nInviato: venerdì 20 novembre 2026 10:12\nA: Ana\nOggetto: Feria",
        "*Van:* Mesa RRSS\n*Verzonden:* vrijdag 20 november 2026 10:12\n*Onderwerp:* Feria",
        "Date: Fri, 20 Nov 2026 10:12:00 -0400\nTo: ana@ejemplo.gob.bo",
    ],
)
def test_separators_and_header_blocks_end_the_new_text(header: str) -> None:
    body = f"RECHAZO fuera de plazo\n\n{header}\n\n{ORIGINAL}"
    reduction = reduce_reply(body)
    assert reduction.text == "RECHAZO fuera de plazo"
    assert reduction.cut in (Cut.SEPARATOR, Cut.HEADERS)


def test_fecha_and_para_lines_of_the_author_are_not_a_header_block() -> None:
    body = "ENTREGO\nFecha: 12/12/2026\nPara: Facebook e Instagram"
    assert extract_new_text(body) == body


def test_a_dashed_line_inside_the_text_is_not_a_separator() -> None:
    body = "OBSERVO\nEsto no es un ---------- separador.\n\nCambiar la fecha."
    assert extract_new_text(body) == body


# --------------------------------------------------------------------------- signatures


def test_signature_link_is_never_a_product_link() -> None:
    body = (
        "PUBLICADO https://www.facebook.com/ejemplo/posts/123\n\n"
        "Saludos,\nAna Quispe\nAdministradora de Redes Sociales\nhttps://www.ejemplo.gob.bo\n\n"
        f"El vie, 20 nov 2026 a las 10:12, Mesa <rrss@ejemplo.gob.bo> escribió:\n{_quoted()}"
    )
    reading = read_reply(body)
    assert reading.action is Action.PUBLICADO
    assert reading.urls == ("https://www.facebook.com/ejemplo/posts/123",)
    assert reading.text == "https://www.facebook.com/ejemplo/posts/123"


def test_long_institutional_signature_links_are_not_products() -> None:
    body = (
        "PUBLICADO https://www.instagram.com/p/Feria2026/\n\nAtentamente,\n\n"
        "Ing. Juan Carlos Mamani Flores\nAdministrador de Redes Sociales\n"
        "Unidad de Gestión de Servicios\nAgencia de Ejemplo\n"
        "Av. Mariscal Santa Cruz Nº 1234, Edificio Central, piso 3\nLa Paz - Bolivia\n"
        "Tel.: (591-2) 2123456 int. 210\nCel.: 70012345\n"
        "https://www.ejemplo.gob.bo\nhttps://www.facebook.com/ejemplo.gob.bo"
    )
    reading = read_reply(body)
    assert reading.urls == ("https://www.instagram.com/p/Feria2026/",)


def test_name_and_contact_block_is_a_signature() -> None:
    reduction = reduce_reply(
        "RECHAZO el logo no es el vigente\n\nAna Quispe Mamani\nJefa de Comunicación\n"
        "Tel. 2-2123456 int. 210\nana.quispe@ejemplo.gob.bo"
    )
    assert reduction.text == "RECHAZO el logo no es el vigente"
    assert reduction.signature.startswith("Ana Quispe Mamani")


def test_name_with_a_post_and_no_contacts_is_a_signature() -> None:
    body = (
        "APRUEBO\n\nLic. María Quispe\nJefa de la Unidad de Gestión de Servicios\n"
        "Agencia de Ejemplo"
    )
    assert read_action(extract_new_text(body)).text == ""


def test_a_date_is_not_a_phone_number_of_a_signature() -> None:
    body = "OBSERVO\n\nNueva Fecha\nPublicar el 2026-12-10 a las 10:00"
    assert read_action(body).text == "Nueva Fecha\nPublicar el 2026-12-10 a las 10:00"


def test_two_capitalised_words_of_the_author_are_not_a_signature() -> None:
    body = "OBSERVO\n\nCambiar Portada\nusar la foto del atrio"
    assert extract_new_text(body) == body


def test_sign_off_stays_in_the_message_but_not_in_the_action_text() -> None:
    body = "OBSERVO cambiar la foto\n\nSaludos cordiales,\nAna"
    assert extract_new_text(body) == body
    assert read_action(body).text == "cambiar la foto"


def test_dash_name_signature() -> None:
    assert extract_new_text("APRUEBO\n\n—Ana") == "APRUEBO"


def test_list_items_are_not_a_signature() -> None:
    body = "OBSERVO\n\n- Cambiar el título\n- Quitar la foto\n\nRevisar la fecha"
    assert read_action(body).text == "- Cambiar el título\n- Quitar la foto\n\nRevisar la fecha"
    assert extract_new_text(body) == body


def test_a_one_word_line_is_not_taken_for_a_name() -> None:
    reduction = reduce_reply("Buenos días,\n\nAPRUEBO\n\nTel. 2-2123456")
    assert "APRUEBO" in reduction.text


def test_corporate_signature_with_a_notice_below_it_is_set_apart() -> None:
    body = (
        "OBSERVO cambiar la fecha\n\nGracias,\n____________\nAna Quispe\n"
        "Unidad de Gestión de Servicios\nTel.: 2-2123456\n____________\n\n"
        "Para soporte técnico de los sistemas de la Agencia escriba a la mesa de ayuda, que "
        "atiende de lunes a viernes de 8:30 a 16:30.\n\n"
        "La información de este correo es confidencial y de uso exclusivo de su destinatario."
    )
    assert read_reply(body).text == "cambiar la fecha"


def test_a_long_message_that_mentions_confidential_data_is_kept() -> None:
    body = (
        "OBSERVO\n\nAna Quispe\nrevisó el texto y pide quitar los nombres.\n\n"
        "Los datos de los beneficiarios son confidenciales y no deben publicarse."
    )
    assert extract_new_text(body) == body


def test_legal_disclaimer_is_set_apart() -> None:
    body = (
        "DERIVO al administrador\n\nAVISO DE CONFIDENCIALIDAD: Este mensaje y sus anexos son "
        "confidenciales y para uso exclusivo de su destinatario."
    )
    assert read_reply(body).text == "al administrador"


# --------------------------------------------------------------------------- gateway banners


@pytest.mark.parametrize(
    "banner",
    [
        "PRECAUCIÓN: Este correo se originó fuera de la organización. No haga clic en los "
        "enlaces ni abra los archivos adjuntos a menos que reconozca al remitente.",
        "CAUTION: This email originated from outside of the organization. Do not click links "
        "or open attachments unless you recognize the sender.",
        "[EXTERNO]",
        "Correo externo: verifique el remitente antes de abrir enlaces o archivos adjuntos.",
        "ATENCIÓN: Este correo proviene de un remitente externo.",
    ],
)
def test_gateway_banner_above_the_text_is_skipped(banner: str) -> None:
    reading = read_reply(f"{banner}\n\nAPRUEBO\n\nEl vie, 20 nov 2026, Mesa escribió:\n{_quoted()}")
    assert reading.action is Action.APRUEBO


def test_a_reply_that_talks_about_precaution_is_not_a_banner() -> None:
    body = "Precaución: la fecha de publicación cae en feriado.\n\nOBSERVO"
    assert extract_new_text(body) == body


# --------------------------------------------------------------------------- phone footers


@pytest.mark.parametrize(
    "footer",
    [
        "Enviado desde mi iPhone",
        "Enviado desde mi Samsung Galaxy",
        "Obtener Outlook para Android",
        "Enviado desde Outlook para iOS<https://aka.ms/o0ukef>",
        "Envoyé de mon iPhone",
        "Descargar Outlook para Android",
        "Enviado desde mi dispositivo móvil",
        "Von meinem Mobilgerät gesendet",
    ],
)
def test_phone_footers_are_cut(footer: str) -> None:
    assert extract_new_text(f"APRUEBO\n\n{footer}\n\n{ORIGINAL}") == "APRUEBO"


def test_phone_footer_rule_does_not_cut_a_sentence() -> None:
    body = "OBSERVO la foto\nEnviado desde mi casa, mañana reviso el resto."
    assert read_reply(body).text == "la foto\nEnviado desde mi casa, mañana reviso el resto."


# --------------------------------------------------------------------------- quotes and keywords


def test_approval_inside_a_quote_never_counts() -> None:
    body = (
        "Gracias, lo reviso y le respondo mañana.\n\n"
        "Le 20/11/2026 à 10:12, Ana a écrit :\n> APRUEBO\n> Ana"
    )
    reading = read_reply(body)
    assert reading.action is None
    assert reading.unclear is Unclear.NO_KEYWORD


def test_interleaved_answer_between_quotes_is_kept() -> None:
    body = (
        "> ¿Aprueba la propuesta de contenido para la feria de servicios digitales?\n"
        "APRUEBO\n> Otra"
    )
    assert extract_new_text(body) == "APRUEBO"


def test_wrapped_quoted_sentence_is_not_new_text() -> None:
    body = (
        "OBSERVO la fecha\n\nEl vie, 20 nov 2026, Mesa escribió:\n"
        "> Le pedimos revisar la propuesta de contenido de la feria y responder con\n"
        "apruebo u observo.\n> Gracias"
    )
    assert extract_new_text(body) == "OBSERVO la fecha"


@pytest.mark.parametrize(
    ("body", "action"),
    [
        ("Aprobé.", Action.APRUEBO),
        ("aprobe", Action.APRUEBO),
        ("Rechacé: el logo no es el vigente", Action.RECHAZO),
        ("Publiqué https://www.facebook.com/ejemplo/posts/9", Action.PUBLICADO),
        ("Entregué el material", Action.ENTREGO),
    ],
)
def test_first_person_past_tense_is_an_action(body: str, action: Action) -> None:
    assert read_action(body).action is action


@pytest.mark.parametrize(
    ("body", "unclear"),
    [
        ("No aprobé nada todavía", Unclear.NEGATED),
        ("Aprobé, pero ¿cambiaron la foto?", Unclear.QUESTION),
        ("Aprobé siempre que se corrija la fecha", Unclear.CONDITIONAL),
        ("Publique el lunes, por favor", Unclear.NO_KEYWORD),
    ],
)
def test_past_tense_negated_conditional_or_command_never_counts(
    body: str, unclear: Unclear
) -> None:
    reading = read_action(body)
    assert reading.action is None
    assert reading.unclear is unclear
