"""Bad input against the real servers: nothing breaks, nothing is lost, the right person hears.

Every mail here travels for real: through the SMTP relay (what a person, a client or an
attacker sends), straight over LMTP (a bounce with a null Return-Path), or by IMAP APPEND
into the shared mailbox (exact bytes: the corpus of `tests/data/mail`, a 30 MB message).
One `run --once` pass handles it, and each test looks from the outside: the request's JSON
(`requests show`), what the daemon handed to the relay and what landed in real inboxes,
the message's ledger row and its archived `.eml`, and a valid mail handled after it.
"""

from __future__ import annotations

import email.policy
import hashlib
import html
import os
import re
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from pathlib import Path

import pytest
from sqlalchemy import select
from testbed import formats
from testbed.mail import append, build_message, deliver, parse, send_as
from testbed.outside import HELP, NOTICE, Entry, codes, ledger, plain, sent, subjects
from testbed.site import INFO_REQUEST, Scenario, Site, about, code_of

from mailflow.app.answers import MAX_ANSWERS_PER_DAY
from mailflow.mail.parse import MAX_MESSAGE_BYTES
from mailflow.store.schema import InboundRow, OutboxRow

CORPUS = Path(__file__).resolve().parent.parent / "data" / "mail"

# The corpus speaks for ejemplo.gob.bo, request RRSS-2026-0042, and this reply token.
CORPUS_DOMAIN = "ejemplo.gob.bo"
CORPUS_CODE = "RRSS-2026-0042"
CORPUS_REPLY_TO = "rrss+k7Qm2xV9aB@ejemplo.gob.bo"
CORPUS_THREAD = "<rrss-k7Qm2xV9aB@ejemplo.gob.bo>"


# The tables of cases below (client styles, loop signals, header variants, sizes) differ
# in what the parser and the router read, not in what the store does: they run on SQLite
# only, while every outcome they produce is also reached on PostgreSQL by the other tests.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


# -- looking from the outside ------------------------------------------------------------


def archived(scenario: Scenario, entry: Entry) -> bytes:
    """Return the archived bytes of a ledger entry (they must be there)."""
    root = scenario.runtime.settings.store.archive_dir
    data = (root / entry.sha256[:2] / f"{entry.sha256}.eml").read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry.sha256
    return data


def queued(scenario: Scenario) -> int:
    """Return how many mails the daemon ever queued (sent or not): answers leave a row."""
    with scenario.runtime.store.transaction() as session:
        return len(session.scalars(select(OutboxRow.id)).all())


# -- acting ------------------------------------------------------------------------------


def open_request(scenario: Scenario) -> tuple[str, EmailMessage]:
    """Open the site's standard request; return its code and the directora's action mail."""
    site = scenario.site
    site.send("analista", "Solicitud de publicación: feria", INFO_REQUEST)
    scenario.run()
    ack = site.wait_for("analista", lambda m: "Solicitud recibida" in str(m["Subject"]))
    code = code_of(ack)
    return code, site.wait_for("directora", about(code, "Acción requerida"))


def approve(scenario: Scenario, code: str, action_mail: EmailMessage) -> None:
    """The directora approves for real; the loop must still be alive to take it."""
    scenario.site.reply("directora", action_mail, "APRUEBO")
    scenario.run()
    state = scenario.show(code)
    assert state["stage"]["number"] == 3
    # Notes the test may have added sit between the two, as history entries of their own.
    assert [h["action"] for h in state["history"] if h["action"] != "NOTA"] == [
        "ENTREGO",
        "APRUEBO",
    ]


def reply_raw(
    site: Site,
    sender: str,
    original: EmailMessage,
    subject: str,
    body: str,
    **headers: str,
) -> bytes:
    """Return the bytes of ``sender``'s answer to ``original`` with extra headers."""
    message = build_message(
        site.addr(sender),
        [parseaddr(str(original["Reply-To"]))[1]],
        subject,
        body,
        headers={
            "In-Reply-To": str(original["Message-ID"]),
            "References": str(original["Message-ID"]),
            "Message-ID": make_msgid(domain=site.domain),
            **headers,
        },
    )
    return message.as_bytes(policy=email.policy.SMTP)


def corpus(
    name: str, site: Site, code: str, action_mail: EmailMessage, sender: str | None
) -> bytes:
    """Return a corpus mail rewritten as ``sender``'s answer to ``action_mail`` on this site.

    The reply address and thread id become the real, signed ones of the directora's mail
    and the From (unless ``sender`` is None) a real person's, so the only thing that can
    keep the mail from counting is what the test is about.
    """
    raw = (CORPUS / name).read_bytes()
    raw = raw.replace(CORPUS_REPLY_TO.encode(), parseaddr(str(action_mail["Reply-To"]))[1].encode())
    raw = raw.replace(CORPUS_THREAD.encode(), str(action_mail["Message-ID"]).encode())
    raw = raw.replace(CORPUS_CODE.encode(), code.encode())
    if sender is not None:
        raw, count = re.subn(
            rb"(?m)^(From:.*<)[^<>\s]+>",
            rb"\g<1>" + site.addr(sender).encode() + rb">",
            raw,
            count=1,
        )
        assert count == 1, name
    return raw.replace(CORPUS_DOMAIN.encode(), site.domain.encode())


def put(site: Site, raw: bytes) -> int:
    """APPEND exact bytes into the shared mailbox, as a server's delivery would leave them."""
    return append(site.dovecot, site.shared, raw)


@pytest.fixture
def opened(scenario: Scenario) -> Iterator[tuple[str, EmailMessage]]:
    """A request waiting on the directora at stage 2, and her action mail."""
    yield open_request(scenario)


# -- a request with missing fields --------------------------------------------------------

INCOMPLETE = """Buenos días,

Tipo: Publicación de información específica
Título: Feria de servicios digitales 2026
Unidad: UTI

Saludos,
Analista UTI
"""
MISSING = ("Objetivo", "Resumen", "Publicar desde", "Publicar hasta")


def problems_listed(help_text: str) -> list[str]:
    """Return the problem bullets of a help mail."""
    listed = help_text.split("no pudimos procesarlo:", 1)[1].split("Su correo quedó", 1)[0]
    return [line.strip()[2:] for line in listed.splitlines() if line.strip().startswith("- ")]


