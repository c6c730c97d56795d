"""Looking at a scenario from the outside, for the security and bad-input suites.

What the daemon handed to the relay, what it queued, its ledger and its requests: the
same views as tests/integration/test_bad_input.py, kept here so the reliability suites
do not import a test module.
"""

from __future__ import annotations

import email.policy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage

from sqlalchemy import select
from testbed.mail import build_message, parse, send_as
from testbed.site import INFO_REQUEST, Scenario, Site, about, code_of

from mailflow.dbschema import InboundRow, OutboxRow, RefusalRow

HELP = "No pudimos procesar su correo"
NOTICE = "Aviso: acción no autorizada"
CONFIRM = "Confirme su solicitud"


@dataclass(frozen=True)
class Entry:
    """One ledger row, read back after a pass."""

    id: int
    uid: int
    outcome: str
    detail: str
    request_id: int | None
    sha256: str


def ledger(scenario: Scenario) -> list[Entry]:
    """Return the ledger of inbound messages, in the order they were taken."""
    with scenario.runtime.store.transaction() as session:
        rows = session.scalars(select(InboundRow).order_by(InboundRow.id))
        return [Entry(r.id, r.uid, r.outcome, r.detail or "", r.request_id, r.sha256) for r in rows]


def refusals(scenario: Scenario) -> list[tuple[str, str]]:
    """Return every recorded refusal as (sender, reason)."""
    with scenario.runtime.store.transaction() as session:
        return [(r.sender, r.reason) for r in session.scalars(select(RefusalRow))]


def outbox_raw(scenario: Scenario) -> list[bytes]:
    """Return the bytes of every mail the daemon ever queued."""
    with scenario.runtime.store.transaction() as session:
        return [bytes(r.raw) for r in session.scalars(select(OutboxRow).order_by(OutboxRow.id))]


def sent(site: Site, person: str | None = None) -> list[EmailMessage]:
    """Return what the daemon handed to the relay (to one person, if given), oldest first."""
    return [
        parse(m.raw)
        for m in site.relay.accepted
        if m.mail_from == site.shared and (person is None or site.addr(person) in m.rcpt_tos)
    ]


def subjects(messages: list[EmailMessage]) -> list[str]:
    return [str(m["Subject"]) for m in messages]


def plain(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def codes(scenario: Scenario) -> list[str]:
    return [r["code"] for r in scenario.runtime.requests.summaries()]


def open_request(scenario: Scenario, body: str = INFO_REQUEST) -> tuple[str, EmailMessage]:
    """Open the site's standard request; return its code and the directora's action mail."""
    site = scenario.site
    site.send("analista", "Solicitud de publicación: feria", body)
    scenario.run()
    ack = site.wait_for("analista", lambda m: "Solicitud recibida" in str(m["Subject"]))
    code = code_of(ack)
    return code, site.wait_for("directora", about(code, "Acción requerida"))


def send_raw_as(site: Site, envelope_from: str, message: EmailMessage) -> None:
    """Hand ``message`` to the relay with ``envelope_from`` (a local part) as the sender."""
    raw = message.as_bytes(policy=email.policy.SMTP)
    send_as(site.relay, site.addr(envelope_from), [site.shared], raw=raw)


def forged(site: Site, as_person: str, subject: str, body: str, **headers: str) -> EmailMessage:
    """Return a new mail to the shared box whose From is ``as_person``."""
    return build_message(
        site.addr(as_person), [site.shared], subject, body, headers=headers or None
    )


@contextmanager
def variant(scenario: Scenario, old: str, new: str) -> Iterator[Scenario]:
    """Give a second daemon over the same site and store, its config edited."""
    site = scenario.site
    text = site.config_path.read_text(encoding="utf-8")
    assert old in text
    site.config_path.write_text(text.replace(old, new), encoding="utf-8")
    other = Scenario(site)
    other.now = scenario.now
    try:
        yield other
    finally:
        other.close()
