"""Conversations as people really write them, by real mail: notes, completions, ANULO,
copied colleagues, repeats, several holders, the requester's mails and held openings.

Every reply travels through the SMTP relay into Dovecot and is answered to a mail that
really landed in the person's inbox, quoted the way Gmail, Outlook, Thunderbird or an
iPhone quote it (each test uses at least two of them). One `run --once` pass handles what
was sent; each test then looks from the outside: `requests show`, what the daemon handed
to the relay, and the inboxes. None of these replies may move a stage.
"""

from __future__ import annotations

import email.policy
import hashlib
import json
import os
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import pytest
from reliability.kit import forged, open_request, refusals, send_raw_as, variant
from testbed.mail import append, build_message, parse, send_as
from testbed.outside import HELP, NOTICE, codes, ledger, plain, sent, subjects
from testbed.site import INFO_REQUEST, INFO_STEPS, TZ, Scenario, Site, code_of

NOTED = "Nota registrada"
ACTION = "Acción requerida"
FOOTER = "Para actuar, responda a este correo"
ACK = "Solicitud recibida"


# -- looking from the outside -------------------------------------------------------------


def files_of(state: dict[str, Any]) -> list[tuple[str, str]]:
    """Return the (name, SHA-256) of each file `requests show --json` lists."""
    return [(a["filename"], a["sha256"]) for a in state["attachments"]]


def actions(scenario: Scenario, code: str) -> list[str]:
    """Return the request's history actions, in order."""
    return [h["action"] for h in scenario.show(code)["history"]]


def newest(site: Site, person: str, word: str, code: str = "") -> EmailMessage:
    """Return the newest mail in ``person``'s inbox about ``code`` whose subject has ``word``."""
    return site.wait_for(person, lambda m: code in str(m["Subject"]) and word in str(m["Subject"]))


def told(site: Site, person: str, word: str, before: int = 0) -> list[EmailMessage]:
    """Return the mails to ``person`` with ``word`` in the subject, of those sent since
    ``before`` (an index into everything the daemon sent, as ``len(sent(site))``)."""
    ours = [m for m in site.relay.accepted if m.mail_from == site.shared][before:]
    mails = [parse(m.raw) for m in ours if site.addr(person) in m.rcpt_tos]
    return [m for m in mails if word in str(m["Subject"])]


def footer_free(message: EmailMessage) -> bool:
    """Tell whether a mail offers no keywords: the closing and answering mails."""
    html = str(message.get_body(("html",)).get_content())
    return FOOTER not in plain(message) and "Para actuar" not in html


def play(scenario: Scenario, code: str, steps: list[tuple[str, str, str]]) -> None:
    """Have each person answer their newest action mail about ``code``, one pass each."""
    site = scenario.site
    for person, answer, style in steps:
        site.reply(person, newest(site, person, ACTION, code), answer, style=style)
        scenario.run()


AFICHE = ("afiche feria.png", b"\x89PNG\r\n\x1a\n" + os.urandom(2048), "image/png")


# -- 1. notes by reply ----------------------------------------------------------------------