def test_request_with_missing_fields_gets_one_help_mail_listing_them_with_a_form(
    scenario: Scenario,
) -> None:
    site = scenario.site
    site.send("analista", "Solicitud: feria", INCOMPLETE)
    scenario.run()

    assert codes(scenario) == []  # nothing opened
    [entry] = ledger(scenario)
    assert entry.outcome == "format_error"
    assert b"Tipo: Publicaci" in archived(scenario, entry)  # nothing lost
    [answer] = site.inbox("analista")
    assert subjects(sent(site)) == [HELP]
    text = plain(answer)
    assert problems_listed(text) == [f"Falta «{name}»." for name in MISSING]
    # The form to fill: every field of the procedure, keeping what was already right.
    form = text.split("siguiente formulario:", 1)[1]
    assert "Tipo: Publicación de información específica" in form
    assert "Título: Feria de servicios digitales 2026" in form
    for name in MISSING:
        assert re.search(rf"(?m)^{name}:\s*$", form), name
    assert "<pre" in str(answer.get_body(("html",)).get_content())

    # The same mistake again the same day: archived and recorded, not answered again.
    site.send("analista", "Solicitud: feria (otra vez)", INCOMPLETE)
    scenario.run()
    assert [e.outcome for e in ledger(scenario)] == ["format_error", "format_error"]
    assert len(sent(site)) == 1
    assert codes(scenario) == []

    # Completing it by replying to the help mail with the filled-in form opens the request.
    filled = form.strip()
    for name, value in zip(
        MISSING,
        ("Difundir la feria.", "Stands de cada unidad.", "10/12/2026", "20/12/2026"),
        strict=True,
    ):
        filled = re.sub(rf"(?m)^{name}:\s*$", f"{name}: {value}", filled)
    site.reply("analista", answer, filled)
    scenario.run()
    [code] = codes(scenario)
    state = scenario.show(code)
    assert state["title"] == "Feria de servicios digitales 2026"
    assert state["stage"]["number"] == 2
    assert state["publication"]["from"] == "2026-12-10"
    assert site.wait_for("analista", about(code, "Solicitud recibida"))


# -- actions that do not prove their sender or their role ---------------------------------


def forge(site: Site, as_person: str, code: str, envelope_from: str = "atacante") -> None:
    """Send, as ``envelope_from``, a mail whose From is ``as_person``: no token, no thread."""
    message = build_message(
        site.addr(as_person), [site.shared], f"APRUEBO [{code}]", "APRUEBO\n\nSaludos.\n"
    )
    raw = message.as_bytes(policy=email.policy.SMTP)
    send_as(site.relay, site.addr(envelope_from), [site.shared], raw=raw)


@pytest.mark.parametrize("as_person", ["directora", "jefe.ugs", "desconocido"])
def test_forged_approval_without_token_is_refused_and_the_real_holder_told_once(
    scenario: Scenario, opened: tuple[str, EmailMessage], as_person: str
) -> None:
    code, action_mail = opened
    site = scenario.site
    before = len(sent(site))
    forge(site, as_person, code)
    scenario.run()

    state = scenario.show(code)
    assert state["stage"]["number"] == 2
    assert [h["action"] for h in state["history"]] == ["ENTREGO"]
    [refusal] = state["refused"]
    assert refusal["sender"] == site.addr(as_person)
    assert refusal["action"] == "APRUEBO"
    assert refusal["stage"] == 2
    assert ledger(scenario)[-1].outcome == "unauthorized"
    assert b"APRUEBO" in archived(scenario, ledger(scenario)[-1])
    # Only the real role holder hears of it, in her own inbox; nobody else gets anything.
    [notice] = sent(site)[before:]
    assert str(notice["To"]) == site.addr("directora")
    assert NOTICE in str(notice["Subject"])
    assert site.addr(as_person) in plain(notice)
    assert sent(site, "atacante") == []
    assert site.inbox("atacante") == []
    if as_person != "directora":
        assert sent(site, as_person) == []
    assert subjects(site.inbox("directora"))[-1] == str(notice["Subject"])

    # A second forgery the same day is refused and recorded too, but not told again.
    forge(site, as_person, code)
    scenario.run()
    state = scenario.show(code)
    assert len(state["refused"]) == 2
    assert state["stage"]["number"] == 2
    assert len(sent(site)) == before + 1

    approve(scenario, code, action_mail)


def test_token_of_another_person_is_refused(
    scenario: Scenario, opened: tuple[str, EmailMessage]
) -> None:
    """The directora forwards her action mail; the jefe answers it: her token is not his."""
    code, action_mail = opened
    site = scenario.site
    before = len(sent(site))
    site.reply("jefe.ugs", action_mail, "APRUEBO, ya lo conversé con la directora.")
    scenario.run()

    state = scenario.show(code)
    assert state["stage"]["number"] == 2
    assert [h["action"] for h in state["history"]] == ["ENTREGO"]
    [refusal] = state["refused"]
    assert refusal["sender"] == site.addr("jefe.ugs")
    assert "otra persona" in refusal["reason"]
    assert ledger(scenario)[-1].outcome == "unauthorized"
    [notice] = sent(site)[before:]
    assert str(notice["To"]) == site.addr("directora")
    assert NOTICE in str(notice["Subject"])
    assert sent(site, "jefe.ugs") == []

    approve(scenario, code, action_mail)


def test_answer_to_an_earlier_stage_is_a_note_and_its_author_told(
    scenario: Scenario, opened: tuple[str, EmailMessage]
) -> None:
    """The directora approved, then answers the same mail again with another action.

    She is proven (the token is hers) and of the institution: nothing moves, her words join
    the request as a note (the jefe UGS, who holds stage 3 now, gets it as a note, never as
    an alarm) and she is told that stage 2 ended with her approval and who has it now.
    """
    code, action_mail = opened
    site = scenario.site
    approve(scenario, code, action_mail)
    before = len(sent(site))
    site.reply("directora", action_mail, "RECHAZO, lo pensé mejor: la fecha no conviene.")
    scenario.run()

    state = scenario.show(code)
    assert state["stage"]["number"] == 3
    assert state["status"] == "en_curso"
    assert [h["action"] for h in state["history"]] == ["ENTREGO", "APRUEBO", "NOTA"]
    assert state["history"][-1]["note"].startswith("RECHAZO, lo pensé mejor")
    assert state["refused"] == []
    [answer] = [m for m in sent(site)[before:] if str(m["To"]) == site.addr("directora")]
    [note] = [m for m in sent(site)[before:] if str(m["To"]) == site.addr("jefe.ugs")]
    assert len(sent(site)[before:]) == 2
    text = " ".join(plain(answer).split())
    assert "La etapa 2 (Rechaza o aprueba solicitud y deriva a la UGS) ya concluyó" in text
    assert f"está a cargo de {site.addr('jefe.ugs')}" in text
    assert "responda ANULO" in text  # the Dirección Ejecutiva may withdraw it
    assert "la fecha no conviene" in plain(note)
    assert [m for m in sent(site, "jefe.ugs") if NOTICE in str(m["Subject"])] == []


