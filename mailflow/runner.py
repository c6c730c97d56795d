"""The daemon's loop: catch up on the mailbox, handle each message, flush the outbox, wait.

IDLE is only a wake-up signal; every wake-up (and every reconnect) is followed by a UID
search from the last UID recorded, so a missed notification costs a little latency,
never a message. A message that makes the service fail is quarantined in the ledger and
the loop goes on (Mailman's runner); only a broken archive stops intake.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError

from mailflow.archive import ArchiveError
from mailflow.dbschema import InboundOutcome, InboundRow
from mailflow.imap import ImapError, ImapSource, ImapUnavailableError, Reconnector
from mailflow.outbox import FlushReport, Outbox
from mailflow.repository import Store, get_mailbox_state, ledger_seen, set_mailbox_state
from mailflow.scheduler import Scheduler
from mailflow.service import Incoming, Service
from mailflow.smtp import SmtpError

log = logging.getLogger("mailflow.runner")

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class PassReport:
    """What one pass did."""

    handled: int
    outcomes: dict[str, int]
    outbox: FlushReport


class Runner:
    """Drive one mailbox through the service; one thread, one IMAP connection."""

    def __init__(
        self,
        service: Service,
        store: Store,
        source: ImapSource,
        outbox: Outbox,
        clock: Clock,
        *,
        processed_folder: str | None = None,
        wait_seconds: float = 60.0,
        scheduler: Scheduler | None = None,
        retry_seconds: float = 30.0,
    ) -> None:
        self.service = service
        self.store = store
        self.source = source
        self.outbox = outbox
        self.clock = clock
        self.processed_folder = processed_folder
        # The longest wait without a pass: deferred outbox rows (retries are due 1 min or
        # more after a failure) are sent by the pass that follows a quiet wait.
        self.wait_seconds = wait_seconds
        # Reminders, escalations, digests and window ends due at the pass's clock.
        self.scheduler = scheduler
        # The pause before a pass interrupted by passing trouble (database, SMTP, archive)
        # is tried again.
        self.retry_seconds = retry_seconds
        self._archive_down = False
        self.stopping = threading.Event()
        self._waiting = False
        self._loop_thread: int | None = None
        self._stop_reason = ""

    def catch_up(self) -> PassReport:
        """Handle every message after the last recorded UID, then flush the outbox."""
        mailbox = self.source.mailbox
        with self.store.transaction() as session:
            position = get_mailbox_state(session, mailbox)
        uidvalidity = self.source.uidvalidity
        last_uid = 0
        if position is not None and position.uidvalidity == uidvalidity:
            last_uid = position.last_uid
        elif position is not None:
            # The server renumbered the folder: rescan it; the ledger and Message-IDs dedupe.
            log.warning("IMAP %s: UIDVALIDITY changed, rescanning the folder", mailbox)
        outcomes: dict[str, int] = {}
        done: list[int] = []
        for fetched in self.source.fetch_after(last_uid):
            item = Incoming(fetched.mailbox, fetched.uidvalidity, fetched.uid, fetched.raw)
            outcome = self._handle(item)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            self._save_position(mailbox, fetched.uidvalidity, fetched.uid)
            done.append(fetched.uid)
            if self.stopping.is_set():
                break
        if self.processed_folder and done:
            self.source.move(done, self.processed_folder)  # only after every commit
        if self.scheduler is not None:
            self.scheduler.run_due(self.clock())
        report = self.outbox.flush(self.clock())
        return PassReport(len(done), outcomes, report)

    def _save_position(self, mailbox: str, uidvalidity: int, uid: int) -> None:
        """Record the last UID handled. Two daemons starting on a new store may both insert
        the folder's first row: the loser's IntegrityError (which used to kill it) means the
        row now exists, so the update is simply made again."""
        for attempt in (1, 2):
            try:
                with self.store.transaction() as session:
                    set_mailbox_state(session, mailbox, uidvalidity, uid)
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    def _handle(self, item: Incoming) -> str:
        try:
            return self.service.handle(item, self.clock()).outcome
        except (ArchiveError, ImapError, OperationalError, StaleDataError):
            # Passing trouble (database busy or restarting, a concurrent update): the
            # position is not advanced, so the message is handled on a later pass.
            raise
        except Exception as exc:
            log.exception("uid=%s could not be processed; quarantined", item.uid)
            self._quarantine(item, f"{type(exc).__name__}: {exc}")
            return InboundOutcome.QUARANTINED

    def _quarantine(self, item: Incoming, reason: str) -> None:
        """Record a message that broke the service so it is kept, visible and not retried."""
        now = self.clock()
        with self.store.transaction() as session:
            if ledger_seen(session, item.mailbox, item.uidvalidity, item.uid):
                return
            session.add(
                InboundRow(
                    mailbox=item.mailbox,
                    uidvalidity=item.uidvalidity,
                    uid=item.uid,
                    sha256=hashlib.sha256(item.raw).hexdigest(),
                    received_at=now,
                    processed_at=now,
                    outcome=InboundOutcome.QUARANTINED,
                    detail=reason[:2000],
                )
            )

    def run_once(self) -> PassReport:
        """Connect, catch up, flush, disconnect."""
        self.source.connect()
        try:
            return self.catch_up()
        finally:
            self.source.close()

    def run_forever(self, on_ready: Callable[[], None] = lambda: None) -> None:
        """Run until stop() (SIGTERM): wait for mail with IDLE, catch up, flush, repeat."""
        self._loop_thread = threading.get_ident()
        # Not stopping.wait as the sleep: a signal handler calling stopping.set() while this
        # thread holds the Event's (non-reentrant) lock inside wait() would deadlock.
        reconnector = Reconnector(self.source, sleep=self._pause)
        ready = False
        while not self.stopping.is_set():
            try:
                if not self.source.connected:
                    reconnector.connect()
                self.catch_up()
                if self._archive_down:
                    self._archive_down = False
                    log.warning("the archive takes files again: taking new mail again")
                if not ready:
                    on_ready()
                    ready = True
                self._interruptible(lambda: self.source.wait(timeout=self.wait_seconds))
            except ImapUnavailableError as exc:
                if self.stopping.is_set():
                    break
                log.warning("IMAP connection lost: %s", exc)
                self.source.close()
            except (OperationalError, StaleDataError, SmtpError) as exc:
                # Ride out what comes back by itself; messages stay on the server and
                # the outbox keeps its rows, so nothing is lost while we wait.
                log.error("pass interrupted, retrying in %g s: %s", self.retry_seconds, exc)
                self._interruptible(lambda: time.sleep(self.retry_seconds))
            except ArchiveError as exc:
                # Disk full or not writable: a message is never handled without its archived
                # copy, so new mail stays on the server, unprocessed (not quarantined), and
                # is taken once space returns. Mail already committed still goes out.
                if not self._archive_down:
                    self._archive_down = True
                    log.critical(
                        "%s. New mail is NOT being processed: it stays on the IMAP server "
                        "until the archive can take it. Free space (or fix permissions) "
                        "there; mailflow retries every %g s and catches up by itself.",
                        exc,
                        self.retry_seconds,
                    )
                else:
                    log.warning(
                        "archive still failing, retrying in %g s: %s", self.retry_seconds, exc
                    )
                self._flush_quietly()
                self._interruptible(lambda: time.sleep(self.retry_seconds))
        if self._stop_reason:
            log.info("%s received, stopping", self._stop_reason)
        self.source.close()
        log.info("stopped")

    def _pause(self, seconds: float) -> bool:
        """Sleep between reconnect attempts; return True when asked to stop.

        The outbox does not need IMAP: deferred rows are still retried while it is down.
        """
        self._flush_quietly()
        self._interruptible(lambda: time.sleep(seconds))
        return self.stopping.is_set()

    def _flush_quietly(self) -> None:
        """Send what is committed while intake cannot run; log what stops it."""
        try:
            self.outbox.flush(self.clock())
        except (OperationalError, SmtpError) as exc:
            log.error("outbox not flushed: %s", exc)

    def _interruptible(self, block: Callable[[], object]) -> None:
        """Run a blocking wait (IDLE, a sleep) that stop() may cut short by raising.

        Only these waits are ever interrupted: the flag is raised inside the outer try and
        lowered on every way out (an IMAP error included), so _StopWaiting can never escape
        from here, nor hit a database transaction or a message half-handled.
        """
        try:
            self._waiting = True
            try:
                if not self.stopping.is_set():  # stop() came just before the flag went up
                    block()
            finally:
                self._waiting = False
        except _StopWaiting:
            self._waiting = False  # the signal may have come before the finally's line

    def stop(self, *_: object) -> None:
        """Ask the loop to stop after the message at hand; interrupt a wait at once.

        Raises only in the loop's own thread (a signal handler interrupting it) and only
        the first time: a second signal must not escape from the handler of the first.
        """
        first = not self.stopping.is_set()
        self.stopping.set()
        if first and self._waiting and threading.get_ident() == self._loop_thread:
            raise _StopWaiting

    def install_signal_handlers(self) -> None:
        """Stop cleanly on SIGTERM and SIGINT."""

        def handler(signum: int, frame: FrameType | None) -> None:
            # No logging here: writing to stderr from a handler that interrupted another
            # write raises "reentrant call" at an arbitrary point; run_forever logs it.
            self._stop_reason = self._stop_reason or signal.Signals(signum).name
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


class _StopWaiting(BaseException):
    """Raised from the signal handler to leave a blocking IDLE at once.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` (or
    ``suppress(Exception)``) on the way up can swallow it and leave the loop waiting.
    """


def offset_clock(start: datetime | None) -> Clock:
    """Return the real clock, or one that starts at ``start`` and runs at real speed."""
    if start is None:
        zone = None
        return lambda: datetime.now(zone).astimezone()
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)
