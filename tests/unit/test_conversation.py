"""The conversation rules (core.conversation): what a reply is, beyond a holder's action."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from test_workflow import ANA, DE, DIS, JUTI, NOW, OUTSIDER, PRO, PROCEDURES, UGS, WF, state_at

from mailflow.core.conversation import (
    NOTE,
    Decision,
    Entry,
    Proof,
    Said,
    Standing,
    Verdict,
    Why,
    decide,
    promised_mails,
    what_happens,
)
from mailflow.core.model import Action, RequestState, Status, Vote
from mailflow.core.names import role_words
from mailflow.mail.thanks import is_thanks

A = Action
WITHDRAW = ("solicitante", "jefatura_solicitante", "direccion_ejecutiva")
EARLIER = NOW - timedelta(hours=3)


def standing(state: RequestState, *history: Entry) -> Standing:
    procedure = PROCEDURES[state.procedure]
    return Standing(state, procedure, WF.directory, tuple(history), NOW.date(), WITHDRAW)


def token(*stages: int) -> Proof:
    return Proof(stages=frozenset(stages))


def said(sender: str, action: Action | None = None, text: str = "", **extra: object) -> Said:
    return Said(sender, action, text or (action.value if action else ""), **extra)  # type: ignore[arg-type]


INFO3 = state_at("informacion_especifica", 3)  # the jefatura UGS derives; DE approved at 2
APPROVED = Entry(EARLIER, DE, "APRUEBO", 2)
OPENED = Entry(EARLIER - timedelta(hours=1), ANA, "ENTREGO", 1)


# -- notes ----------------------------------------------------------------------------------


def test_a_reply_without_action_from_the_requester_is_a_note() -> None:
    found = decide(said(ANA, text="Olvidé adjuntar el afiche", files=1), token(1), standing(INFO3))
    assert found == Decision(Verdict.NOTE)


def test_a_note_needs_proof_and_a_stranger_is_not_taken() -> None:
    note = said(ANA, text="Olvidé adjuntar el afiche")
    assert decide(note, Proof(), standing(INFO3)).verdict is Verdict.UNPROVEN
    stranger = said(OUTSIDER, text="Quiero opinar")
    assert decide(stranger, Proof(trusted=True), standing(INFO3)) == Decision(
        Verdict.UNPROVEN, why=Why.STRANGER
    )
    # Vouched for by the trusted server and of the institution: a note.
    assert decide(note, Proof(trusted=True), standing(INFO3)).verdict is Verdict.NOTE


@pytest.mark.parametrize(
    "text", ["Entendido, gracias", "Muchas gracias!", "Ok, recibido.\n\nAna Pérez\nJefa de UTI"]
)
def test_pure_thanks_is_archived_open_or_closed(text: str) -> None:
    assert is_thanks(text)
    for state in (INFO3, replace(INFO3, status=Status.PUBLICADO)):
        thanks = said(ANA, text=text, thanks=True)
        assert decide(thanks, token(3), standing(state)).verdict is Verdict.THANKS
    # With a file it is a note after all.
    with_file = said(ANA, text=text, files=1, thanks=True)
    assert decide(with_file, token(3), standing(INFO3)).verdict is Verdict.NOTE


def test_anything_else_on_an_ended_request_gets_the_outcome() -> None:
    ended = replace(INFO3, status=Status.PUBLICADO)
    verdict = decide(said(ANA, text="¿Cuándo sale?"), token(9), standing(ended)).verdict
    assert verdict is Verdict.CLOSED


def test_the_holder_whose_keyword_does_not_count_gets_help_not_a_note() -> None:
    for reply in (said(UGS, text="No derivo todavía", attempted=True), said(UGS, text="")):
        assert decide(reply, token(3), standing(INFO3)).verdict is Verdict.HELP
    # Plain text from the holder is a note (its answer lists the holder's keywords).
    talk = said(UGS, text="Lo veo mañana.")
    assert decide(talk, token(3), standing(INFO3)).verdict is Verdict.NOTE
    # A non-holder's negated keyword is a note: they could not have acted anyway.
    assert decide(said(ANA, text="No apruebo", attempted=True), token(1), standing(INFO3)) == (
        Decision(Verdict.NOTE)
    )


# -- keywords ---------------------------------------------------------------------------------


def test_the_holder_answering_this_stage_acts() -> None:
    assert decide(said(UGS, A.DERIVO), token(3), standing(INFO3)).verdict is Verdict.ACT
    assert decide(said(UGS, A.DERIVO), Proof(trusted=True), standing(INFO3)).verdict is Verdict.ACT


def test_a_keyword_without_proof_is_unauthorized() -> None:
    for sender in (UGS, OUTSIDER):
        assert decide(said(sender, A.DERIVO), Proof(), standing(INFO3)).verdict is (
            Verdict.UNAUTHORIZED
        )


def test_the_same_action_twice_is_a_repeat() -> None:
    found = decide(said(DE, A.APRUEBO), token(2), standing(INFO3, OPENED, APPROVED))
    assert found == Decision(Verdict.REPEAT, APPROVED)


def test_a_changed_mind_on_a_decided_stage_is_a_colleague_note_citing_it() -> None:
    found = decide(said(DE, A.RECHAZO, "RECHAZO mejor no"), token(2), standing(INFO3, APPROVED))
    assert found == Decision(Verdict.COLLEAGUE, APPROVED)


def test_a_copied_colleague_changes_nothing() -> None:
    """At stage 5 the jefatura UGS is copied with its own token; only the unit decides."""
    at5 = state_at("informacion_especifica", 5)
    found = decide(said(UGS, A.APRUEBO), token(5), standing(at5))
    assert found == Decision(Verdict.COLLEAGUE)


def test_a_proven_stranger_is_still_refused() -> None:
    found = decide(said(OUTSIDER, A.APRUEBO), Proof(trusted=True), standing(INFO3))
    assert found.verdict is Verdict.UNAUTHORIZED


def test_the_other_holder_acting_late_is_told_who_acted() -> None:
    """Stage 6 is held by the professional and the design team; the designer delivered."""
    at7 = state_at("informacion_especifica", 7)
    delivered = Entry(EARLIER, DIS, "ENTREGO", 6)
    found = decide(said(PRO, A.ENTREGO), token(6), standing(at7, delivered))
    assert found == Decision(Verdict.LATE, delivered)
    # The one who delivered, delivering again: a repeat, not late.
    assert decide(said(DIS, A.ENTREGO), token(6), standing(at7, delivered)).verdict is (
        Verdict.REPEAT
    )


def test_the_current_holder_answering_an_older_stage_is_stale() -> None:
    """The jefatura UGS holds stage 8 and answers its stage-3 mail with another action."""
    at8 = state_at("informacion_especifica", 8)
    derived = Entry(EARLIER, UGS, "DERIVO", 3)
    assert decide(said(UGS, A.DERIVO), token(3), standing(at8, derived)).verdict is Verdict.REPEAT
    assert decide(said(UGS, A.APRUEBO), token(3), standing(at8, derived)).verdict is Verdict.STALE


def test_a_stage_visited_again_is_not_a_repeat() -> None:
    """OBSERVO sent the proposal back to stage 4: delivering again is an action."""
    back = replace(state_at("informacion_especifica", 4), entered_at=NOW)
    first = Entry(EARLIER, PRO, "ENTREGO", 4)
    assert decide(said(PRO, A.ENTREGO), token(4), standing(back, first)).verdict is Verdict.ACT


def test_a_committee_member_voting_the_same_again_is_a_repeat() -> None:
    at5 = state_at("promocion", 5, ("comite_rrss",))
    voted = replace(at5, votes=(Vote("c1@x.bo", A.APRUEBO),))
    vote = Entry(NOW, "c1@x.bo", "APRUEBO", 5)
    assert decide(said("c1@x.bo", A.APRUEBO), token(5), standing(voted, vote)).verdict is (
        Verdict.REPEAT
    )
    # Changing one's vote is an action.
    assert decide(said("c1@x.bo", A.OBSERVO), token(5), standing(voted, vote)).verdict is (
        Verdict.ACT
    )


# -- ANULO --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sender", [ANA, JUTI, DE])
def test_anulo_from_those_who_may_withdraws(sender: str) -> None:
    assert decide(said(sender, A.ANULO), token(3), standing(INFO3)).verdict is Verdict.WITHDRAW


def test_anulo_refused_to_others_after_the_end_and_without_proof() -> None:
    assert decide(said(PRO, A.ANULO), token(3), standing(INFO3)) == Decision(
        Verdict.NOT_WITHDRAWN, why=Why.NOT_ALLOWED
    )
    published = replace(INFO3, status=Status.PUBLICADO)
    assert decide(said(ANA, A.ANULO), token(9), standing(published)).why is Why.PUBLISHED
    rejected = replace(INFO3, status=Status.RECHAZADO)
    assert decide(said(ANA, A.ANULO), token(2), standing(rejected)).why is Why.ENDED
    assert decide(said(ANA, A.ANULO), Proof(), standing(INFO3)).verdict is Verdict.UNPROVEN


# -- thanks, promises, confirmations -----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Gracias\nMañana envío el afiche",
        "Gracias, ¿cuándo se publica?",
        "Adjunto el afiche corregido",
        "Saludos",
        "",
    ],
)
def test_not_a_pure_thanks(text: str) -> None:
    assert not is_thanks(text)


def test_the_acknowledgement_promises_exactly_the_requesters_mails() -> None:
    procedure = PROCEDURES["informacion_especifica"]
    state = state_at("informacion_especifica", 2)
    promised = promised_mails(procedure, WF.directory, state, NOW.date())
    assert promised[0] == (
        "cuando se resuelva la etapa 2 (Rechaza o aprueba solicitud y deriva a la UGS; "
        "a cargo de Dirección Ejecutiva)"
    )
    assert [line.split("(")[0].strip() for line in promised[1:3]] == [
        "cuando la solicitud llegue a la etapa 5",
        "cuando la solicitud llegue a la etapa 7",
    ]
    # Stage 6 is marked too, but its only outcome is the requester's stage 7: no extra line.
    assert not any("etapa 6" in line for line in promised)
    assert promised[-1] == (
        "al terminar: si se publica (con los enlaces), si se rechaza (con el motivo) o si se anula"
    )
    assert len(promised) == 4


def test_a_requester_heading_a_stage_is_promised_its_mail() -> None:
    """The DE opens a promoción: the unit-head stage falls to her (no unit), if assigned."""
    procedure = PROCEDURES["promocion"]
    state = RequestState("promocion", 2, ("jefatura_ugs",), DE, None, NOW)
    promised = promised_mails(procedure, WF.directory, state, NOW.date())
    assert any("etapa 5" in line and "si se le asigna" in line for line in promised)


def test_what_a_confirmed_opening_does() -> None:
    assert "se registrará de inmediato como publicada" in what_happens(PROCEDURES["directa"])
    deletion = what_happens(PROCEDURES["eliminacion"])
    assert "pasará a la etapa 2" in deletion
    assert "Administrador Principal de Redes Sociales" in deletion


def test_role_words() -> None:
    assert role_words(WF.directory, WITHDRAW) == (
        "quien envió la solicitud, la jefatura de la unidad solicitante o la Dirección Ejecutiva"
    )


def test_a_note_is_never_a_past_action() -> None:
    """A note of the sender's at the stage does not make their keyword a repeat."""
    note = Entry(EARLIER, DE, NOTE, 2)
    found = decide(said(DE, A.APRUEBO), token(2), standing(INFO3, note))
    assert found.verdict is Verdict.COLLEAGUE


def test_an_ended_substitution_makes_nobody_a_colleague() -> None:
    """The jefatura UGS's substitute (9 to 13 March) is a colleague only then."""
    substitute = "sup@x.bo"
    reply = said(substitute, A.APRUEBO)
    during = replace(standing(INFO3), today=NOW.date() + timedelta(days=8))
    assert decide(reply, Proof(trusted=True), during).verdict is Verdict.ACT  # holds stage 3
    at2 = state_at("informacion_especifica", 2)
    assert decide(reply, Proof(trusted=True), replace(standing(at2), today=during.today)) == (
        Decision(Verdict.COLLEAGUE)
    )
    assert decide(reply, Proof(trusted=True), standing(at2)).verdict is Verdict.UNAUTHORIZED