def test_action_by_a_copied_colleague_changes_nothing_and_alarms_nobody(
    scenario: Scenario, opened: tuple[str, EmailMessage]
) -> None:
    """At stage 5 the jefe UGS is copied (his own token), but only the unit may decide."""
    code, action_mail = opened
    site = scenario.site
    site.reply("directora", action_mail, "APRUEBO")
    scenario.run()
    site.reply("jefe.ugs", site.wait_for("jefe.ugs", about(code, "Acción requerida")), "DERIVO")
    scenario.run()
    site.reply(
        "promocion",
        site.wait_for("promocion", about(code, "Acción requerida")),
        "ENTREGO la propuesta.\nCronograma: material 04/12/2026; publicación 10/12/2026",
    )
    scenario.run()
    assert scenario.show(code)["stage"]["number"] == 5
    copy = site.wait_for("jefe.ugs", lambda m: code in str(m["Subject"]) and "etapa 5" in plain(m))
    before = len(sent(site))

    site.reply("jefe.ugs", copy, "APRUEBO")
    scenario.run()

    state = scenario.show(code)
    assert state["stage"]["number"] == 5
    assert [h["action"] for h in state["history"]][-2:] == ["ENTREGO", "NOTA"]
    assert state["refused"] == []
    assert ledger(scenario)[-1].outcome == "processed"
    # One clear answer to him; the holders (requester and unit head) get his words as a
    # note, not an alarm.
    [answer] = [m for m in sent(site)[before:] if str(m["To"]) == site.addr("jefe.ugs")]
    assert "está a cargo de" in " ".join(plain(answer).split())
    assert len(sent(site)[before:]) == 3
    for holder in ("analista", "jefe.uti"):
        assert [NOTICE in str(m["Subject"]) for m in sent(site, holder)].count(True) == 0

    # The loop goes on: the requester's own approval counts.
    mine = site.wait_for("analista", lambda m: code in str(m["Subject"]) and "etapa 5" in plain(m))
    site.reply("analista", mine, "APRUEBO")
    scenario.run()
    assert scenario.show(code)["stage"]["number"] == 6


def test_request_from_an_unknown_sender_opens_nothing(scenario: Scenario) -> None:
    site = scenario.site
    site.send("desconocido", "Solicitud de publicación", INFO_REQUEST)
    scenario.run()

    assert codes(scenario) == []
    [entry] = ledger(scenario)
    assert entry.outcome == "unknown_sender"
    assert b"Feria de servicios digitales" in archived(scenario, entry)
    # One short answer to the sender (they wrote to us; nobody else is involved) ...
    [answer] = sent(site)
    assert str(answer["To"]) == site.addr("desconocido")
    assert "No puede iniciar" in plain(answer)
    # ... and no more than one a day, however often they write.
    site.send("desconocido", "Solicitud de publicación (2)", INFO_REQUEST)
    scenario.run()
    assert [e.outcome for e in ledger(scenario)] == ["unknown_sender", "unknown_sender"]
    assert len(sent(site)) == 1
    assert len(site.inbox("desconocido")) == 1

    # The loop goes on: a unit member's request opens.
    open_request(scenario)
    assert len(codes(scenario)) == 1


def variant(scenario: Scenario, old: str, new: str) -> Scenario:
    """Return a second daemon over the same site and store, its config edited."""
    site = scenario.site
    text = site.config_path.read_text(encoding="utf-8")
    assert old in text
    site.config_path.write_text(text.replace(old, new), encoding="utf-8")
    return Scenario(site)


def test_answers_to_one_address_are_capped_however_the_details_vary(scenario: Scenario) -> None:
    """A forger varying the mistake (or the request) cannot make us flood an address."""
    site = scenario.site
    extra = 3
    for n in range(MAX_ANSWERS_PER_DAY + extra):  # From the analista, sent by someone else
        message = build_message(site.addr("analista"), [site.shared], "Solicitud", f"Tipo: x{n}\n")
        send_as(site.relay, site.addr("atacante"), [site.shared], raw=message.as_bytes())
    for n in range(MAX_ANSWERS_PER_DAY + extra):
        site.send("analista", f"Solicitud {n}", INFO_REQUEST.replace("Feria", f"Feria {n}"))
    scenario.run()
    opened = codes(scenario)
    assert len(opened) == MAX_ANSWERS_PER_DAY + extra
    assert len([s for s in subjects(sent(site, "analista")) if s == HELP]) == MAX_ANSWERS_PER_DAY

    for code in opened:
        forge(site, "desconocido", code)
    scenario.run()
    for code in opened:
        assert len(scenario.show(code)["refused"]) == 1  # every attempt is still recorded
    notices = [s for s in subjects(sent(site, "directora")) if NOTICE in s]
    assert len(notices) == MAX_ANSWERS_PER_DAY
    assert sent(site, "desconocido") == []
    outcomes = [e.outcome for e in ledger(scenario)]
    assert outcomes.count("format_error") == MAX_ANSWERS_PER_DAY + extra
    assert outcomes.count("unauthorized") == MAX_ANSWERS_PER_DAY + extra


def test_help_about_a_request_with_the_longest_code_prefix_is_sent(scenario: Scenario) -> None:
    """A 10-letter prefix makes the rate-limit kind longer than its 32-character column."""
    long = variant(scenario, 'code_prefix = "RRSS"', 'code_prefix = "COMUNICA10"')
    try:
        code, action_mail = open_request(long)
        assert code.startswith("COMUNICA10-")
        before = len(sent(long.site))
        long.site.reply("directora", action_mail, "No apruebo todavía, lo veo mañana.")
        long.run()
        assert ledger(long)[-1].outcome == "format_error"
        assert subjects(sent(long.site)[before:]) == [HELP]
        approve(long, code, action_mail)
    finally:
        long.close()


# -- replies that say no action -----------------------------------------------------------