def test_a_note_joins_the_request_and_reaches_the_holder(scenario: Scenario) -> None:
    """The requester answers her acknowledgement with the poster she forgot (Gmail), the
    holder answers her action mail with words, not a keyword (Outlook)."""
    code, action_mail = open_request(scenario)
    site = scenario.site
    ack = newest(site, "analista", ACK, code)
    assert "Le escribiremos" in plain(ack)
    before = len(sent(site))

    site.reply("analista", ack, "Olvidé adjuntar el afiche.", style="gmail", attachments=(AFICHE,))
    scenario.run()

    state = scenario.show(code)
    assert state["stage"]["number"] == 2
    assert actions(scenario, code) == ["ENTREGO", "NOTA"]
    note = state["history"][-1]
    assert note["actor"] == site.addr("analista")
    assert note["note"] == "Olvidé adjuntar el afiche."
    assert (AFICHE[0], hashlib.sha256(AFICHE[1]).hexdigest()) in files_of(state)
    assert state["refused"] == []
    [confirmation] = told(site, "analista", "", before)
    assert NOTED in str(confirmation["Subject"])
    assert footer_free(confirmation)
    assert "APRUEBO" not in plain(confirmation)  # never the actions of another role
    [forwarded] = told(site, "directora", "", before)
    assert "Nota de " + site.addr("analista") in str(forwarded["Subject"])
    assert "Olvidé adjuntar el afiche." in plain(forwarded)
    assert AFICHE[0] in plain(forwarded)
    # She must act on the stage: the note's file travels with it, as with any action mail.
    assert [p.get_filename() for p in forwarded.iter_attachments()] == [AFICHE[0]]
    assert subjects(sent(site)[before:]).count(HELP) == 0

    # The holder writes words, not a keyword: a note too, whose answer lists her keywords.
    before = len(sent(site))
    site.reply("directora", action_mail, "Lo reviso el lunes con la unidad.", style="outlook")
    scenario.run()
    assert scenario.show(code)["stage"]["number"] == 2
    assert actions(scenario, code) == ["ENTREGO", "NOTA", "NOTA"]
    [answer] = sent(site)[before:]
    assert str(answer["To"]) == site.addr("directora")
    assert NOTED in str(answer["Subject"])
    assert "No registramos ninguna acción" in plain(answer)
    assert "APRUEBO" in plain(answer)

    # The next action mail carries the poster among the request's files.
    site.reply("directora", action_mail, "APRUEBO", style="gmail")
    scenario.run()
    assert scenario.show(code)["stage"]["number"] == 3
    derive = newest(site, "jefe.ugs", ACTION, code)
    assert AFICHE[0] in [p.get_filename() for p in derive.iter_attachments()]
    assert AFICHE[0] in plain(derive)


def test_a_note_that_starts_with_archivos_is_a_note_and_keeps_its_file(
    scenario: Scenario,
) -> None:
    """Only the bare word asks for the files; a sentence that starts with it is a note."""
    code, _ = open_request(scenario)
    site = scenario.site
    ack = newest(site, "analista", ACK, code)
    text = "Archivos corregidos: les mando el afiche con el logo vigente."
    site.reply("analista", ack, text, style="outlook", attachments=(AFICHE,))
    scenario.run()
    state = scenario.show(code)
    assert actions(scenario, code) == ["ENTREGO", "NOTA"]
    assert state["history"][-1]["note"] == text
    assert (AFICHE[0], hashlib.sha256(AFICHE[1]).hexdigest()) in files_of(state)
    assert not told(site, "analista", "Archivos de la solicitud")


def test_a_late_action_with_a_file_keeps_the_file(scenario: Scenario) -> None:
    """A holder who acts after another decided the stage loses the action, not the file."""
    code, action_mail = open_request(scenario)
    site = scenario.site
    site.reply("directora", action_mail, "APRUEBO", style="gmail")
    scenario.run()
    before = len(sent(site))
    site.reply("directora", action_mail, "APRUEBO otra vez, con el afiche.", style="outlook",
               attachments=(AFICHE,))  # fmt: skip
    scenario.run()
    state = scenario.show(code)
    assert state["stage"]["number"] == 3
    assert (AFICHE[0], hashlib.sha256(AFICHE[1]).hexdigest()) in files_of(state)
    [answer] = [m for m in sent(site)[before:] if str(m["To"]) == site.addr("directora")]
    assert AFICHE[0] in plain(answer)
    assert "quedaron entre los archivos" in " ".join(plain(answer).split())


def test_a_note_on_an_ended_request_gets_the_outcome_and_thanks_get_nothing(
    scenario: Scenario,
) -> None:
    code, action_mail = open_request(scenario)
    site = scenario.site
    site.reply("directora", action_mail, "RECHAZO la feria se postergó.", style="gmail")
    scenario.run()
    rejected = newest(site, "analista", "rechazada", code)
    assert footer_free(rejected)
    history = actions(scenario, code)
    before = len(sent(site))

    site.reply("analista", rejected, "Entendido, gracias.\n\nAna Analista\nUTI", style="iphone")
    scenario.run()
    assert sent(site)[before:] == []
    assert actions(scenario, code) == history
    assert ledger(scenario)[-1].outcome == "processed"

    site.reply("analista", rejected, "¿Puedo enviarla de nuevo en enero?", style="thunderbird")
    scenario.run()
    [answer] = sent(site)[before:]
    assert str(answer["To"]) == site.addr("analista")
    assert "rechazada" in str(answer["Subject"])
    assert "ya terminó: está rechazada" in " ".join(plain(answer).split())
    assert footer_free(answer)
    assert scenario.show(code)["status"] == "rechazado"
    assert actions(scenario, code) == [*history, "NOTA"]


