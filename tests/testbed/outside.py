"""Looking at a scenario from the outside: the ledger, what was sent, the requests.

The views the bad-input and reliability suites both judge by: the inbound ledger as rows,
what the daemon handed to the relay, the subjects and plain text of those mails, and the
codes of the requests it opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

from sqlalchemy import select

from mailflow.store.schema import InboundRow
from testbed.mail import parse
from testbed.site import Scenario, Site

HELP = "No pudimos procesar su correo"
NOTICE = "Aviso: acción no autorizada"


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