def assert_unchanged_and_helped(scenario: Scenario, code: str, before: int) -> None:
    """The request did not move, nothing was recorded, the directora got one help mail."""
    site = scenario.site
    state = scenario.show(code)
    assert state["stage"]["number"] == 2
    assert state["status"] == "en_curso"
    assert [h["action"] for h in state["history"]] == ["ENTREGO"]
    assert state["refused"] == []
    entry = ledger(scenario)[-1]
    assert entry.outcome == "format_error"
    archived(scenario, entry)
    [answer] = sent(site)[before:]
    assert str(answer["To"]) == site.addr("directora")
    assert str(answer["Subject"]) == HELP
    assert "APRUEBO, DERIVO, RECHAZO" in plain(answer)


def assert_unchanged_and_noted(scenario: Scenario, code: str, before: int) -> None:
    """The request did not move; the directora's words are a note; she was told so."""
    site = scenario.site
    state = scenario.show(code)
    assert state["stage"]["number"] == 2
    assert [h["action"] for h in state["history"]] == ["ENTREGO", "NOTA"]
    assert state["refused"] == []
    entry = ledger(scenario)[-1]
    assert entry.outcome == "processed"
    archived(scenario, entry)
    [answer] = sent(site)[before:]
    assert str(answer["To"]) == site.addr("directora")
    assert "Nota registrada" in str(answer["Subject"])
    assert "No registramos ninguna acción" in plain(answer)


def with_body(message: EmailMessage, text: str) -> EmailMessage:
    """Return a copy of ``message`` (same headers) whose only body is ``text``."""
    copy = parse(message.as_bytes(policy=email.policy.SMTP))
    copy.clear_content()
    copy.set_content(text)
    return copy


def quote_reply(site: Site, original: EmailMessage, new_text: str, style: str) -> None:
    """Answer as the directora: a client style of the test bed, or two it lacks."""
    if style not in ("bare", "html"):
        site.reply("directora", original, new_text, style=style)
        return
    lines = plain(original).splitlines()
    subject = "RE: " + str(original["Subject"])
    if style == "bare":  # the attribution line deleted: the quote starts the body
        body = new_text + "\n\n" + "\n".join("> " + line for line in lines) + "\n"
        raw = reply_raw(site, "directora", original, subject, body)
    else:  # HTML only, the original in a blockquote with no attribution
        message = parse(reply_raw(site, "directora", original, subject, "x"))
        quoted = "<br>".join(html.escape(line) for line in lines)
        message.set_content(
            f'<div>{html.escape(new_text)}</div><blockquote type="cite">{quoted}</blockquote>',
            subtype="html",
        )
        raw = message.as_bytes(policy=email.policy.SMTP)
    to = parseaddr(str(original["Reply-To"]))[1]
    send_as(site.relay, site.addr("directora"), [to], raw=raw)


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("style", "new_text"),
    [
        *((style, "") for style in ("gmail", "outlook", "iphone", "thunderbird", "bare", "html")),
        ("outlook", "Recibido, lo reviso el lunes."),
        ("bare", "Recibido, lo reviso el lunes."),
    ],
    ids=["gmail", "outlook", "iphone", "thunderbird", "bare", "html", "outlook-text", "bare-text"],
)
def test_apruebo_only_in_quoted_text_does_not_count(
    scenario: Scenario, opened: tuple[str, EmailMessage], style: str, new_text: str
) -> None:
    """The quoted mail starts with APRUEBO (an earlier answer in the thread), and holds the
    instructions naming every keyword; only what the directora wrote now may count."""
    code, action_mail = opened
    site = scenario.site
    quoted = with_body(action_mail, "APRUEBO\n\n" + plain(action_mail))
    before = len(sent(site))
    quote_reply(site, quoted, new_text, style)
    scenario.run()

    if new_text:  # words without a keyword: a note, whose answer lists her keywords
        assert_unchanged_and_noted(scenario, code, before)
    else:
        assert_unchanged_and_helped(scenario, code, before)
    approve(scenario, code, action_mail)


@pytest.mark.parametrize(
    "name", ["gmail_apruebo_solo_en_cita.eml", "gmail_vacio_apruebo_en_cita.eml"]
)
def test_apruebo_only_in_quoted_text_of_real_gmail_replies_does_not_count(
    scenario: Scenario, opened: tuple[str, EmailMessage], name: str
) -> None:
    code, action_mail = opened
    site = scenario.site
    before = len(sent(site))
    put(site, corpus(name, site, code, action_mail, "directora"))
    scenario.run()

    if name == "gmail_vacio_apruebo_en_cita.eml":
        assert_unchanged_and_helped(scenario, code, before)
    else:  # "Recibido, lo reviso el lunes.": a note
        assert_unchanged_and_noted(scenario, code, before)
    approve(scenario, code, action_mail)


NEGATED = "niega la acción"
QUESTION = "es una pregunta"
CONDITIONAL = "lleva condiciones"


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("No apruebo: falta el logo de la campaña.", NEGATED),
        ("No, no lo apruebo todavía.", NEGATED),
        ("Buenos días,\nno apruebo esta versión.", NEGATED),
        ("Apruebo, pero ¿la fecha ya está confirmada con la unidad?", QUESTION),
        ("¿Apruebo?", QUESTION),
        ("Aprobado siempre que se cambie el título.", CONDITIONAL),
    ],
)
def test_negated_or_ambiguous_approval_does_not_count(
    scenario: Scenario, opened: tuple[str, EmailMessage], answer: str, why: str
) -> None:
    code, action_mail = opened
    site = scenario.site
    before = len(sent(site))
    site.reply("directora", action_mail, answer)
    scenario.run()

    assert_unchanged_and_helped(scenario, code, before)
    assert why in " ".join(plain(sent(site)[-1]).split())  # told why, in Spanish
    approve(scenario, code, action_mail)


# -- automatic mail: archived, never answered ---------------------------------------------


def assert_archived_unanswered(scenario: Scenario, code: str, queued_before: int) -> None:
    """The request did not move, nobody was answered, the mail is archived as automatic."""
    state = scenario.show(code)
    assert state["stage"]["number"] == 2
    assert [h["action"] for h in state["history"]] == ["ENTREGO"]
    assert state["refused"] == []
    entry = ledger(scenario)[-1]
    assert entry.outcome == "auto_reply", entry
    archived(scenario, entry)
    assert queued(scenario) == queued_before
    assert len(sent(scenario.site)) == 2  # the acknowledgement and the directora's mail