# -- 2. completion by reply -----------------------------------------------------------------

INCOMPLETE = """Buenos días,

Tipo: Publicación de información específica
Título: Feria de servicios digitales 2026
Unidad: UTI

Saludos,
Analista UTI
"""
PHOTO = ("foto stand.jpg", b"\xff\xd8\xff" + os.urandom(1024), "image/jpeg")


# Outlook's table of a request: the text alternative has one cell per line and no colons,
# only the HTML part says which value is which. The Resumen is missing.
TABLE_TEXT = """Tipo
Publicación de información específica
Título
Feria de servicios digitales 2026
Objetivo
Difundir la feria de servicios digitales de la Agencia.
Publicar desde
10/12/2026
Publicar hasta
20/12/2026
"""
TABLE_HTML = """<html><body><table>
<tr><td><p><b>Tipo:</b></p></td><td><p>Publicación de información específica</p></td></tr>
<tr><td><p><b>Título:</b></p></td><td><p>Feria de servicios digitales 2026</p></td></tr>
<tr><td><p><b>Objetivo:</b></p></td><td><p>Difundir la feria de servicios digitales de la
Agencia.</p></td></tr>
<tr><td><p><b>Publicar desde:</b></p></td><td><p>10/12/2026</p></td></tr>
<tr><td><p><b>Publicar hasta:</b></p></td><td><p>20/12/2026</p></td></tr>
</table></body></html>"""


def test_completing_an_outlook_table_request_keeps_the_fields_of_its_html(
    scenario: Scenario,
) -> None:
    """The first mail is read as any request (its HTML table); the reply adds the Resumen."""
    site = scenario.site
    table = build_message(site.addr("analista"), [site.shared], "Solicitud: feria", TABLE_TEXT)
    table.add_alternative(TABLE_HTML, subtype="html")
    send_raw_as(site, "analista", table)
    scenario.run()
    help_mail = newest(site, "analista", HELP)
    assert "Falta «Resumen»" in plain(help_mail)
    assert "Falta «Tipo»" not in plain(help_mail)
    site.reply("analista", help_mail, "Resumen: Stands de cada unidad.", style="outlook")
    scenario.run()
    [code] = codes(scenario)
    state = scenario.show(code)
    assert state["title"] == "Feria de servicios digitales 2026"
    assert state["fields"]["resumen"] == "Stands de cada unidad."
    assert state["publication"]["from"] == "2026-12-10"


def test_completing_a_request_by_reply_merges_it_with_the_first_mail(scenario: Scenario) -> None:
    site = scenario.site
    site.send("analista", "Solicitud: feria", INCOMPLETE, attachments=(AFICHE,))
    scenario.run()
    first_help = newest(site, "analista", HELP)
    assert codes(scenario) == []

    # Only two of the four missing fields, in Gmail: still incomplete, told what is left.
    site.reply(
        "analista",
        first_help,
        "Objetivo: Difundir la feria.\nResumen: Stands de cada unidad.",
        style="gmail",
    )
    scenario.run()
    assert codes(scenario) == []
    second_help = [m for m in site.inbox("analista") if HELP in str(m["Subject"])][-1]
    text = plain(second_help)
    assert "Falta «Publicar desde»" in text
    assert "Falta «Objetivo»" not in text
    assert "Objetivo: Difundir la feria." in text  # the form keeps what was given

    # The dates, from Outlook, with a photo: the request opens, from all three mails.
    site.reply(
        "analista",
        second_help,
        "Publicar desde: 10/12/2026\nPublicar hasta: 20/12/2026",
        style="outlook",
        attachments=(PHOTO,),
    )
    scenario.run()
    [code] = codes(scenario)
    state = scenario.show(code)
    assert state["title"] == "Feria de servicios digitales 2026"
    assert state["fields"]["objetivo"] == "Difundir la feria."
    assert state["publication"]["from"] == "2026-12-10"
    assert state["stage"]["number"] == 2
    assert sorted(a["filename"] for a in state["attachments"]) == [AFICHE[0], PHOTO[0]]
    ack = newest(site, "analista", ACK, code)
    # The first mail's poster joined before the first action mail was written: it travels.
    first_action = newest(site, "directora", ACTION, code)
    assert sorted(p.get_filename() for p in first_action.iter_attachments()) == sorted(
        [AFICHE[0], PHOTO[0]]
    )
    assert [e.request_id is not None for e in ledger(scenario)] == [True, True, True]
    assert ack["In-Reply-To"]


