"""Spoofing and authorization against the real servers: 0 accepted, each recorded, told once.

Every attack travels for real through the SMTP relay, its envelope sender the attacker's,
and one `run --once` pass handles it. Each is sent twice: the request does not move, each
attempt is a ledger row (and a refusal row when it is about a request), and the real role
holder hears about it exactly once.

The second half closes the hole of privileged openings proven by nothing but the From
address (``directa`` publishes at once, ``eliminacion`` orders a deletion): they are held
until the sender answers CONFIRMO with the token we mailed to that address.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from testbed.mail import build_message
from testbed.site import SECRET, Scenario, Site, about

from mailflow.app.answers import MAX_ANSWERS_PER_DAY
from mailflow.core.routing import confirmation_code, held_inbound_id, route
from mailflow.core.tokens import find_tokens, make_token, reply_address

from .kit import (
    CONFIRM,
    HELP,
    NOTICE,
    codes,
    forged,
    ledger,
    open_request,
    plain,
    refusals,
    send_raw_as,
    sent,
    subjects,
    variant,
)

TRUSTED = "mx.agencia.test"
OFF = "confirm_openings = false"
POST = "PUBLICADO fotografia https://www.facebook.com/ejemplo/posts/9"
DELETION = """Tipo: Eliminación de publicación
Título: Retirar la foto equivocada
Enlace: https://www.facebook.com/ejemplo/posts/7
"""


@pytest.fixture
def guarded(scenario: Scenario) -> Iterator[Scenario]:
    """The site with privileged openings held for confirmation (the shipped default)."""
    with variant(scenario, OFF, "confirm_openings = true") as other:
        yield other


@pytest.fixture
def trusting(scenario: Scenario) -> Iterator[Scenario]:
    """The site trusting TRUSTED's Authentication-Results, with an expired substitute."""
    site = scenario.site
    old = f'[roles.direccion_ejecutiva]\nmembers = ["{site.addr("directora")}"]\n'
    new = old + (
        f'substitutes = [{{ address = "{site.addr("suplente")}", '
        "from = 2026-11-02, until = 2026-11-27 }]\n"
    )
    text = site.config_path.read_text(encoding="utf-8")
    assert old in text
    site.config_path.write_text(text.replace(old, new), encoding="utf-8")
    with variant(
        scenario, OFF, f'confirm_openings = true\ntrusted_authserv_id = "{TRUSTED}"'
    ) as other:
        yield other


def vouched(
    site: Site, person: str, subject: str, body: str, server: str = TRUSTED
) -> EmailMessage:
    """Return ``person``'s mail with ``server``'s DKIM pass for the site's domain on top."""
    message = forged(site, person, subject, body)
    message["Authentication-Results"] = f"{server}; dkim=pass header.d={site.domain}"
    return message


def told(site: Site, person: str, word: str) -> int:
    """Count the mails ``person`` got whose subject holds ``word``."""
    return sum(word in s for s in subjects(sent(site, person)))


def reply_with_token(site: Site, sender: str, token_address: str, subject: str) -> EmailMessage:
    """Return a reply from ``sender`` to the token address ``token_address``, no quotes."""
    return build_message(
        site.addr(sender),
        [token_address],
        subject,
        "APRUEBO\n",
        headers={"Message-ID": make_msgid(domain=site.domain)},
    )


# -- attacks on a running request ---------------------------------------------------------


def _attempt_twice(scenario: Scenario, attack: EmailMessage, envelope: str) -> None:
    site = scenario.site
    for _ in range(2):
        del attack["Message-ID"]
        attack["Message-ID"] = make_msgid(domain="evil.example")
        send_raw_as(site, envelope, attack)
        scenario.run()


def _assert_refused(scenario: Scenario, code: str, stage: int, entries: int, holder: str) -> None:
    state = scenario.show(code)
    assert state["stage"]["number"] == stage
    assert len(state["history"]) == stage - 1
    attempts = ledger(scenario)[-2:]
    assert [e.outcome for e in attempts] == ["unauthorized", "unauthorized"], attempts
    assert len(state["refused"]) == entries
    assert told(scenario.site, holder, NOTICE) == 1


