"""Looking at a scenario from the outside, for the security and bad-input suites.

The common views (ledger, what was sent, requests) come from testbed.outside, shared with
tests/integration/test_bad_input.py; this adds refusals, the outbox, forging and variants.
"""

from __future__ import annotations

import email.policy
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

from sqlalchemy import select
from testbed.mail import build_message, send_as
from testbed.outside import HELP, NOTICE, Entry, codes, ledger, plain, sent, subjects
from testbed.site import INFO_REQUEST, Scenario, Site, about, code_of

from mailflow.store.schema import OutboxRow, RefusalRow

__all__ = [
    "HELP",
    "NOTICE",
    "Entry",
    "codes",
    "ledger",
    "plain",
    "sent",
    "subjects",
]

CONFIRM = "Confirme su solicitud"


def refusals(scenario: Scenario) -> list[tuple[str, str]]:
    """Return every recorded refusal as (sender, reason)."""
    with scenario.runtime.store.transaction() as session:
        return [(r.sender, r.reason) for r in session.scalars(select(RefusalRow))]


def outbox_raw(scenario: Scenario) -> list[bytes]:
    """Return the bytes of every mail the daemon ever queued (from the archive if it has files)."""
    archive = scenario.runtime.service.archive
    with scenario.runtime.store.transaction() as session:
        return [
            archive.path_of(r.eml_sha256, ".eml").read_bytes() if r.eml_sha256 else bytes(r.raw)
            for r in session.scalars(select(OutboxRow).order_by(OutboxRow.id))
        ]


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
