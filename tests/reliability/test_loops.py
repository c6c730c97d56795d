"""Loops: a thousand machine-written mails get no answer; answers to people are capped.

The 1,000 auto-replies, bounces and out-of-office mails are the worst case for a loop:
each is addressed to the directora's own reply token, threads under her action mail and
says APRUEBO, so anything but the loop rules would make it count or be answered. They go
through `Service.handle` on the real store (one transaction each, archived, ledgered),
then a real `run --once` pass flushes whatever was queued to the SMTP relay, which counts.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr

import pytest
from sqlalchemy import func, select
from testbed.mail import parse
from testbed.site import Scenario, Site

from mailflow.app.answers import MAX_ANSWERS_PER_DAY
from mailflow.app.service import Incoming
from mailflow.store.schema import OutboxRow

from .kit import HELP, NOTICE, forged, ledger, open_request, sent, subjects

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
SIZE = 1000

OOO_SUBJECTS = (
    "Respuesta automática: {s}",
    "Fuera de la oficina: {s}",
    "Fuera de oficina - {s}",
    "Automatic reply: {s}",
    "Auto Reply: {s}",
    "Out of Office: {s}",
    "Out of the office until Monday",
    "Respuesta de ausencia",
    "AutoReply: {s}",
)
BOUNCE_SUBJECTS = (
    "Undeliverable: {s}",
    "Undelivered Mail Returned to Sender",
    "Delivery Status Notification (Failure)",
    "Mail delivery failed: returning message to sender",
    "Returned mail: see transcript for details",
    "failure notice",
    "No se puede entregar: {s}",
    "Mensaje no entregado: {s}",
)
OOO_BODIES = (
    "Estaré fuera de la oficina hasta el lunes. APRUEBO cualquier urgencia con mi suplente.",
    "I am out of the office until Monday with limited access to e-mail.",
    "APRUEBO\n\nEste es un mensaje automático.",
)


def _base(
    site: Site, sender: str, action_mail: EmailMessage, subject: str, body: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = parseaddr(str(action_mail["Reply-To"]))[1]
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain=site.domain)
    message["In-Reply-To"] = str(action_mail["Message-ID"])
    message["References"] = str(action_mail["Message-ID"])
    message.set_content(body)
    return message


def _dsn(
    site: Site, sender: str, action_mail: EmailMessage, subject: str, report: str
) -> EmailMessage:
    """A multipart/report: a DSN (delivery-status) or an MDN (disposition-notification)."""
    message = _base(
        site, sender, action_mail, subject, "APRUEBO\nThe message could not be delivered."
    )
    status = EmailMessage()
    status.set_content(
        "Reporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; nadie@example.net\n"
        "Action: failed\nStatus: 5.1.1\n"
    )
    message.make_mixed()
    message.attach(status)
    message.replace_header(
        "Content-Type", f'multipart/report; report-type={report}; boundary="b{abs(hash(subject))}"'
    )
    return message


def automatic_mail(site: Site, action_mail: EmailMessage) -> Iterator[tuple[str, bytes]]:
    """Yield (kind, bytes) of machine-written mails, varying every signal and language."""
    original = str(action_mail["Subject"])
    directora = site.addr("directora")
    header_sets: list[tuple[str, dict[str, str]]] = [
        ("auto-submitted-replied", {"Auto-Submitted": "auto-replied"}),
        ("auto-submitted-generated", {"Auto-Submitted": "auto-generated"}),
        ("auto-submitted-notified", {"Auto-Submitted": "auto-notified; owner-email=x@y"}),
        ("x-autoreply", {"X-Autoreply": "yes"}),
        ("x-autorespond", {"X-Autorespond": "Vacation"}),
        ("x-autoreply-from", {"X-Autoreply-From": directora}),
        ("x-mail-autoreply", {"X-Mail-Autoreply": "1"}),
        ("precedence-bulk", {"Precedence": "bulk"}),
        ("precedence-list", {"Precedence": "list"}),
        ("precedence-junk", {"Precedence": "junk"}),
        ("precedence-auto-reply", {"Precedence": "auto_reply"}),
        ("list-id", {"List-Id": "Avisos <avisos.lists.example.net>"}),
        ("return-path-null", {"Return-Path": "<>"}),
    ]
    builders: list[tuple[str, Callable[[int], EmailMessage]]] = []
    for name, headers in header_sets:

        def by_header(n: int, headers: dict[str, str] = headers) -> EmailMessage:
            message = _base(site, directora, action_mail, "RE: " + original, OOO_BODIES[n % 3])
            for key, value in headers.items():
                message[key] = value
            return message

        builders.append((name, by_header))
    for template in OOO_SUBJECTS:
        builders.append(
            (
                "ooo-subject",
                lambda n, t=template: _base(
                    site, directora, action_mail, t.format(s=original), OOO_BODIES[n % 3]
                ),
            )
        )
    for template in BOUNCE_SUBJECTS:
        for sender in (
            f"Mail Delivery System <MAILER-DAEMON@{site.domain}>",
            f"postmaster@{site.domain}",
            f"Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@{site.domain}>",
        ):
            builders.append(
                (
                    "bounce-subject",
                    lambda n, t=template, s=sender: _base(
                        site,
                        s,
                        action_mail,
                        t.format(s=original),
                        "Delivery has failed to these recipients or groups.\nAPRUEBO",
                    ),
                )
            )
    builders.append(
        (
            "dsn",
            lambda n: _dsn(
                site,
                f"MAILER-DAEMON@{site.domain}",
                action_mail,
                "Undelivered Mail Returned to Sender",
                "delivery-status",
            ),
        )
    )
    builders.append(
        (
            "mdn",
            lambda n: _dsn(
                site, directora, action_mail, "Leído: " + original, "disposition-notification"
            ),
        )
    )
    for n, (kind, build) in zip(range(SIZE), itertools.cycle(builders), strict=False):
        message = build(n)
        if n % 2:  # Outlook puts this on human mail too: it must neither help nor hurt
            message["X-Auto-Response-Suppress"] = "All"
        yield kind, message.as_bytes()


def outbox_size(scenario: Scenario) -> int:
    with scenario.runtime.store.transaction() as session:
        return int(session.scalar(select(func.count(OutboxRow.id))) or 0)


@SQLITE_ONLY
def test_a_thousand_automatic_mails_get_no_answer(scenario: Scenario) -> None:
    code, action_mail = open_request(scenario)
    site = scenario.site
    relayed, queued = len(site.relay.accepted), outbox_size(scenario)
    kinds: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    service = scenario.runtime.service
    for uid, (kind, raw) in enumerate(automatic_mail(site, action_mail), start=10_000):
        kinds[kind] += 1
        handled = service.handle(Incoming("INBOX", 1, uid, raw), scenario.now)
        outcomes[handled.outcome] += 1
    scenario.run()  # flushes the outbox to the relay, if anything had been queued

    assert sum(kinds.values()) == SIZE
    assert len(kinds) >= 15, kinds
    assert outcomes == {"auto_reply": SIZE}, outcomes
    assert outbox_size(scenario) == queued
    assert len(site.relay.accepted) == relayed
    state = scenario.show(code)
    assert (state["stage"]["number"], state["refused"]) == (2, [])

    # The loop goes on: her real approval counts.
    site.reply("directora", action_mail, "APRUEBO")
    scenario.run()
    assert scenario.show(code)["stage"]["number"] == 3


@SQLITE_ONLY
def test_a_responder_that_answers_everything_hears_from_us_a_few_times_a_day(
    scenario: Scenario,
) -> None:
    """A broken autoresponder with no loop headers: each of our answers gets one back."""
    site = scenario.site
    robot = site.addr("robot")
    service = scenario.runtime.service
    uid = itertools.count(1)
    first = forged(site, "robot", "Hola", "Tipo: nada\n")
    service.handle(Incoming("INBOX", 1, next(uid), first.as_bytes()), scenario.now)
    answered = 0
    days: Counter[str] = Counter()
    for round_ in range(60):  # 60 daemon passes, an hour each: two and a half days
        scenario.run()
        ours = [m for m in site.relay.accepted if robot in m.rcpt_tos]
        for mail in ours[answered:]:
            days[scenario.now.date().isoformat()] += 1
            reply = forged(site, "robot", "RE: " + HELP, f"Recibido {round_}.\nTipo: eco{round_}\n")
            reply["In-Reply-To"] = str(parse(mail.raw)["Message-ID"])
            service.handle(Incoming("INBOX", 1, next(uid), reply.as_bytes()), scenario.now)
        answered = len(ours)
    assert answered > 0
    assert max(days.values()) <= MAX_ANSWERS_PER_DAY, days
    assert answered <= 3 * MAX_ANSWERS_PER_DAY


@SQLITE_ONLY
def test_two_hundred_forgeries_alarm_the_holder_once(scenario: Scenario) -> None:
    """Rejections are capped per address and kind, whoever the forged senders are."""
    code, _ = open_request(scenario)
    site = scenario.site
    service = scenario.runtime.service
    for n in range(200):
        attack = forged(site, f"falso{n}", f"APRUEBO [{code}]", "APRUEBO\n")
        service.handle(Incoming("INBOX", 1, 1000 + n, attack.as_bytes()), scenario.now)
    scenario.run()
    assert [e.outcome for e in ledger(scenario)].count("unauthorized") == 200
    assert len(scenario.show(code)["refused"]) == 200
    assert sum(NOTICE in s for s in subjects(sent(site, "directora"))) == 1