# -- 3. withdrawal ----------------------------------------------------------------------------


def test_anulo_withdraws_tells_everyone_and_drops_the_reminders(scenario: Scenario) -> None:
    site = scenario.site
    first, first_mail = open_request(scenario)
    second, _ = open_request(scenario)
    # The requester, from her acknowledgement (Gmail).
    before = len(sent(site))
    ack = newest(site, "analista", ACK, first)
    site.reply("analista", ack, "ANULO: la feria se suspendió.", style="gmail")
    scenario.run()
    state = scenario.show(first)
    assert state["status"] == "cancelado"
    assert state["stage"]["due"] is None
    [*_, withdrawal] = state["history"]
    assert (withdrawal["action"], withdrawal["actor"]) == ("CANCELADO", site.addr("analista"))
    assert withdrawal["note"] == "la feria se suspendió."
    for person in ("analista", "directora"):
        [mail] = told(site, person, "anulada", before)
        assert "la feria se suspendió." in plain(mail)
        assert footer_free(mail)

    # The Dirección Ejecutiva, from her action mail of the second request (Outlook).
    site.reply("directora", newest(site, "directora", ACTION, second), "Anulo", style="outlook")
    scenario.run()
    assert scenario.show(second)["status"] == "cancelado"
    assert told(site, "analista", "anulada", before)[-1]["Subject"]

    # Days later, both would be overdue: nobody is reminded of a withdrawn request.
    before = len(sent(site))
    scenario.now = datetime(2026, 12, 7, 9, 30, tzinfo=TZ)
    scenario.run()
    assert [s for s in subjects(sent(site)[before:]) if "Recordatorio" in s] == []
    # An action on it now gets the outcome, and changes nothing.
    site.reply("directora", first_mail, "APRUEBO", style="gmail")
    scenario.run()
    assert scenario.show(first)["status"] == "cancelado"


def test_anulo_after_publication_points_to_the_deletion_procedure(scenario: Scenario) -> None:
    site = scenario.site
    url = "https://www.facebook.com/ejemplo/posts/9"
    site.send("community", "Foto del acto", f"PUBLICADO fotografia {url}\n")
    scenario.run()
    published = newest(site, "community", "Publicación confirmada")
    code = code_of(published)
    before = len(sent(site))

    site.reply("community", published, "ANULO, se publicó por error.", style="gmail")
    scenario.run()
    [answer] = sent(site)[before:]
    text = plain(answer)
    assert "no se puede anular" in text
    assert "Tipo: Eliminación de publicación" in text
    assert f"Enlace: {url}" in text
    assert footer_free(answer)
    assert scenario.show(code)["status"] == "publicado"

    # Again the same day (Outlook): recorded in the ledger, not answered twice.
    site.reply("community", published, "Anulado", style="outlook")
    scenario.run()
    assert len(sent(site)) == before + 1