def test_forged_from_without_token(scenario: Scenario) -> None:
    code, _ = open_request(scenario)
    attack = forged(scenario.site, "directora", f"APRUEBO [{code}]", "APRUEBO\n")
    _attempt_twice(scenario, attack, "atacante")
    _assert_refused(scenario, code, 2, 2, "directora")


def test_token_replayed_by_another_sender(scenario: Scenario) -> None:
    """The directora's own reply address, used from another mailbox (a stolen mail)."""
    code, action_mail = open_request(scenario)
    site = scenario.site
    [token_address] = [str(action_mail["Reply-To"])]
    for sender in ("atacante", "jefe.ugs"):  # a stranger, and a real holder of another stage
        attack = reply_with_token(site, sender, token_address, "RE: " + str(action_mail["Subject"]))
        attack["In-Reply-To"] = str(action_mail["Message-ID"])
        _attempt_twice(scenario, attack, sender)
    _assert_refused(scenario, code, 2, 4, "directora")
    assert all("otra persona" in reason for _, reason in refusals(scenario))


def test_token_for_another_request(scenario: Scenario) -> None:
    """A real token of request A, its code changed to B: its MAC no longer verifies."""
    first, action_first = open_request(scenario)
    second, _ = open_request(scenario)
    assert first != second
    site = scenario.site
    [token] = find_tokens([str(action_first["Reply-To"])])
    moved = token.text.replace(first.lower(), second.lower())
    address = f"rrss+{moved}@{site.domain}"
    attack = reply_with_token(site, "directora", address, f"RE: [{second}]")
    _attempt_twice(scenario, attack, "atacante")
    _assert_refused(scenario, second, 2, 2, "directora")
    assert scenario.show(first)["refused"] == []


def test_token_for_another_stage(scenario: Scenario) -> None:
    """The directora answers her stage-2 mail again once the request is at stage 3."""
    code, action_mail = open_request(scenario)
    site = scenario.site
    site.reply("directora", action_mail, "APRUEBO")
    scenario.run()
    assert scenario.show(code)["stage"]["number"] == 3
    for _ in range(2):
        site.reply("directora", action_mail, "RECHAZO ya no")
        scenario.run()
    state = scenario.show(code)
    assert state["stage"]["number"] == 3
    # She is proven and of the institution: nothing moves, her words are a note, kept
    # once (the second mail is the same note again), and nobody is alarmed.
    assert [h["action"] for h in state["history"]] == ["ENTREGO", "APRUEBO", "NOTA"]
    assert state["refused"] == []
    assert told(site, "directora", "como nota") == 1
    assert told(site, "directora", "Ya registrado") == 1
    assert told(site, "jefe.ugs", "Nota de") == 1
    assert told(site, "jefe.ugs", NOTICE) == 0


def test_expired_substitute(trusting: Scenario) -> None:
    """Proven by the trusted server, but her substitution ended before the request came."""
    code, _ = open_request(trusting)
    site = trusting.site
    attack = vouched(site, "suplente", f"APRUEBO [{code}]", "APRUEBO\n")
    _attempt_twice(trusting, attack, "suplente")
    _assert_refused(trusting, code, 2, 2, "directora")
    assert all("no ejerce el rol" in reason for _, reason in refusals(trusting))