# (sender, extra headers, subject prefix, null Return-Path); each mail says APRUEBO with the
# directora's own token, so anything but the loop rules would make it count or be answered.
AUTOMATIC = {
    "auto-submitted-replied": ("directora", {"Auto-Submitted": "auto-replied"}, "", False),
    "auto-submitted-generated": ("directora", {"Auto-Submitted": "auto-generated"}, "", False),
    "precedence-bulk": ("directora", {"Precedence": "bulk"}, "", False),
    "precedence-list": ("directora", {"Precedence": "list"}, "", False),
    "precedence-junk": ("directora", {"Precedence": "junk"}, "", False),
    "x-autoreply": ("directora", {"X-Autoreply": "yes"}, "", False),
    "subject-respuesta-automatica": ("directora", {}, "Respuesta automática: ", False),
    "subject-fuera-de-la-oficina": ("directora", {}, "Fuera de la oficina: ", False),
    "subject-automatic-reply": ("directora", {}, "Automatic reply: ", False),
    "subject-out-of-office": ("directora", {}, "Out of Office: ", False),
    "null-return-path": ("directora", {}, "", True),
    "mailer-daemon": ("mailer-daemon", {}, "", False),
    "postmaster": ("postmaster", {}, "", False),
}


@SQLITE_ONLY
@pytest.mark.parametrize("case", list(AUTOMATIC), ids=list(AUTOMATIC))
def test_automatic_mail_is_archived_and_never_answered(
    scenario: Scenario, opened: tuple[str, EmailMessage], case: str
) -> None:
    code, action_mail = opened
    site = scenario.site
    sender, headers, prefix, null_path = AUTOMATIC[case]
    subject = prefix + "RE: " + str(action_mail["Subject"])
    raw = reply_raw(site, sender, action_mail, subject, "APRUEBO\n", **headers)
    before = queued(scenario)
    if null_path:
        deliver(site.dovecot, [site.shared], raw, mail_from="")  # Return-Path: <>
    else:
        send_as(
            site.relay, site.addr(sender), [parseaddr(str(action_mail["Reply-To"]))[1]], raw=raw
        )
    scenario.run()

    assert_archived_unanswered(scenario, code, before)
    approve(scenario, code, action_mail)


@pytest.mark.parametrize(
    "headers",
    [{"X-Auto-Response-Suppress": "All"}, {"Auto-Submitted": "no"}, {"Precedence": "normal"}],
    ids=["x-auto-response-suppress", "auto-submitted-no", "precedence-normal"],
)
def test_human_mail_with_outlook_headers_still_counts(
    scenario: Scenario, opened: tuple[str, EmailMessage], headers: dict[str, str]
) -> None:
    """The control for the loop rules: these headers are on mail people write."""
    code, action_mail = opened
    site = scenario.site
    raw = reply_raw(
        site, "directora", action_mail, "RE: " + str(action_mail["Subject"]), "APRUEBO\n", **headers
    )
    send_as(
        site.relay, site.addr("directora"), [parseaddr(str(action_mail["Reply-To"]))[1]], raw=raw
    )
    scenario.run()
    assert scenario.show(code)["stage"]["number"] == 3
    assert ledger(scenario)[-1].outcome == "processed"


@SQLITE_ONLY
@pytest.mark.parametrize(
    "name",
    [
        "ooo_outlook_respuesta_automatica.eml",
        "ooo_gmail_vacaciones_es.eml",
        "ooo_outlook_automatic_reply_en.eml",
        "ooo_gmail_out_of_office_en.eml",
        "autoresponder_x_autoreply.eml",
        "lista_precedence_bulk.eml",
        "outlook_confirmacion_lectura_mdn.eml",
    ],
)
def test_out_of_office_and_other_automatic_corpus_mail_is_never_answered(
    scenario: Scenario, opened: tuple[str, EmailMessage], name: str
) -> None:
    """Real auto-replies (Spanish and English), made to come from the directora herself."""
    code, action_mail = opened
    site = scenario.site
    before = queued(scenario)
    put(site, corpus(name, site, code, action_mail, sender="directora"))
    scenario.run()

    assert_archived_unanswered(scenario, code, before)
    approve(scenario, code, action_mail)


def test_bounce_is_archived_and_never_answered(
    scenario: Scenario, opened: tuple[str, EmailMessage]
) -> None:
    """A Postfix DSN about a mail of ours, delivered with a null envelope sender."""
    code, action_mail = opened
    site = scenario.site
    raw = corpus("bounce_dsn_postfix.eml", site, code, action_mail, sender=None)
    raw = re.sub(rb"^Return-Path: <>\r?\n", b"", raw)  # LMTP writes the real one
    before = queued(scenario)
    deliver(site.dovecot, [site.shared], raw, mail_from="")
    scenario.run()

    assert_archived_unanswered(scenario, code, before)
    assert b"Return-Path: <>" in archived(scenario, ledger(scenario)[-1])
    approve(scenario, code, action_mail)


# -- size, broken MIME, unknown charsets --------------------------------------------------

BIG = 30 * 1024 * 1024


@SQLITE_ONLY
def test_request_with_a_30_mb_attachment_is_processed(scenario: Scenario) -> None:
    site = scenario.site
    photo = os.urandom(BIG)
    message = build_message(
        site.addr("analista"),
        [site.shared],
        "Solicitud con foto",
        INFO_REQUEST,
        attachments=[("foto de la feria.png", photo, "image/png")],
    )
    raw = message.as_bytes(policy=email.policy.SMTP)
    del message
    assert len(raw) > BIG * 4 // 3  # base64: about 40 MB on the wire
    put(site, raw)
    del raw
    scenario.run()

    [code] = codes(scenario)
    [attachment] = scenario.show(code)["attachments"]
    assert attachment == {
        "filename": "foto de la feria.png",
        "sha256": hashlib.sha256(photo).hexdigest(),
        "content_type": "image/png",
        "size": BIG,
        "stage": 1,
        "person": site.addr("analista"),
    }
    root = scenario.runtime.settings.store.archive_dir
    stored = root / attachment["sha256"][:2] / f"{attachment['sha256']}.png"
    assert stored.stat().st_size == BIG
    assert ledger(scenario)[-1].outcome == "processed"
    assert site.wait_for("analista", about(code, "Solicitud recibida"))