def test_anulo_from_an_outsider_a_forger_or_a_non_withdrawer_changes_nothing(
    scenario: Scenario,
) -> None:
    code, action_mail = open_request(scenario)
    site = scenario.site
    before = len(sent(site))

    # Forged From: the requester's address, sent by someone else, with the code: her real
    # mailbox hears of it (no token in that answer), nobody else does.
    attack = forged(site, "analista", f"RE: [{code}] anular", "ANULO\n")
    send_raw_as(site, "atacante", attack)
    # An outsider with the code in the subject.
    site.send("desconocido", f"RE: [{code}] Feria", "ANULO, no me gusta.\n")
    scenario.run()
    assert scenario.show(code)["status"] == "en_curso"
    [to_her] = told(site, "analista", "No pudimos verificar", before)
    assert code in str(to_her["Subject"])
    assert "rrss+" not in str(to_her["Reply-To"])  # no token to reply with
    assert "Feria de servicios" not in plain(to_her)  # no detail of the request
    assert len(told(site, "desconocido", "No pudimos verificar", before)) == 1
    assert sent(site, "atacante") == []
    assert told(site, "directora", "", before) == []
    assert len(refusals(scenario)) == 2
    # Both kept, each with its request: nothing is lost.
    kept = ledger(scenario)[-2:]
    assert [(e.outcome, e.request_id is not None) for e in kept] == [("unauthorized", True)] * 2

    # A proven person who may not withdraw: the jefatura UGS, from its action mail (Outlook).
    site.reply("directora", action_mail, "APRUEBO", style="gmail")
    scenario.run()
    before = len(sent(site))
    site.reply("jefe.ugs", newest(site, "jefe.ugs", ACTION, code), "ANULO", style="outlook")
    scenario.run()
    [answer] = sent(site)[before:]
    assert str(answer["To"]) == site.addr("jefe.ugs")
    assert "No se anuló" in str(answer["Subject"])
    assert "quien envió la solicitud" in " ".join(plain(answer).split())
    state = scenario.show(code)
    assert (state["status"], state["stage"]["number"]) == ("en_curso", 3)


def test_the_operator_cancels_from_the_command_line(scenario: Scenario) -> None:
    code, _ = open_request(scenario)
    site = scenario.site
    now = scenario.now.isoformat()
    result = scenario.cli("--now", now, "requests", "cancel", code, "--reason", "Duplicada")
    assert result.returncode == 0, result.stderr
    assert "anulada por el operador" in result.stdout
    state = scenario.show(code)
    assert state["status"] == "cancelado"
    assert (state["history"][-1]["actor"], state["history"][-1]["note"]) == (
        "operador",
        "Duplicada",
    )
    mail = newest(site, "analista", "anulada", code)
    assert "por el operador del sistema" in plain(mail)
    assert newest(site, "directora", "anulada", code)

    again = scenario.cli("--now", now, "requests", "cancel", code, "--reason", "otra vez")
    assert again.returncode == 1
    assert "ya terminó (anulada)" in again.stderr
    missing = scenario.cli("--now", now, "requests", "cancel", "RRSS-2026-9999", "--reason", "x")
    assert missing.returncode == 1
    assert "no existe la solicitud RRSS-2026-9999" in missing.stderr


# -- 4. colleagues are not intruders, 5. repeats ------------------------------------------


def test_copied_colleagues_and_earlier_holders_change_nothing_and_alarm_nobody(
    scenario: Scenario,
) -> None:
    code, action_mail = open_request(scenario)
    site = scenario.site
    play(scenario, code, INFO_STEPS[:3])
    assert scenario.show(code)["stage"]["number"] == 5
    history = actions(scenario, code)
    before = len(sent(site))

    # The jefatura UGS, copied on stage 5, answers its copy with APRUEBO (Gmail).
    copy = site.wait_for("jefe.ugs", lambda m: code in str(m["Subject"]) and "etapa 5" in plain(m))
    site.reply("jefe.ugs", copy, "APRUEBO, por mi parte está bien.", style="gmail")
    # The directora, who held stage 2, answers her old action mail (Outlook).
    site.reply("directora", action_mail, "OBSERVO cambiar la foto principal.", style="outlook")
    scenario.run()

    state = scenario.show(code)
    assert state["stage"]["number"] == 5
    assert actions(scenario, code) == [*history, "NOTA", "NOTA"]
    assert state["refused"] == []
    assert [s for s in subjects(sent(site)[before:]) if NOTICE in s] == []
    [to_him] = told(site, "jefe.ugs", "como nota", before)
    assert "está a cargo de" in " ".join(plain(to_him).split())
    assert site.addr("analista") in plain(to_him)
    [to_her] = told(site, "directora", "como nota", before)
    assert "ya concluyó con su «APRUEBO»" in " ".join(plain(to_her).split())
    # The stage's holders get the notes, as notes.
    for holder in ("analista", "jefe.uti"):
        notes = told(site, holder, "Nota de", before)
        assert len(notes) == 2
        assert all(footer_free(n) is False for n in notes)  # they hold it: keywords offered

    # The requester's own approval still counts.
    play(scenario, code, [INFO_STEPS[3]])
    assert scenario.show(code)["stage"]["number"] == 6