def test_member_of_the_wrong_unit(trusting: Scenario) -> None:
    """At a stage of the requesting unit (UTI), the proven head of another unit (UAL)."""
    code, action_mail = open_request(trusting)
    site = trusting.site
    steps = [
        ("directora", action_mail, "APRUEBO"),
        ("jefe.ugs", None, "DERIVO"),
        ("promocion", None, "ENTREGO la propuesta.\nCronograma: material 04/12/2026"),
    ]
    for person, mail, answer in steps:
        site.reply(person, mail or site.wait_for(person, about(code, "Acción")), answer)
        trusting.run()
    assert trusting.show(code)["stage"]["number"] == 5
    attack = vouched(site, "jefe.ual", f"APRUEBO [{code}]", "APRUEBO\n")
    _attempt_twice(trusting, attack, "jefe.ual")
    state = trusting.show(code)
    assert state["stage"]["number"] == 5
    # The head of another unit is a colleague, not an intruder: nothing moves, his words
    # are a note (once), the stage's holders get it as a note, and nobody is alarmed.
    assert state["refused"] == []
    assert [h["action"] for h in state["history"]].count("NOTA") == 1
    assert [e.outcome for e in ledger(trusting)[-2:]] == ["processed", "duplicate"]
    for holder in ("analista", "jefe.uti"):
        assert told(site, holder, NOTICE) == 0
        assert told(site, holder, "Nota de") == 1
    assert told(site, "jefe.ual", "como nota") == 1


def test_authentication_results_added_by_an_untrusted_server(trusting: Scenario) -> None:
    code, _ = open_request(trusting)
    site = trusting.site
    attack = vouched(site, "directora", f"APRUEBO [{code}]", "APRUEBO\n", "otro.servidor")
    _attempt_twice(trusting, attack, "atacante")
    _assert_refused(trusting, code, 2, 2, "directora")


# -- privileged openings: the confirmation round-trip ------------------------------------


def _held(scenario: Scenario) -> int:
    entry = ledger(scenario)[-1]
    assert entry.detail.startswith("held for CONFIRMO"), entry
    assert entry.request_id is None
    return entry.id


@pytest.mark.parametrize(
    "case",
    [
        ("community", "Foto del día", POST, "directa", "publicado"),
        ("directora", "Eliminar publicación", DELETION, "eliminacion", "en_curso"),
    ],
    ids=["directa", "eliminacion"],
)
def test_a_forged_privileged_opening_is_held_and_only_its_owner_opens_it(
    guarded: Scenario, case: tuple[str, str, str, str, str]
) -> None:
    owner, subject, body, procedure, status = case
    site = guarded.site
    send_raw_as(site, "atacante", forged(site, owner, subject, body))
    guarded.run()
    assert codes(guarded) == []
    held = _held(guarded)
    ask = site.wait_for(owner, lambda m: CONFIRM in str(m["Subject"]))
    text = plain(ask)
    assert "CONFIRMO" in text
    assert "https://www.facebook.com/ejemplo/posts/" in text  # the request summary
    assert sent(site, "atacante") == []  # the forger never sees the token

    # The forger guesses: the code in a subject, a token made with another key, and the
    # real token (say a copy of the mail leaked) from his own address.
    code = confirmation_code("RRSS", held)
    guesses = [
        forged(site, owner, f"RE: [{code}]", "CONFIRMO\n"),
        reply_with_token(
            site,
            owner,
            reply_address(site.shared, make_token(b"another key!", code, 0, site.addr(owner))),
            "RE: Confirme",
        ),
    ]
    for guess in guesses:
        del guess["Subject"]
        guess["Subject"] = f"RE: [{code}]"
        guess.set_content("CONFIRMO\n")
        send_raw_as(site, "atacante", guess)
    site.reply(owner, ask, "CONFIRMO", sender="atacante")
    guarded.run()
    assert codes(guarded) == []
    assert [e.outcome for e in ledger(guarded)[-3:]] == ["unauthorized"] * 3
    assert sent(site, "atacante") == []

    # The owner confirms: the request opens, once, as the mail asked.
    site.reply(owner, ask, "CONFIRMO")
    guarded.run()
    [opened] = guarded.runtime.requests.summaries()
    assert (opened["procedure"], opened["status"]) == (procedure, status)
    assert opened["requester"] == site.addr(owner)
    assert ledger(guarded)[-1].outcome == "processed"
    site.reply(owner, ask, "CONFIRMO")
    guarded.run()
    assert len(codes(guarded)) == 1
    assert ledger(guarded)[-1].outcome == "duplicate"


