"""Remind, then expire, the openings held for their sender's CONFIRMO.

A privileged opening nobody vouches for waits for ``CONFIRMO`` (:mod:`mailflow.app.service`).
Once a business day has passed its sender gets one reminder, a copy of the confirmation
(the same signed token answers it); after ``[security] confirm_days`` business days the
opening expires: its sender is told that nothing was done, and its ledger row is marked so
that ``mailflow status`` no longer lists it. Each step is claimed by key in the same
transaction as its mail (:func:`mailflow.store.repository.claim_once`), so it happens
once whatever the number of passes and daemons. Only openings whose confirmation was
really mailed are reminded: the daily cap that spared a forger's victim spares them again.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from enum import StrEnum

from mailflow.app.build import Core
from mailflow.app.context import mail_context
from mailflow.app.held import confirm_context, read_request_mail
from mailflow.app.outbound import Composer
from mailflow.config import Settings
from mailflow.core.routing import confirmation_code
from mailflow.mail.mimestream import read_mail
from mailflow.mail.spool import Spooled
from mailflow.store.archive import Archive
from mailflow.store.repository import Store, claim_once
from mailflow.store.threads import HeldOpening, held_openings, mark_expired
from mailflow.store.unitofwork import Session

log = logging.getLogger("mailflow.jobs.held")


class HeldStep(StrEnum):
    """Name the timed steps of a held opening; the values are ``reminders.kind``."""

    REMINDER = "held_reminder"
    EXPIRY = "held_expiry"


def held_step(
    opening: HeldOpening, core: Core, confirm_days: int, now: datetime
) -> HeldStep | None:
    """Return the step due for ``opening`` at ``now``, if any."""
    calendar = core.calendar
    expires = calendar.due_after(opening.received_at, confirm_days)
    if now > expires:
        return HeldStep.EXPIRY
    remind = calendar.due_after(opening.received_at, 1)
    if remind < expires and now >= remind:
        return HeldStep.REMINDER
    return None


class HeldOpenings:
    """Carry out the reminders and expiries of held openings due at a given moment."""

    def __init__(
        self, settings: Settings, core: Core, store: Store, composer: Composer, archive: Archive
    ) -> None:
        self.settings = settings
        self.core = core
        self.store = store
        self.composer = composer
        self.archive = archive

    def run_due(self, now: datetime) -> dict[str, int]:
        """Remind or expire every held opening due at ``now``; return how many of each."""
        with self.store.transaction() as session:
            waiting = held_openings(session)
        done: Counter[str] = Counter()
        days = self.settings.security.confirm_days
        for opening in waiting:
            step = held_step(opening, self.core, days, now)
            if step is None or not opening.sender:
                continue
            try:
                with self.store.transaction() as session:
                    if self._do(session, opening, step, now):
                        done[step.value] += 1
            except Exception:
                log.exception(
                    "%s of #%s failed; retrying on the next pass", step, opening.inbound_id
                )
        return dict(done)

    def _do(self, session: Session, opening: HeldOpening, step: HeldStep, now: datetime) -> bool:
        key = f"{step.value}:{opening.inbound_id}"
        if step is HeldStep.EXPIRY and not mark_expired(session, opening.inbound_id):
            return False  # confirmed meanwhile
        if not claim_once(session, key, kind=step.value, now=now):
            return False
        if not opening.asked:
            return True  # never asked (daily cap): nothing to remind of, nobody to tell
        path = self.archive.locate(opening.sha256)
        if path is None:
            log.warning("held opening #%s: archived mail missing", opening.inbound_id)
            return True
        calendar = self.core.calendar
        expires = calendar.due_after(opening.received_at, self.settings.security.confirm_days)
        spooled = Spooled(path, path.stat().st_size, opening.sha256)
        with read_mail(spooled, self.archive.scratch) as mail:
            parsed = read_request_mail(mail, calendar.local(opening.received_at).date())
            event = "recordatorio" if step is HeldStep.REMINDER else ""
            context = confirm_context(self.core, parsed, mail, expires, event=event)
            context["received"] = calendar.local(opening.received_at)
            reminder = step is HeldStep.REMINDER
            prefix = self.settings.organization.code_prefix
            rows = self.composer.rows(
                "confirm_opening" if reminder else "confirm_expired",
                [mail.from_address],
                [],
                context=mail_context(**context),
                code=confirmation_code(prefix, opening.inbound_id) if reminder else None,
                stage=0,
                references=[mail.message_id],
                now=now,
                request_id=None,
                show_code=False,
            )
        session.add_all(rows)
        log.info("%s of held opening #%s sent", step.value, opening.inbound_id)
        return True