def test_the_same_action_twice_is_registered_once(scenario: Scenario) -> None:
    code, action_mail = open_request(scenario)
    site = scenario.site
    site.reply("directora", action_mail, "APRUEBO", style="gmail")
    scenario.run()
    assert scenario.show(code)["stage"]["number"] == 3
    before = len(sent(site))

    site.reply("directora", action_mail, "Aprobado.", style="outlook")  # a second Message-ID
    scenario.run()
    state = scenario.show(code)
    assert state["stage"]["number"] == 3
    assert actions(scenario, code) == ["ENTREGO", "APRUEBO"]
    assert state["refused"] == []
    [answer] = sent(site)[before:]
    assert str(answer["To"]) == site.addr("directora")
    assert "Ya registrado" in str(answer["Subject"])
    assert "ya quedó registrado el" in " ".join(plain(answer).split())
    assert ledger(scenario)[-1].outcome == "duplicate"

    # A third time, the same day (iPhone): nothing at all.
    site.reply("directora", action_mail, "APRUEBO", style="iphone")
    scenario.run()
    assert len(sent(site)) == before + 1
    assert scenario.show(code)["stage"]["number"] == 3


# -- 6. several holders ------------------------------------------------------------------------


def test_when_one_holder_acts_the_others_are_told_and_a_late_one_answered(
    scenario: Scenario,
) -> None:
    code, _ = open_request(scenario)
    site = scenario.site
    play(scenario, code, INFO_STEPS[:3])
    # Stage 5 is the unit's: the requester approves (iPhone), her unit head hears it.
    before = len(sent(site))
    play(scenario, code, [INFO_STEPS[3]])
    [done] = told(site, "jefe.uti", "Ya resuelta", before)
    assert "la resolvió " + site.addr("analista") in " ".join(plain(done).split())
    assert footer_free(done)
    # Stage 6 is the professional's and the design team's: the designer delivers (Gmail).
    professional_mail = newest(site, "promocion", ACTION, code)
    before = len(sent(site))
    play(scenario, code, [INFO_STEPS[4]])
    assert scenario.show(code)["stage"]["number"] == 7
    [done] = told(site, "promocion", "Ya resuelta", before)

    # The professional delivers too, late, from its own action mail (Thunderbird).
    before = len(sent(site))
    site.reply("promocion", professional_mail, "ENTREGO la versión final.", style="thunderbird")
    scenario.run()
    state = scenario.show(code)
    assert state["stage"]["number"] == 7
    assert actions(scenario, code)[-1] == "ENTREGO"
    assert len([a for a in actions(scenario, code) if a == "ENTREGO"]) == 3
    [answer] = sent(site)[before:]
    assert "Etapa ya resuelta" in str(answer["Subject"])
    text = " ".join(plain(answer).split())
    assert f"ya la resolvió {site.addr('disenio')} con «ENTREGO»" in text
    assert "responda al correo más reciente" not in text
    [refusal] = state["refused"]
    assert "ya la resolvió" in refusal["reason"]


# -- 7. the requester knows where things stand --------------------------------------------


