"""Flush the transactional outbox: send due rows, record each outcome, report failures.

A row is marked sent only after the SMTP server accepted it, in its own transaction; a
crash in between sends the same bytes (same Message-ID) again, the only repeat allowed.
Results are recorded while the batch is still being sent, a few at a time, so that a crash
repeats at most the last few mails rather than the whole batch.
Temporary failures wait with backoff; permanent ones are recorded and reported once to
the Jefatura UGS, never retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import default as default_policy

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.app.outbound import Composer
from mailflow.store.repository import Store
from mailflow.store.schema import OutboxRow, OutboxStatus
from mailflow.transport.smtp import OnResult, Outgoing, SendResult, SmtpError, retry_at

log = logging.getLogger("mailflow.app.outbox")

# How long a row taken for sending stays out of other flushes' reach. Longer than any batch
# can take; if the sender dies in between, the row is simply sent again after it (same bytes).
CLAIM_FOR = timedelta(minutes=15)
# Results are recorded this many at a time, or as soon as a result arrives this many
# seconds after the last record (a slow server gets a commit per mail): a commit per mail
# would slow a large flush; a commit per batch (200 rows) would make a crash send up to 200
# mails again. Nothing is recorded while the server is still deciding the next mail.
RECORD_EVERY = 20
RECORD_AFTER_SECONDS = 0.25

Send = Callable[[Sequence[Outgoing], OnResult], list[SendResult]]


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
    ) -> None:
        self.store = store
        self.send = send
        self.composer = composer
        self.envelope_from = envelope_from
        self.report_to = report_to
        # Called after each group of results is recorded: the daemon pings systemd's
        # watchdog with it, so a long flush is not taken for a wedged loop.
        self.alive: Callable[[], None] = lambda: None

    def flush(self, now: datetime, batch: int = 200) -> FlushReport:
        """Send every due row, ``batch`` at a time; return the counts."""
        total = FlushReport()
        while True:
            with self.store.transaction() as session:
                rows = session.scalars(
                    select(OutboxRow)
                    .where(OutboxRow.status == OutboxStatus.PENDING)
                    .where(OutboxRow.next_attempt_at <= now)
                    .order_by(OutboxRow.id)
                    .limit(batch)
                    # Several daemons may share a PostgreSQL store (DESIGN §5): each row is
                    # claimed by one flush (locked now, then pushed past `now`), never sent
                    # by two. SQLite ignores the clause; its BEGIN IMMEDIATE serializes.
                    .with_for_update(skip_locked=True)
                ).all()
                for row in rows:
                    row.next_attempt_at = now + CLAIM_FOR
                items = [self.composer.outgoing(r, self.envelope_from) for r in rows]
            if not items:
                return total
            report = self._send_and_record(items, now)
            total += report
            if report.sent == 0 and report.failed == 0:
                return total  # the server is refusing everything now; try later

    def _send_and_record(self, items: list[Outgoing], now: datetime) -> FlushReport:
        """Send one claimed batch, recording results in groups as the server decides them."""
        recorded: set[int | str] = set()
        group: list[SendResult] = []
        report = FlushReport()
        started = time.monotonic()

        def record(results: list[SendResult]) -> None:
            nonlocal report, started
            report += self._record(results, now)
            recorded.update(result.key for result in results)
            started = time.monotonic()
            self.alive()

        def on_result(result: SendResult) -> None:
            group.append(result)
            if len(group) >= RECORD_EVERY or time.monotonic() - started >= RECORD_AFTER_SECONDS:
                record(group)
                group.clear()

        try:
            results = self.send(items, on_result)
        except SmtpError as exc:
            # A configuration failure (login, TLS) may come after some mails left:
            # record those first, so that none is sent twice, then let the operator know.
            record([r for r in exc.results if r.key not in recorded])
            raise
        record([r for r in results if r.key not in recorded])
        return report

    def _record(self, results: list[SendResult], now: datetime) -> FlushReport:
        """Record each result in its row, in one transaction; return the counts."""
        if not results:
            return FlushReport()
        sent = deferred = failed = 0
        with self.store.transaction() as session:
            # One query for the batch, not one per result.
            keys = [result.key for result in results]
            found = session.scalars(select(OutboxRow).where(OutboxRow.id.in_(keys))).all()
            by_key: dict[int | str, OutboxRow] = {row.id: row for row in found}
            for result in results:
                row = by_key.get(result.key)
                if row is None:
                    continue
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
        self, session: Session, row: OutboxRow, result: SendResult, now: datetime
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
        if row.kind in ("delivery_failed", "help"):
            # Never report the failure of a report (a loop), nor of help to strangers:
            # spoofed senders at made-up addresses would flood the Jefatura UGS.
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


def _subject(raw: bytes) -> str:
    """Return the Subject of a rendered mail, so the notice says which mail it was."""
    headers = BytesHeaderParser(policy=default_policy).parsebytes(raw)
    return " ".join(str(headers.get("Subject", "")).split())


def _describe(result: SendResult) -> str:
    parts = [f"{who}: {why}" for who, why in {**result.permanent, **result.temporary}.items()]
    if result.error:
        parts.append(result.error)
    return "; ".join(parts)[:2000]