@SQLITE_ONLY
def test_message_over_the_size_bound_is_quarantined_and_the_loop_goes_on(
    scenario: Scenario,
) -> None:
    """parse.MAX_MESSAGE_BYTES (50 MiB): kept in the archive and the ledger, not read.

    The sender is told why (it used to be silence: they waited for an answer).
    """
    site = scenario.site
    huge = build_message(
        site.addr("analista"),
        [site.shared],
        "Solicitud con vídeo",
        INFO_REQUEST,
        attachments=[("video.mp4", os.urandom(MAX_MESSAGE_BYTES * 3 // 4 + 2**20), "video/mp4")],
    ).as_bytes(policy=email.policy.SMTP)
    assert len(huge) > MAX_MESSAGE_BYTES
    put(site, huge)
    del huge
    site.send("analista", "Solicitud de publicación: feria", INFO_REQUEST)
    scenario.run()

    first, second = ledger(scenario)
    assert first.outcome == "quarantined"
    assert "supera el límite" in first.detail
    assert len(archived(scenario, first)) > MAX_MESSAGE_BYTES
    assert second.outcome == "processed"
    [code] = codes(scenario)
    too_large, *good = sent(site)
    assert "No pudimos procesar" in str(too_large["Subject"])
    assert "el límite es de 50 MB" in plain(too_large)
    assert len(good) == 2
    assert all(code in subject for subject in subjects(good))


def test_unknown_charset_is_read_and_the_action_counts(
    scenario: Scenario, opened: tuple[str, EmailMessage]
) -> None:
    """Mutt's charset="x-unknown" over windows-1252 bytes: RECHAZO with its reason, readable."""
    code, action_mail = opened
    site = scenario.site
    put(site, corpus("charset_desconocido_rechazo.eml", site, code, action_mail, "directora"))
    scenario.run()

    state = scenario.show(code)
    assert state["status"] == "rechazado"
    assert state["history"][-1]["action"] == "RECHAZO"
    assert "la fecha no está confirmada con la unidad" in state["history"][-1]["note"]
    assert ledger(scenario)[-1].outcome == "processed"
    rejected = site.wait_for("analista", about(code, "rechaz"))
    assert "la fecha no está confirmada" in plain(rejected)

    open_request(scenario)  # the loop goes on
    assert len(codes(scenario)) == 2


def test_request_in_an_unknown_charset_with_broken_headers_opens(scenario: Scenario) -> None:
    """8-bit headers and a body labelled with a charset nobody knows: still a request."""
    site = scenario.site
    raw = (
        "From: =?x-desconocido?Q?Anal=EDsta_UTI?= <{sender}>\r\n"
        "To: {shared}\r\n"
        "Subject: Solicitud de publicación: feria\r\n"
        "Message-ID: <charset-1@{domain}>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="x-unknown"\r\n'
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).format(sender=site.addr("analista"), shared=site.shared, domain=site.domain)
    put(site, raw.encode("cp1252") + INFO_REQUEST.replace("\n", "\r\n").encode("cp1252"))
    scenario.run()

    [code] = codes(scenario)
    state = scenario.show(code)
    assert state["title"] == "Feria de servicios digitales 2026"
    assert state["fields"]["resumen"].startswith("La feria se realizará en el atrio")
    assert state["requester"] == site.addr("analista")
    assert site.wait_for("analista", about(code, "Solicitud recibida"))


def test_broken_mime_without_closing_boundary_is_read(
    scenario: Scenario, opened: tuple[str, EmailMessage]
) -> None:
    """PHPMailer: no closing boundary, truncated base64, `../../etc/` in the file name."""
    code, action_mail = opened
    site = scenario.site
    raw = corpus("mime_roto_sin_cierre.eml", site, code, action_mail, "directora")
    put(site, raw.replace(b"\nENTREGO\n", b"\nAPRUEBO\n"))  # the action of stage 2
    scenario.run()

    state = scenario.show(code)
    assert state["stage"]["number"] == 3
    assert state["history"][-1]["action"] == "APRUEBO"
    assert [a["filename"] for a in state["attachments"]] == ["propuesta v2.pdf"]
    assert ledger(scenario)[-1].outcome == "processed"


def test_broken_mime_with_a_wrong_action_is_refused_in_spanish(
    scenario: Scenario, opened: tuple[str, EmailMessage]
) -> None:
    """The declared boundary is never used: the body is unreadable, the subject says
    PUBLICADO, which stage 2 does not accept. A refusal, not a history entry."""
    code, action_mail = opened
    site = scenario.site
    before = len(sent(site))
    put(site, corpus("mime_roto_frontera_erronea.eml", site, code, action_mail, "directora"))
    scenario.run()

    state = scenario.show(code)
    assert state["stage"]["number"] == 2
    assert [h["action"] for h in state["history"]] == ["ENTREGO"]
    [refusal] = state["refused"]
    assert refusal["action"] == "PUBLICADO"
    assert refusal["sender"] == site.addr("directora")
    assert ledger(scenario)[-1].outcome == "format_error"
    [answer] = sent(site)[before:]
    assert str(answer["To"]) == site.addr("directora")
    text = plain(answer)
    assert "etapa 2 no acepta PUBLICADO" in text
    assert "APRUEBO, DERIVO, RECHAZO" in text
    approve(scenario, code, action_mail)


def test_unreadable_bytes_are_quarantined_and_the_loop_goes_on(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Garbage, a mail with no From, and a mail that makes the service itself fail, in
    the same pass as a good request: each is kept with its outcome, the good one opens."""
    site = scenario.site
    import mailflow.app.held

    real = mailflow.app.held.read_request

    def failing(text: str, *args: object, **kwargs: object) -> object:
        if "BOOM" in text:
            raise RuntimeError("simulated bug in the intake parser")
        return real(text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(mailflow.app.held, "read_request", failing)
    put(site, b"\x00\xff\xfe garbage \x89PNG\r\n\x1a\n" * 50)
    put(site, b"Subject: sin remitente\r\n\r\nAPRUEBO\r\n")
    site.send("analista", "Solicitud rara", "BOOM\n" + INFO_REQUEST)
    site.send("analista", "Solicitud de publicación: feria", INFO_REQUEST)
    scenario.run()

    entries = ledger(scenario)
    assert [e.outcome for e in entries] == ["quarantined"] * 3 + ["processed"]
    assert "From" in entries[0].detail and "From" in entries[1].detail
    assert "RuntimeError: simulated bug" in entries[2].detail
    for entry in entries:
        archived(scenario, entry)
    assert b"BOOM" in archived(scenario, entries[2])
    [code] = codes(scenario)
    # Nobody is answered about the bad ones: the acknowledgement and the directora's mail.
    assert len(sent(site)) == 2
    assert all(code in subject for subject in subjects(sent(site)))


# -- the same message twice ---------------------------------------------------------------


@pytest.mark.parametrize("message_id", [True, False], ids=["with-message-id", "without"])
def test_same_request_delivered_twice_opens_once(scenario: Scenario, message_id: bool) -> None:
    site = scenario.site
    message = build_message(
        site.addr("analista"), [site.shared], "Solicitud de publicación: feria", INFO_REQUEST
    )
    if not message_id:
        del message["Message-ID"]
    raw = message.as_bytes(policy=email.policy.SMTP)
    first, second = put(site, raw), put(site, raw)
    assert first != second  # two UIDs, the same bytes
    scenario.run()

    entries = ledger(scenario)
    assert [(e.uid, e.outcome) for e in entries] == [(first, "processed"), (second, "duplicate")]
    assert entries[0].sha256 == entries[1].sha256
    archived(scenario, entries[1])
    [code] = codes(scenario)
    assert len(sent(site, "analista")) == 1
    assert len(sent(site, "directora")) == 1
    assert len(sent(site)) == 2

    # Once more, in a later pass: still a duplicate, still nothing sent.
    put(site, raw)
    scenario.run()
    assert ledger(scenario)[-1].outcome == "duplicate"
    assert len(sent(site)) == 2
    assert len(scenario.show(code)["history"]) == 1


def test_same_approval_delivered_twice_counts_once(
    scenario: Scenario, opened: tuple[str, EmailMessage]
) -> None:
    code, action_mail = opened
    site = scenario.site
    raw = reply_raw(
        site, "directora", action_mail, "RE: " + str(action_mail["Subject"]), "APRUEBO\n"
    )
    put(site, raw)
    put(site, raw)
    scenario.run()

    assert [e.outcome for e in ledger(scenario)] == ["processed", "processed", "duplicate"]
    state = scenario.show(code)
    assert [h["action"] for h in state["history"]] == ["ENTREGO", "APRUEBO"]
    assert state["refused"] == []
    assert len(sent(site, "directora")) == 2  # her action mail and one confirmation
    assert len(sent(site, "jefe.ugs")) == 1


# -- proof by Authentication-Results ------------------------------------------------------

TRUSTED = "mx.agencia.test"


@pytest.fixture
def trusting(scenario: Scenario) -> Iterator[Scenario]:
    """The same site, its daemon configured to trust TRUSTED's Authentication-Results."""
    other = variant(scenario, "[security]\n", f'[security]\ntrusted_authserv_id = "{TRUSTED}"\n')
    yield other
    other.close()


def send_with_results(site: Site, person: str, code: str, *results: str) -> None:
    """Send ``APRUEBO [code]`` From ``person`` straight to the shared box, no token."""
    message = build_message(site.addr(person), [site.shared], f"APRUEBO [{code}]", "APRUEBO\n")
    for value in results:  # topmost first, as servers prepend them
        message["Authentication-Results"] = value
    raw = message.as_bytes(policy=email.policy.SMTP)
    send_as(site.relay, site.addr(person), [site.shared], raw=raw)


def test_authentication_results_are_ignored_without_a_trusted_server(
    scenario: Scenario, opened: tuple[str, EmailMessage]
) -> None:
    code, action_mail = opened
    site = scenario.site
    send_with_results(site, "directora", code, f"{TRUSTED}; dkim=pass header.d={site.domain}")
    scenario.run()

    state = scenario.show(code)
    assert state["stage"]["number"] == 2
    assert len(state["refused"]) == 1
    assert ledger(scenario)[-1].outcome == "unauthorized"
    assert NOTICE in subjects(sent(site, "directora"))[-1]
    approve(scenario, code, action_mail)


@pytest.mark.parametrize(
    "results",
    [
        ("{trusted}; dkim=pass header.d={domain} header.s=sel1",),
        ("{trusted}; spf=pass smtp.mailfrom=directora@{domain}",),
        ("{trusted} 1; dkim=fail header.d={domain}; spf=pass smtp.mailfrom={domain}",),
    ],
    ids=["dkim", "spf", "spf-after-failed-dkim"],
)
def test_trusted_authentication_results_prove_the_sender_without_token(
    trusting: Scenario, opened: tuple[str, EmailMessage], results: tuple[str, ...]
) -> None:
    code, _ = opened
    site = trusting.site
    filled = [r.format(trusted=TRUSTED, domain=site.domain) for r in results]
    send_with_results(site, "directora", code, *filled)
    trusting.run()

    state = trusting.show(code)
    assert state["stage"]["number"] == 3
    assert state["history"][-1]["actor"] == site.addr("directora")
    assert state["refused"] == []
    assert ledger(trusting)[-1].outcome == "processed"


@SQLITE_ONLY
@pytest.mark.parametrize(
    "results",
    [
        ("{trusted}; dkim=fail header.d={domain}",),
        ("{trusted}; dkim=pass header.d=evil.example",),
        ("{trusted}; spf=pass smtp.mailfrom=atacante@evil.example",),
        ("{trusted}; dkim=none; spf=softfail smtp.mailfrom={domain}",),
        ("{trusted}.evil.example; dkim=pass header.d={domain}",),
        ("otro.servidor; dkim=pass header.d={domain}",),
        # A forged header lower down is what the sender wrote, not what our server said.
        ("otro.servidor; dkim=none", "{trusted}; dkim=pass header.d={domain}"),
    ],
    ids=[
        "dkim-fail",
        "other-domain",
        "spf-other-domain",
        "no-pass",
        "lookalike-server",
        "untrusted-server",
        "trusted-below-untrusted",
    ],
)
def test_untrusted_or_failed_authentication_results_prove_nothing(
    trusting: Scenario, opened: tuple[str, EmailMessage], results: tuple[str, ...]
) -> None:
    code, action_mail = opened
    site = trusting.site
    filled = [r.format(trusted=TRUSTED, domain=site.domain) for r in results]
    send_with_results(site, "directora", code, *filled)
    trusting.run()

    state = trusting.show(code)
    assert state["stage"]["number"] == 2
    assert len(state["refused"]) == 1
    assert ledger(trusting)[-1].outcome == "unauthorized"
    assert NOTICE in subjects(sent(site, "directora"))[-1]
    approve(trusting, code, action_mail)


def test_trusted_authentication_results_do_not_give_a_role(
    trusting: Scenario, opened: tuple[str, EmailMessage]
) -> None:
    """The jefe UGS is proven to be himself, but stage 2 is the directora's: his APRUEBO
    is a colleague's note, which she gets as such (no alarm), and he is told why."""
    code, action_mail = opened
    site = trusting.site
    send_with_results(site, "jefe.ugs", code, f"{TRUSTED}; dkim=pass header.d={site.domain}")
    trusting.run()

    state = trusting.show(code)
    assert state["stage"]["number"] == 2
    assert state["refused"] == []
    assert [h["action"] for h in state["history"]] == ["ENTREGO", "NOTA"]
    assert "Nota de" in subjects(sent(site, "directora"))[-1]
    [answer] = sent(site, "jefe.ugs")
    assert f"está a cargo de {site.addr('directora')}" in " ".join(plain(answer).split())
    approve(trusting, code, action_mail)


def test_a_forged_direct_publication_opens_nothing_when_a_server_vouches(
    trusting: Scenario,
) -> None:
    """`directa` publishes at once: with a trusted server, its word is required to open it."""
    site = trusting.site
    post = "PUBLICADO fotografia https://www.facebook.com/ejemplo/posts/9"
    forged = build_message(site.addr("community"), [site.shared], "Foto del día", post)
    send_as(site.relay, site.addr("atacante"), [site.shared], raw=forged.as_bytes())
    trusting.run()
    assert trusting.runtime.requests.summaries() == []
    notice = site.wait_for("community", lambda m: "No pudimos procesar" in str(m["Subject"]))
    assert "no certifica" in notice.get_body(("plain",)).get_content()

    vouched = build_message(site.addr("community"), [site.shared], "Foto del día", post)
    vouched["Authentication-Results"] = f"{TRUSTED}; dkim=pass header.d={site.domain}"
    send_as(site.relay, site.addr("community"), [site.shared], raw=vouched.as_bytes())
    trusting.run()
    [opened] = trusting.runtime.requests.summaries()
    assert (opened["procedure"], opened["status"]) == ("directa", "publicado")


def test_a_database_error_while_handling_quarantines_instead_of_losing(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the ledger claim's IntegrityError means 'taken'; any other is kept and visible."""
    from sqlalchemy.exc import IntegrityError

    from mailflow.app.effects import Applier

    def broken(*_: object, **__: object) -> None:
        raise IntegrityError("INSERT", {}, Exception("simulated constraint violation"))

    monkeypatch.setattr(Applier, "apply", broken)
    site = scenario.site
    site.send("analista", "Solicitud", INFO_REQUEST)
    scenario.run()
    with scenario.runtime.store.transaction() as session:
        rows = session.scalars(select(InboundRow)).all()
        assert [(r.outcome, "IntegrityError" in (r.detail or "")) for r in rows] == [
            ("quarantined", True)
        ]


# -- formats a plain reader cannot read: encrypted, opaque, TNEF, newsletters -------------------


def crlf(raw: bytes) -> bytes:
    """Return a mail with CRLF line ends, as SMTP carries it (the builders write LF)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def reply_head(site: Site, sender: str, original: EmailMessage) -> str:
    """Return the header lines of ``sender``'s answer to ``original`` (its token included)."""
    return (
        f"From: {site.addr(sender)}\n"
        f"To: {parseaddr(str(original['Reply-To']))[1]}\n"
        f"Subject: RE: {original['Subject']}\n"
        f"Message-ID: {make_msgid(domain=site.domain)}\n"
        f"In-Reply-To: {original['Message-ID']}\n"
        "MIME-Version: 1.0\n"
    )


@SQLITE_ONLY
@pytest.mark.parametrize("kind", ["smime", "pgp-mime", "opaque"])
def test_encrypted_or_opaque_reply_gets_a_clear_answer_and_changes_nothing(
    scenario: Scenario, opened: tuple[str, EmailMessage], kind: str
) -> None:
    """It used to be told "su respuesta no trae texto nuevo", which was not the reason."""
    code, action_mail = opened
    site = scenario.site
    head = reply_head(site, "directora", action_mail)
    with formats.certificate() as (cert, key), formats.keyring() as ring:
        raw = {
            "smime": lambda: formats.smime_encrypted(cert, head=head),
            "pgp-mime": lambda: formats.pgp_mime_encrypted(ring, head=head),
            "opaque": lambda: formats.smime_opaque(cert, key, head=head),
        }[kind]()
    send_as(site.relay, site.addr("directora"), [site.shared], raw=crlf(raw))
    scenario.run()

    state = scenario.show(code)
    assert state["stage"]["number"] == 2
    assert ledger(scenario)[-1].outcome == "format_error"
    answer = site.wait_for("directora", lambda m: HELP in str(m["Subject"]))
    text = " ".join(plain(answer).split())
    assert ("llegó cifrado" if kind != "opaque" else "formato opaco") in text
    assert "Envíelo de nuevo sin" in text
    assert "no trae texto nuevo" not in text
    approve(scenario, code, action_mail)


@SQLITE_ONLY
def test_newsletter_with_only_list_unsubscribe_is_archived_and_never_answered(
    scenario: Scenario,
) -> None:
    """It used to be read as a request and get a help mail with a form to fill."""
    site = scenario.site
    raw = formats.newsletter().replace(b"rrss@ejemplo.gob.bo", site.shared.encode())
    put(site, raw)
    scenario.run()
    entry = ledger(scenario)[-1]
    assert entry.outcome == "auto_reply"
    assert "List-Unsubscribe" in entry.detail
    archived(scenario, entry)
    assert queued(scenario) == 0
    assert codes(scenario) == []


@SQLITE_ONLY
def test_outlook_tnef_publication_keeps_its_screenshot(scenario: Scenario) -> None:
    """Outlook's rich text hides the screenshot in winmail.dat; the product must show it."""
    site = scenario.site
    post = "PUBLICADO fotografía https://www.facebook.com/ejemplo/posts/9"
    stream = formats.tnef_stream(post + "\r\n", [("captura.png", formats.PNG)])
    head = (
        f"From: {site.addr('community')}\nTo: {site.shared}\nSubject: Foto del día\n"
        f"Message-ID: {make_msgid(domain=site.domain)}\nMIME-Version: 1.0\n"
    )
    send_as(
        site.relay,
        site.addr("community"),
        [site.shared],
        raw=crlf(formats.outlook_tnef_mail(stream, head=head)),
    )
    scenario.run()
    [opened] = scenario.runtime.requests.summaries()
    state = scenario.show(opened["code"])
    assert (state["procedure"], state["status"]) == ("directa", "publicado")
    assert state["publication"]["urls"] == ["https://www.facebook.com/ejemplo/posts/9"]
    assert [a["filename"] for a in state["attachments"]] == ["captura.png"]
    assert state["attachments"][0]["sha256"] == hashlib.sha256(formats.PNG).hexdigest()