def test_the_requester_gets_exactly_the_mails_the_acknowledgement_lists(
    scenario: Scenario,
) -> None:
    code, _ = open_request(scenario)
    site = scenario.site
    ack = newest(site, "analista", ACK, code)
    promised = [line for line in plain(ack).splitlines() if line.startswith("  - ")]
    assert len(promised) == 4
    assert "etapa 2" in promised[0]
    assert "etapa 5" in promised[1]
    assert "etapa 7" in promised[2]
    assert promised[3].startswith("  - al terminar")
    assert footer_free(ack)

    play(scenario, code, INFO_STEPS)
    assert scenario.show(code)["status"] == "publicado"
    received = subjects(site.inbox("analista"))
    assert [s.split("]", 1)[1].split(":")[0].strip() for s in received] == [
        ACK,
        "Avance de su solicitud",  # the DE approved (stage 2)
        "Acción requerida (Verifica el contenido y autoriza la elaboración del material de "
        "publicación de información específica, caso contrario devuelve la propuesta)",
        "Registrado",  # her own approval, confirmed
        "Acción requerida (Remite el material de publicación específica aprobada a la "
        "jefatura de la UGS.)",
        "Registrado",
        "Publicación confirmada",
    ]
    progress = newest(site, "analista", "Avance de su solicitud", code)
    assert footer_free(progress)
    assert footer_free(newest(site, "analista", "Publicación confirmada", code))


# -- 8. held openings ---------------------------------------------------------------------------


DELETION = """Tipo: Eliminación de publicación
Título: Retirar la foto equivocada
Enlace: https://www.facebook.com/ejemplo/posts/7
"""


def test_held_openings_say_what_happens_are_reminded_listed_and_expire(scenario: Scenario) -> None:
    """With privileged openings held for confirmation (the shipped default)."""
    with variant(scenario, "confirm_openings = false", "confirm_openings = true") as guarded:
        _held_openings(guarded)


def _held_openings(guarded: Scenario) -> None:
    site = guarded.site
    site.send("community", "Foto del acto", "PUBLICADO fotografia https://fb.com/ejemplo/1\n")
    site.send("directora", "Eliminar publicación", DELETION)
    guarded.run()
    post = newest(site, "community", "Confirme su solicitud")
    assert "se registrará de inmediato como publicada" in " ".join(plain(post).split())
    deletion = newest(site, "directora", "Confirme su solicitud")
    text = " ".join(plain(deletion).split())
    assert "pasará a la etapa 2" in text
    assert "actúa de inmediato" not in text

    status = json.loads(guarded.cli("status", "--json").stdout)
    assert sorted(h["procedure"] for h in status["held_openings"]) == ["directa", "eliminacion"]
    assert f"eliminacion de {site.addr('directora')}" in guarded.cli("status").stdout

    # A business day later: one reminder each, however many passes.
    guarded.now = datetime(2026, 12, 2, 17, 0, tzinfo=TZ)
    guarded.run()
    guarded.run()
    for person in ("community", "directora"):
        reminders = [s for s in subjects(sent(site, person)) if "Recordatorio: confirme" in s]
        assert len(reminders) == 1, person
    reminder = newest(site, "community", "Recordatorio: confirme")
    site.reply("community", reminder, "CONFIRMO", style="gmail")
    guarded.run()
    assert any(guarded.show(c)["procedure"] == "directa" for c in codes(guarded))

    # After confirm_days (3 business days), the deletion order expires and its sender hears.
    guarded.now = datetime(2026, 12, 7, 9, 0, tzinfo=TZ)
    guarded.run()
    expired = newest(site, "directora", "descartada sin confirmar")
    assert "no se hizo nada" in " ".join(plain(expired).split())
    status = json.loads(guarded.cli("status", "--json").stdout)
    assert status["held_openings"] == []
    site.reply("directora", deletion, "CONFIRMO", style="outlook")
    guarded.run()
    assert "venció" in plain(newest(site, "directora", HELP))
    assert [guarded.show(c)["procedure"] for c in codes(guarded)] == ["directa"]
    before = len(sent(site))
    guarded.now += timedelta(days=2)
    guarded.run()
    assert [s for s in subjects(sent(site)[before:]) if "confirm" in s.lower()] == []


# -- bad input ---------------------------------------------------------------------------------

