"""Flush the transactional outbox: send due rows, record each outcome, report failures.

A row is marked sent only after the SMTP server accepted it, in its own transaction; a
crash in between sends the same bytes (same Message-ID) again, the only repeat allowed.
Results are recorded while the batch is still being sent, a few at a time, so that a crash
repeats at most the last few mails rather than the whole batch.

A row taken for sending names its holder (``claimed_by``, see :mod:`mailflow.store.claims`)
until its result is recorded. Each flush first releases the claims of daemons that are
gone, so mail a killed daemon had taken leaves with the next flush of any daemon, not
after a timeout.

The retry policy lives here, not in the SMTP adapter, which only reports what the server
said: a 5xx refusal is permanent (recorded and reported once to the Jefatura UGS, never
retried); a 4xx, or no reply at all, is temporary and waits with backoff (``retry_at``)
until ``GIVE_UP_AFTER`` from the mail's creation, when it becomes permanent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import default as default_policy

from mailflow.app.outbound import Composer
from mailflow.store.claims import STOP_SENDING_AFTER, Holder
from mailflow.store.outgoing import due_unclaimed, outbox_rows
from mailflow.store.repository import Store
from mailflow.store.schema import OutboxRow, OutboxStatus
from mailflow.store.unitofwork import Session
from mailflow.transport.smtp import OnResult, Outgoing, Reply, SendResult, SmtpError

log = logging.getLogger("mailflow.app.outbox")

# Results are recorded this many at a time, or as soon as a result arrives this many
# seconds after the last record (a slow server gets a commit per mail): a commit per mail
# would slow a large flush; a commit per batch (200 rows) would make a crash send up to 200
# mails again. Nothing is recorded while the server is still deciding the next mail.
RECORD_EVERY = 20
RECORD_AFTER_SECONDS = 0.25

RETRY_FIRST = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=1)
# Like an MTA's queue lifetime, but shorter: workflow stages are due in one business day,
# so after two days the Jefatura UGS must hear that a mail did not leave.
GIVE_UP_AFTER = timedelta(hours=48)

# Mails whose failure is not reported: the report itself, and the answers that go to
# whoever wrote, proven or not (help, unverified mail, held openings' confirmations and
# their reminders and expiries, files not kept).
UNREPORTED_KINDS = frozenset(
    (
        "delivery_failed",
        "help",
        "unverified",
        "confirm_opening",
        "confirm_expired",
        "files_not_kept",
    )
)

Send = Callable[[Sequence[Outgoing], OnResult], list[SendResult]]


def next_attempt_delay(attempts: int) -> timedelta:
    """Return the wait after ``attempts`` failed tries (1-based): 1, 2, 4 … minutes, at most 1 h."""
    if attempts < 1:
        raise ValueError(f"attempts counts failed tries and starts at 1, not {attempts}")
    # Bounding the exponent keeps a huge attempt count from overflowing timedelta.
    return min(RETRY_FIRST * (1 << min(attempts - 1, 12)), RETRY_CAP)


def retry_at(
    attempts: int,
    first_failure: datetime,
    now: datetime,
    *,
    give_up_after: timedelta = GIVE_UP_AFTER,
) -> datetime | None:
    """Return when to try a temporarily failed mail again, or None to give up on it.

    Giving up is measured from the first temporary failure, not counted in attempts, so a
    daemon that was stopped for a day does not get a fresh two days on its return. A mail
    given up on is then a permanent failure for its recipients.
    """
    if now - first_failure >= give_up_after:
        return None
    return now + next_attempt_delay(attempts)


def is_temporary(reply: Reply) -> bool:
    """Tell whether a refusal may succeed later: a 4xx, or no SMTP reply at all (RFC 5321).

    Anything that is not a clear 5xx (including aiosmtplib's -1 for garbage) is retried.
    """
    return not 500 <= reply.code < 600


@dataclass(frozen=True)
class Verdict:
    """What the outbox makes of one message's result: who has it, who to try again, who never."""

    key: int | str
    accepted: tuple[str, ...]
    temporary: dict[str, str]
    permanent: dict[str, str]
    error: str | None

    @classmethod
    def of(cls, result: SendResult) -> Verdict:
        """Judge each refusal of ``result`` temporary or permanent."""
        temporary: dict[str, str] = {}
        permanent: dict[str, str] = {}
        for recipient, reply in result.refused.items():
            (temporary if is_temporary(reply) else permanent)[recipient] = reply.line
        return cls(result.key, result.accepted, temporary, permanent, result.error)

    @property
    def done(self) -> bool:
        """Tell whether no recipient is left to try again."""
        return not self.temporary

    @property
    def retry_recipients(self) -> tuple[str, ...]:
        """Return the recipients to send the same bytes to on the next attempt."""
        return tuple(self.temporary)


@dataclass(frozen=True)
class FlushReport:
    """How many rows one flush sent, deferred and failed."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0

    def __add__(self, other: FlushReport) -> FlushReport:
        return FlushReport(
            self.sent + other.sent, self.deferred + other.deferred, self.failed + other.failed
        )


class Outbox:
    """Send what is due and keep the rows' state honest."""

    def __init__(
        self,
        store: Store,
        send: Send,
        composer: Composer,
        envelope_from: str,
        report_to: Callable[[datetime], Sequence[str]],
        *,
        holder: Holder | None = None,
    ) -> None:
        self.store = store
        # Who this outbox's claims are made under: the daemon's holder, or one of its own.
        self.holder = holder or Holder(store)
        self.send = send
        self.composer = composer
        self.envelope_from = envelope_from
        self.report_to = report_to
        # Called after each group of results is recorded: the daemon pings systemd's
        # watchdog with it, so a long flush is not taken for a wedged loop.
        self.alive: Callable[[], None] = lambda: None

    def flush(
        self, now: datetime, batch: int = 200, *, only: Collection[int] | None = None
    ) -> FlushReport:
        """Send every due row (of ``only``, when given), ``batch`` at a time; return the counts.

        First the claims of daemons that are gone are released, and so are this holder's
        own, left by a flush of its that failed (its flushes never overlap): their rows
        are sent now with the others.
        """
        total = FlushReport()
        with self.store.transaction() as session:
            holder = self.holder.enter(session)
            self.holder.release_own(session, holder)
            self.holder.take_over(session)
        while self.holder.holding(holder):
            with self.store.transaction() as session:
                holder = self.holder.enter(session)
                rows = due_unclaimed(session, now, batch, only)
                for row in rows:
                    row.claimed_by = holder
                items = [self.composer.outgoing(r, self.envelope_from) for r in rows]
            if not items:
                return total
            report = self._send_and_record(items, now, holder)
            total += report
            if report.sent == 0 and report.failed == 0:
                return total  # the server is refusing everything now; try later
        log.error(
            "outbox: stopped sending: this daemon's claims are no longer its own (not "
            "renewed for %.0f s: the store is unreachable or too slow; or taken for gone); "
            "trying again on the next pass",
            STOP_SENDING_AFTER.total_seconds(),
        )
        return total

    def _send_and_record(self, items: list[Outgoing], now: datetime, holder: str) -> FlushReport:
        """Send one claimed batch, recording results in groups as the server decides them.

        The batch stops early, everything decided recorded, once this daemon could not
        renew its claims for a while: another daemon may then take it for gone.
        """
        recorded: set[int | str] = set()
        group: list[SendResult] = []
        report = FlushReport()
        started = time.monotonic()

        def record(results: list[SendResult]) -> None:
            nonlocal report, started
            report += self._record(results, now, holder)
            recorded.update(result.key for result in results)
            started = time.monotonic()
            self.alive()

        def on_result(result: SendResult) -> None:
            group.append(result)
            if len(group) >= RECORD_EVERY or time.monotonic() - started >= RECORD_AFTER_SECONDS:
                record(group)
                group.clear()
            if not self.holder.holding(holder):
                record(group)
                group.clear()
                raise _ClaimLostError

        try:
            results = self.send(items, on_result)
        except SmtpError as exc:
            # A configuration failure (login, TLS) may come after some mails left:
            # record those first, so that none is sent twice, then let the operator know.
            record([r for r in exc.results if r.key not in recorded])
            raise
        except _ClaimLostError:
            # What was not decided stays claimed: released by our next flush, or by the
            # daemon that took us for gone.
            return report
        record([r for r in results if r.key not in recorded])
        return report

    def _record(self, results: list[SendResult], now: datetime, holder: str) -> FlushReport:
        """Record each result in its row and end its claim, in one transaction (which also
        renews the holder's heartbeat); return the counts."""
        if not results:
            return FlushReport()
        sent = deferred = failed = 0
        with self.store.transaction() as session:
            self.holder.enter(session)
            # One query for the batch, not one per result.
            keys = [result.key for result in results]
            found = outbox_rows(session, keys)
            by_key: dict[int | str, OutboxRow] = {row.id: row for row in found}
            for result in map(Verdict.of, results):
                row = by_key.get(result.key)
                if row is None:
                    continue
                if row.claimed_by == holder:  # else released meanwhile, maybe claimed again
                    row.claimed_by = None
                row.attempts += 1
                if result.done:
                    if result.permanent:
                        self._report_failure(session, row, result, now)
                    row.status = OutboxStatus.SENT if result.accepted else OutboxStatus.FAILED
                    row.sent_at = now if result.accepted else None
                    sent += bool(result.accepted)
                    failed += not result.accepted
                    continue
                row.recipients = list(result.retry_recipients)
                row.last_error = _describe(result)
                when = retry_at(row.attempts, row.created_at, now)
                # One report per row and attempt: a give-up that comes with a 5xx for another
                # recipient is one notice listing both, not two.
                if when is None:
                    row.status = OutboxStatus.FAILED
                    self._report_failure(session, row, result, now)
                    failed += 1
                else:
                    if result.permanent:
                        self._report_failure(session, row, result, now)
                    row.next_attempt_at = when
                    deferred += 1
                log.warning(
                    "outbox #%s %s: %s",
                    row.id,
                    row.message_id,
                    row.last_error,
                    extra={
                        "outbox_id": row.id,
                        "message_id": row.message_id,
                        "outcome": "deferred",
                    },
                )
            session.flush()
        return FlushReport(sent, deferred, failed)

    def _report_failure(
        self, session: Session, row: OutboxRow, result: Verdict, now: datetime
    ) -> None:
        """Queue one notice to the Jefatura UGS about a mail that cannot be delivered."""
        row.last_error = _describe(result)
        log.error(
            "outbox #%s %s undeliverable: %s",
            row.id,
            row.message_id,
            row.last_error,
            extra={"outbox_id": row.id, "message_id": row.message_id, "outcome": "failed"},
        )
        if row.kind in UNREPORTED_KINDS:
            # Never report the failure of a report (a loop), nor of answers to whoever
            # wrote: spoofed senders at made-up addresses would flood the Jefatura UGS.
            return
        recipients = ", ".join({**result.permanent, **result.temporary}) or "?"
        context = {
            "problems": [f"{recipients}: {row.last_error}"],
            "original_subject": _subject(self.composer.head_of(row)) or row.kind,
            "form": False,
            "request": None,
        }
        session.add_all(
            self.composer.rows(
                "delivery_failed",
                self.report_to(now),
                [],
                context=context,
                code=None,
                stage=0,
                references=[row.message_id],
                now=now,
                request_id=row.request_id,
            )
        )


class _ClaimLostError(Exception):
    """This daemon could not renew its claims: it must stop sending before others take them."""


def _subject(raw: bytes) -> str:
    """Return the Subject of a rendered mail, so the notice says which mail it was."""
    headers = BytesHeaderParser(policy=default_policy).parsebytes(raw)
    return " ".join(str(headers.get("Subject", "")).split())


def _describe(result: Verdict) -> str:
    parts = [f"{who}: {why}" for who, why in {**result.permanent, **result.temporary}.items()]
    if result.error:
        parts.append(result.error)
    return "; ".join(parts)[:2000]