@pytest.mark.parametrize("style", ["outlook", "iphone", "thunderbird"])
def test_confirmo_from_each_mail_client_opens_the_post(guarded: Scenario, style: str) -> None:
    # Gmail's quoting is the case above; these clients quote the confirmation mail (with
    # its CONFIRMO instructions) in their own ways, which must not hide or fake the answer.
    site = guarded.site
    site.send("community", "Foto del día", POST)
    guarded.run()
    _held(guarded)
    ask = site.wait_for("community", lambda m: CONFIRM in str(m["Subject"]))
    site.reply("community", ask, "CONFIRMO", style=style)
    guarded.run()
    [opened] = guarded.runtime.requests.summaries()
    assert (opened["procedure"], opened["status"]) == ("directa", "publicado")


def test_a_genuine_post_waits_for_confirmo_and_expires(guarded: Scenario) -> None:
    site = guarded.site
    site.send("community", "Foto del día", POST)
    guarded.run()
    _held(guarded)
    ask = site.wait_for("community", lambda m: CONFIRM in str(m["Subject"]))

    site.reply("community", ask, "No confirmo, no lo envié")
    guarded.run()
    assert codes(guarded) == []
    assert "CONFIRMO como primera palabra" in plain(site.wait_for("community", _help))

    guarded.now += timedelta(days=7)  # 3 business days (the default) are long past
    site.reply("community", ask, "CONFIRMO")
    guarded.run()
    assert codes(guarded) == []
    assert "venció" in plain(
        site.wait_for("community", lambda m: _help(m) and "venció" in plain(m))
    )


def _help(message: EmailMessage) -> bool:
    return HELP in str(message["Subject"])


def test_a_confirmation_is_asked_at_most_a_few_times_a_day(guarded: Scenario) -> None:
    """A forger flooding openings in someone's name cannot make us flood that person."""
    site = guarded.site
    for n in range(MAX_ANSWERS_PER_DAY + 3):
        post = POST.replace("posts/9", f"posts/{n}")
        send_raw_as(site, "atacante", forged(site, "community", f"Foto {n}", post))
    guarded.run()
    assert codes(guarded) == []
    assert told(site, "community", CONFIRM) == MAX_ANSWERS_PER_DAY


def test_who_may_not_open_it_is_not_asked_to_confirm(guarded: Scenario) -> None:
    site = guarded.site
    site.send("analista", "Foto del día", POST)
    guarded.run()
    assert codes(guarded) == []
    assert told(site, "analista", CONFIRM) == 0
    assert told(site, "analista", HELP) == 1


@pytest.mark.parametrize("server", [TRUSTED, "otro.servidor"], ids=["vouched", "not-vouched"])
def test_a_trusted_server_spares_the_round_trip(trusting: Scenario, server: str) -> None:
    site = trusting.site
    send_raw_as(site, "community", vouched(site, "community", "Foto del día", POST, server))
    trusting.run()
    if server == TRUSTED:
        [opened] = trusting.runtime.requests.summaries()
        assert opened["status"] == "publicado"
        assert told(site, "community", CONFIRM) == 0
    else:
        assert codes(trusting) == []
        _held(trusting)
        assert told(site, "community", CONFIRM) == 1


def test_the_secret_signs_confirmation_tokens() -> None:
    """The test bed's key is what the daemon signs with (guards the guesses above)."""
    code = confirmation_code("RRSS", 1)
    token = make_token(SECRET.encode(), code, 0, "a@b.example")
    assert find_tokens([reply_address("rrss@b.example", token)]) == [token]


def test_confirmation_codes_name_no_request() -> None:
    code = confirmation_code("rrss", 42)
    assert held_inbound_id(code, "RRSS") == 42
    assert held_inbound_id("RRSS-2026-0042", "RRSS") is None
    token = make_token(SECRET.encode(), code, 0, "a@b.example")
    found = route([reply_address("rrss@b.example", token)], [], "", "RRSS")
    assert (found.code, found.tokens) == (code, (token,))