BIG = 30 * 1024 * 1024


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_note_with_a_30_mb_file_joins_the_request(scenario: Scenario) -> None:
    code, _ = open_request(scenario)
    site = scenario.site
    ack = newest(site, "analista", ACK, code)
    video = os.urandom(BIG)
    message = build_message(
        site.addr("analista"),
        [str(ack["Reply-To"])],
        "RE: " + str(ack["Subject"]),
        "Va el video de la feria.\n\nEl mar, 1 dic 2026 a las 9:30, Redes escribió:\n> hola\n",
        headers={"In-Reply-To": str(ack["Message-ID"]), "Message-ID": make_msgid()},
        attachments=[("video feria.mp4", video, "video/mp4")],
    )
    raw = message.as_bytes(policy=email.policy.SMTP)
    del message
    append(site.dovecot, site.shared, raw)
    del raw
    scenario.run()

    state = scenario.show(code)
    assert state["stage"]["number"] == 2
    assert actions(scenario, code) == ["ENTREGO", "NOTA"]
    assert ("video feria.mp4", hashlib.sha256(video).hexdigest()) in files_of(state)
    assert NOTED in str(newest(site, "analista", NOTED, code)["Subject"])
    assert "video feria.mp4" in plain(newest(site, "directora", "Nota de", code))


def test_a_note_to_a_request_that_does_not_exist_is_answered_and_kept(scenario: Scenario) -> None:
    site = scenario.site
    code, _ = open_request(scenario)
    before = len(sent(site))
    site.send(
        "analista", "RE: [RRSS-2026-9999] Feria", "Olvidé el afiche.\n", attachments=(AFICHE,)
    )
    scenario.run()
    [answer] = sent(site)[before:]
    assert str(answer["To"]) == site.addr("analista")
    assert "No existe la solicitud RRSS-2026-9999" in plain(answer)
    assert ledger(scenario)[-1].outcome == "format_error"
    assert codes(scenario) == [code]
    assert actions(scenario, code) == ["ENTREGO"]


def test_an_unproven_note_is_kept_answered_to_its_from_and_forwarded_nowhere(
    scenario: Scenario,
) -> None:
    """A new mail citing the code: no token, no trusted server: nothing joins the request."""
    code, _ = open_request(scenario)
    site = scenario.site
    before = len(sent(site))
    site.send("analista", f"RE: [{code}] afiche", "Olvidé adjuntar el afiche.\n")
    scenario.run()
    assert actions(scenario, code) == ["ENTREGO"]
    assert scenario.show(code)["attachments"] == []
    [answer] = sent(site)[before:]
    assert str(answer["To"]) == site.addr("analista")
    assert "No pudimos verificar" in str(answer["Subject"])
    assert "responda directamente a uno de los correos" in " ".join(plain(answer).split())
    assert ledger(scenario)[-1].outcome == "unauthorized"
    assert ledger(scenario)[-1].request_id is not None  # kept with the request's mail
    # Again the same day: kept, not answered again.
    site.send("analista", f"RE: [{code}] afiche", "Olvidé adjuntar el afiche, de nuevo.\n")
    scenario.run()
    assert len(sent(site)) == before + 1


TRUSTED = "mx.agencia.test"


def test_a_reply_to_her_own_request_mail_is_a_note_when_the_server_vouches(
    scenario: Scenario,
) -> None:
    """Gmail threads her sent request: the reply cites only its Message-ID, no token."""
    site = scenario.site
    request_mail = site.send("analista", "Solicitud de publicación: feria", INFO_REQUEST)
    scenario.run()
    [code] = codes(scenario)
    with variant(
        scenario,
        "confirm_openings = false",
        f'trusted_authserv_id = "{TRUSTED}"\nconfirm_openings = false',
    ) as trusting:
        own = str(request_mail["Message-ID"])
        message = build_message(
            site.addr("analista"),
            [site.shared],
            "Re: Solicitud de publicación: feria",
            "Olvidé adjuntar el afiche.\n\n" + "> Tipo: Publicación de información específica\n",
            headers={"In-Reply-To": own, "References": own, "Message-ID": make_msgid()},
            attachments=[AFICHE],
        )
        message["Authentication-Results"] = f"{TRUSTED}; dkim=pass header.d={site.domain}"
        raw = message.as_bytes(policy=email.policy.SMTP)
        send_as(site.relay, site.addr("analista"), [site.shared], raw=raw)
        trusting.run()
        assert actions(trusting, code) == ["ENTREGO", "NOTA"]
        assert [a["filename"] for a in trusting.show(code)["attachments"]] == [AFICHE[0]]
        assert newest(site, "directora", "Nota de", code)
