"""The daemon's loop: catch up on the mailbox, handle each message, flush the outbox, wait.

IDLE is only a wake-up signal; every wake-up (and every reconnect) is followed by a UID
search from the last UID recorded, so a missed notification costs a little latency,
never a message. A message that makes the service fail is quarantined in the ledger and
the loop goes on (Mailman's runner); only a broken archive stops intake.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType
from typing import Any, NamedTuple

from mailflow.app.outbox import FlushReport, Outbox
from mailflow.app.service import Done, Incoming, Service
from mailflow.daemon.presence import CHECK_EVERY, Presence
from mailflow.jobs.scheduler import Scheduler
from mailflow.mail.spool import Spooled, size_of
from mailflow.ops.health import Heartbeat
from mailflow.ops.sd_notify import Notifier
from mailflow.store.archive import ArchiveError
from mailflow.store.mailbox import quarantine, save_position
from mailflow.store.repository import Store, get_mailbox_state, record_gaps
from mailflow.store.schema import InboundOutcome
from mailflow.store.unitofwork import (
    PASSING,
    UNAVAILABLE,
    Session,
    deadlocked,
    savepoint,
)
from mailflow.transport.imap import (
    Fetched,
    ImapError,
    ImapSource,
    ImapUnavailableError,
    Reconnector,
)
from mailflow.transport.smtp import SmtpError

log = logging.getLogger("mailflow.daemon.runner")

# A backlog is handled in groups of messages, each in one transaction (see Runner._group):
# at most this many messages, bytes (a spooled message ends a group) or seconds, and only
# those one round trip to the server fetched.
GROUP_MESSAGES = 50
GROUP_BYTES = 16 * 1024 * 1024
GROUP_SECONDS = 0.5
# How many times a deadlocked group is handled again at once before the pass gives up.
DEADLOCK_RETRIES = 2

Clock = Callable[[], datetime]

# Passing trouble: a message that meets it is not quarantined, its group rolls back
# (GROUP), a pass is tried again after a pause (PASS), a flush is left to the next (FLUSH).
_GROUP_TROUBLE: tuple[type[Exception], ...] = (ArchiveError, ImapError, *PASSING)
_PASS_TROUBLE: tuple[type[Exception], ...] = (*PASSING, SmtpError)
_FLUSH_TROUBLE: tuple[type[Exception], ...] = (*UNAVAILABLE, SmtpError)


@dataclass(frozen=True)
class PassReport:
    """What one pass did."""

    handled: int
    outcomes: dict[str, int]
    outbox: FlushReport


@dataclass(frozen=True)
class Wiring:
    """What a runner drives, built by :mod:`mailflow.daemon.runtime` (the composition root).

    A SIGHUP reload hands the running loop a new one (:meth:`Runner.rewire`).
    """

    service: Service
    store: Store
    source: ImapSource
    outbox: Outbox
    scheduler: Scheduler | None = None
    processed_folder: str | None = None
    report_gaps: bool = True


class _Result(NamedTuple):
    """One message of a group: its outcome, and its service log line (None: quarantined).

    ``trouble`` is the traceback of a quarantined message, logged once the group commits.
    """

    item: Incoming
    outcome: str
    logged: Done | None
    trouble: str = ""


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
        notifier: Notifier | None = None,
        heartbeat: Heartbeat | None = None,
        presence: Presence | None = None,
        retry_seconds: float = 30.0,
        report_gaps: bool = True,
    ) -> None:
        self.service = service
        self.store = store
        self.source = source
        self.outbox = outbox
        outbox.alive = self._alive  # a long flush pings the watchdog between groups
        self.clock = clock
        self.processed_folder = processed_folder
        # Record the UIDs that vanished before they were fetched (see _record_gaps).
        self.report_gaps = report_gaps
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
        # systemd's notify socket and watchdog (a no-op outside systemd), and the heartbeat
        # row `mailflow status` reads; both are fed only from this loop's thread, so a
        # wedged loop stops pinging and systemd restarts it.
        self.notifier = notifier or Notifier({})
        self.heartbeat = heartbeat
        # This daemon's claims in the store, renewed by a thread of their own, and the mail
        # it takes over from daemons that are gone (sent between groups and wait slices).
        self.presence = presence
        # SIGHUP: run_forever calls on_reload(self) between messages, never inside one.
        self.reload_requested = False
        self.on_reload: Callable[[Runner], None] | None = None
        self._last_handled: tuple[str, int, int, str] | None = None
        self._beat_at = float("-inf")
        self._waiting = False
        self._loop_thread: int | None = None
        self._stop_reason = ""

    @classmethod
    def wired(cls, wiring: Wiring, clock: Clock, **options: Any) -> Runner:
        """Return a runner over ``wiring``; ``options`` as for the constructor."""
        return cls(
            wiring.service,
            wiring.store,
            wiring.source,
            wiring.outbox,
            clock,
            processed_folder=wiring.processed_folder,
            scheduler=wiring.scheduler,
            report_gaps=wiring.report_gaps,
            **options,
        )

    def rewire(self, wiring: Wiring) -> None:
        """Drive new adapters from the next pass on (a SIGHUP reload, between messages).

        The old IMAP connection is closed; the loop logs in again with the new settings.
        The new outbox pings this loop's watchdog during a long flush, as the old one did.
        """
        self.source.close()
        wiring.outbox.alive = self._alive
        # One holder for the daemon's whole life: the claims it made stay its own, and its
        # presence keeps beating for them, now through the new store.
        wiring.outbox.holder = self.outbox.holder
        wiring.outbox.holder.store = wiring.store
        self.service, self.store, self.source = wiring.service, wiring.store, wiring.source
        self.outbox, self.scheduler = wiring.outbox, wiring.scheduler
        self.processed_folder, self.report_gaps = wiring.processed_folder, wiring.report_gaps

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
        # A large message is spooled next to the archive it will be copied into.
        spool = self.service.archive.scratch
        # Gaps are meaningful only above a position read from this very UIDVALIDITY.
        gaps = self.report_gaps and last_uid > 0
        fetched = iter(self.source.fetch_after(last_uid, spool_dir=spool, gaps=gaps))
        complete = False
        try:
            while not self.stopping.is_set():
                group = self._group(mailbox, fetched)
                if not group:
                    complete = True
                    break
                for result in group:
                    _log_committed(result)
                    outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
                    done.append(result.item.uid)
                last = group[-1]
                self._last_handled = (
                    last.item.mailbox,
                    last.item.uidvalidity,
                    last.item.uid,
                    last.outcome,
                )
                self._alive()
                self._take_over()  # a long backlog must not hold up a dead daemon's mail
        finally:
            # Only committed groups are in ``done``. They are moved even when a later group
            # failed: the position is already past them, so they would never be moved.
            self._move(done)
        if gaps:
            self._record_gaps(mailbox, uidvalidity, done if not complete else None)
        if self.scheduler is not None:
            self.scheduler.run_due(self.clock())
        report = self.outbox.flush(self.clock())
        return PassReport(len(done), outcomes, report)

    def _record_gaps(self, mailbox: str, uidvalidity: int, done: list[int] | None) -> None:
        """Record the UIDs this pass found gone: moved or deleted before they were fetched.

        ``done``: the UIDs handled, when the pass stopped early; only the gaps below them
        are sure (the next pass reads the rest again and finds the others).
        """
        missing = self.source.missing
        if done is not None:
            missing = [uid for uid in missing if uid < max(done, default=0)]
        if not missing:
            return
        with self.store.transaction() as session:
            recorded = record_gaps(session, mailbox, uidvalidity, missing, self.clock())
        for uid in recorded:
            log.warning(
                "IMAP %s: UID %d disappeared before mailflow fetched it (moved or deleted by "
                "someone else): it was not processed",
                mailbox,
                uid,
                extra={"uid": uid, "mailbox": mailbox, "outcome": "gap"},
            )

    def _move(self, uids: list[int]) -> None:
        """Move handled messages to ``processed_folder`` (when set); never raise."""
        if not (self.processed_folder and uids):
            return
        try:
            self.source.move(uids, self.processed_folder)
        except Exception as exc:  # they are handled and recorded; only their folder is off
            log.warning(
                "IMAP: %d handled message(s) not moved to %s: %s",
                len(uids),
                self.processed_folder,
                exc,
            )

    def _group(self, mailbox: str, fetched: Iterator[Fetched]) -> list[_Result]:
        """Handle the next group of fetched messages in one transaction; [] when none is left.

        A message used to cost a durable commit and the archive's two flushes (and its
        own fsyncs) of its own; a group shares them. Each message has its own savepoint, so one that
        breaks is quarantined alone. A deadlock (several daemons on PostgreSQL) rolls the
        whole group back: it is handled again at once from the messages already fetched.
        """
        items: list[Incoming] = []
        for attempt in range(1, DEADLOCK_RETRIES + 2):
            try:
                return self._handle_group(mailbox, items, fetched if attempt == 1 else None)
            except UNAVAILABLE as exc:
                if not deadlocked(exc) or attempt > DEADLOCK_RETRIES or not items:
                    raise
                log.warning("group of %d message(s) deadlocked, handling it again", len(items))
        raise AssertionError("unreachable")

    def _handle_group(
        self, mailbox: str, items: list[Incoming], more: Iterator[Fetched] | None
    ) -> list[_Result]:
        """Handle ``items`` (a retry), or else the next fetched message and those fetched
        with it, until the group is full; commit them with the mailbox position.

        A group takes only messages already fetched once its transaction is open: the
        next round trip to the server (a batch of small messages, or a large one fetched
        in pieces) is made by the next group, before it opens its own, so no wait on the
        network holds the database's write lock or row locks. Fetched messages join
        ``items``.
        """
        got = next(more, None) if more is not None and not items else None
        if got is not None:
            items.append(Incoming(got.mailbox, got.uidvalidity, got.uid, got.raw))
        if not items:
            return []
        results: list[_Result] = []
        started = time.monotonic()
        # The batch ends before the transaction: the group's files (its messages, the
        # mails they send) are archived durably before the commit that refers to them.
        with self.store.transaction() as session, self.service.archive.batch():
            for item in list(items):
                results.append(self._handle(session, item))
                self.notifier.watchdog()  # only the watchdog: a heartbeat row would wait
            while more is not None and self._room(items, started) and self.source.ahead:
                got = next(more, None)
                if got is None:
                    break
                item = Incoming(got.mailbox, got.uidvalidity, got.uid, got.raw)
                items.append(item)
                results.append(self._handle(session, item))
                self.notifier.watchdog()
            # The position only saves fetching again (the ledger makes a message handled
            # once); it is saved with the group, so it never runs ahead of it.
            save_position(session, mailbox, items[-1].uidvalidity, items[-1].uid)
        return results

    def _room(self, items: list[Incoming], started: float) -> bool:
        """Tell whether a group may take one more message (SIGTERM ends it at once)."""
        return not (
            self.stopping.is_set()
            or isinstance(items[-1].raw, Spooled)
            or len(items) >= GROUP_MESSAGES
            or sum(size_of(item.raw) for item in items) >= GROUP_BYTES
            or time.monotonic() - started >= GROUP_SECONDS
        )

    def _handle(self, session: Session, item: Incoming) -> _Result:
        """Handle one message of a group inside its own savepoint."""
        try:
            # A fresh identity map per message, as when each had a session of its own: the
            # rows of the group's earlier messages stay readable, detached.
            with savepoint(session, fresh=True):
                done = self.service.handle_in(session, item, self.clock())
        except _GROUP_TROUBLE:
            # Passing trouble (database busy or restarting, a concurrent update): the whole
            # group rolls back and the position stays, so it is handled on a later pass.
            raise
        except Exception as exc:
            # Logged once the group commits: a group rolled back quarantines nothing.
            trouble = traceback.format_exc()
            self._quarantine(session, item, f"{type(exc).__name__}: {exc}")
            return _Result(item, InboundOutcome.QUARANTINED, None, trouble)
        return _Result(item, done.result.outcome, done)

    def _quarantine(self, session: Session, item: Incoming, reason: str) -> None:
        """Record a message that broke the service so it is kept, visible and not retried."""
        now = self.clock()
        quarantine(
            session,
            item.mailbox,
            item.uidvalidity,
            item.uid,
            lambda: item.ledger_row(now, InboundOutcome.QUARANTINED, reason[:2000]),
        )

    def run_once(self) -> PassReport:
        """Connect, catch up, flush, disconnect."""
        self._start_presence()
        try:
            self.source.connect()
            try:
                return self.catch_up()
            finally:
                self.source.close()
        finally:
            if self.presence is not None:
                self.presence.stop()

    def run_forever(self, on_ready: Callable[[], None] = lambda: None) -> None:
        """Run until stop() (SIGTERM): wait for mail with IDLE, catch up, flush, repeat."""
        self._loop_thread = threading.get_ident()
        # Not stopping.wait as the sleep: a signal handler calling stopping.set() while this
        # thread holds the Event's (non-reentrant) lock inside wait() would deadlock.
        reconnector = Reconnector(self.source, sleep=self._pause)
        ready = False
        if self.heartbeat is not None:
            self.heartbeat.started()
        self._start_presence()
        while not self.stopping.is_set():
            try:
                if self.reload_requested:
                    self._reload()
                    # A fresh one: logging in again after a reload is not a flapping link.
                    reconnector = Reconnector(self.source, sleep=self._pause)
                if not self.source.connected:
                    self.notifier.status(f"connecting to IMAP {self.source.where}")
                    reconnector.connect()
                self._alive(force=True)
                report = self.catch_up()
                self._alive(force=True)
                self._archive_back()
                if not ready:
                    ready = self._become_ready(on_ready)
                self.notifier.status(_status_line(report))
                self._wait()
            except ImapUnavailableError as exc:
                if self.stopping.is_set():
                    break
                log.warning("IMAP connection lost: %s", exc)
                self.source.close()
            except _PASS_TROUBLE as exc:
                # Ride out what comes back by itself; messages stay on the server and
                # the outbox keeps its rows, so nothing is lost while we wait.
                log.error("pass interrupted, retrying in %g s: %s", self.retry_seconds, exc)
                self.notifier.status(f"pass interrupted, retrying: {exc}"[:200])
                self._sleep(self.retry_seconds)
            except ArchiveError as exc:
                if not ready:  # started on a full disk: say so instead of timing out
                    ready = self._become_ready(on_ready)
                self._archive_failed(exc)  # its STATUS line replaces "watching"
        self._shut_down()

    def _shut_down(self) -> None:
        """Leave cleanly: tell systemd, log out, give up this daemon's claims, say stopped."""
        if self._stop_reason:
            log.info("%s received, stopping", self._stop_reason)
        self.notifier.stopping()
        self.source.close()
        if self.presence is not None:
            self.presence.stop()
        if self.heartbeat is not None:
            self.heartbeat.stopped()
        log.info("stopped")

    def _start_presence(self) -> None:
        """Register this daemon; send at once what daemons that are gone had claimed."""
        if self.presence is None:
            return
        self.presence.start()
        self._take_over()

    def _take_over(self) -> None:
        """Send the mails the presence released from daemons that are gone, if any."""
        if self.presence is None:
            return
        self.presence.make_way()  # a beat under way may be releasing some right now
        if not self.presence.pending:
            return
        taken = self.presence.released()
        log.info("sending %d mail(s) claimed by a daemon that is gone", len(taken))
        self._flush_quietly(only=taken)

    def _slice(self, seconds: float) -> float:
        """Return how long one slice of a wait may last: the watchdog's and takeovers' due."""
        slice_ = self.notifier.ping_interval(seconds)
        if self.presence is not None and self.presence.crowded:
            slice_ = min(slice_, CHECK_EVERY)
        return slice_

    def _become_ready(self, on_ready: Callable[[], None]) -> bool:
        on_ready()
        self.notifier.ready(f"watching {self.source.where}")
        return True

    def _archive_failed(self, exc: ArchiveError) -> None:
        """Disk full or not writable: leave new mail on the server, say so once, retry.

        A message is never handled without its archived copy, so new mail stays on the
        server, unprocessed (not quarantined), and is taken once space returns. Mail
        already committed still goes out.
        """
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
            log.warning("archive still failing, retrying in %g s: %s", self.retry_seconds, exc)
        self.notifier.status(f"ARCHIVE FAILING, new mail waits on the server: {exc}"[:200])
        self._flush_quietly()
        self._sleep(self.retry_seconds)

    def _archive_back(self) -> None:
        if self._archive_down:
            self._archive_down = False
            log.warning("the archive takes files again: taking new mail again")

    def _wait(self) -> None:
        """Wait for mail up to ``wait_seconds``, in slices short enough to ping the watchdog."""
        deadline = time.monotonic() + self.wait_seconds
        slice_ = self._slice(self.wait_seconds)
        while not (self.stopping.is_set() or self.reload_requested):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            woke: list[bool] = []
            self._interruptible(
                lambda: woke.append(self.source.wait(timeout=min(left, slice_)))  # noqa: B023
            )
            if woke and woke[0]:
                if self.heartbeat is not None:
                    self.heartbeat.woke()
                return
            self._alive()
            self._take_over()

    def _sleep(self, seconds: float) -> None:
        """Sleep (a back-off) in slices, pinging the watchdog; stop() or SIGHUP cut it short."""
        deadline = time.monotonic() + seconds
        slice_ = self._slice(seconds)
        while not (self.stopping.is_set() or self.reload_requested):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._alive()
            self._take_over()
            self._interruptible(lambda: time.sleep(min(left, slice_)))  # noqa: B023

    def _alive(self, force: bool = False) -> None:
        """Ping the watchdog; write the heartbeat row every few seconds and after a pass.

        Not per message: a database write per message would cost the backlog's speed.
        """
        self.notifier.watchdog(force=force)
        if self.heartbeat is None:
            return
        now = time.monotonic()
        due = now - self._beat_at >= 5.0
        if self._last_handled is not None and (force or due):
            self.heartbeat.handled(*self._last_handled)
            self._last_handled = None
            self._beat_at = now
        elif due or self.heartbeat.connected != self.source.connected:
            self.heartbeat.beat(self.source.connected)
            self._beat_at = now

    def _reload(self) -> None:
        """Apply SIGHUP: re-read the configuration between messages; keep the old on error."""
        self.reload_requested = False
        self.notifier.reloading()
        log.info("SIGHUP received, reloading the configuration")
        # The signal may have cut an IDLE short, leaving the connection mid-command: log
        # out and in again (with the new [imap] settings, if the reload succeeds).
        self.source.close()
        try:
            if self.on_reload is not None:
                self.on_reload(self)
        finally:
            self.notifier.ready(f"watching {self.source.where}")

    def _pause(self, seconds: float) -> bool:
        """Sleep between reconnect attempts; return True when asked to stop.

        The outbox does not need IMAP: deferred rows are still retried while it is down.
        """
        self._flush_quietly()
        self._sleep(seconds)
        # A reload stops the attempts with the old settings; the loop retries with the new.
        return self.stopping.is_set() or self.reload_requested

    def _flush_quietly(self, only: set[int] | None = None) -> None:
        """Send what is committed (of ``only``) while intake cannot run; log what stops it."""
        try:
            self.outbox.flush(self.clock(), only=only)
        except _FLUSH_TROUBLE as exc:
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
            self.notifier.stopping()  # a datagram, safe here; systemd knows at once
            self.stop()

        def reload(signum: int, frame: FrameType | None) -> None:
            first = not self.reload_requested  # as in stop(): raise once, not from a raise
            self.reload_requested = True
            if first and self._waiting and threading.get_ident() == self._loop_thread:
                raise _StopWaiting

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGHUP, reload)


class _StopWaiting(BaseException):
    """Raised from the signal handler to leave a blocking IDLE at once.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` (or
    ``suppress(Exception)``) on the way up can swallow it and leave the loop waiting.
    """


def _status_line(report: PassReport) -> str:
    """Return the one-line STATUS= of `systemctl status` after a pass."""
    box = report.outbox
    return (
        f"idle; last pass: {report.handled} message(s), "
        f"sent {box.sent}, deferred {box.deferred}, failed {box.failed}"
    )


def offset_clock(start: datetime | None) -> Clock:
    """Return the real clock, or one that starts at ``start`` and runs at real speed."""
    if start is None:
        zone = None
        return lambda: datetime.now(zone).astimezone()
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)


def _log_committed(result: _Result) -> None:
    """Log what became of one message of a committed group."""
    if result.logged is not None:
        result.logged.log()
        return
    item = result.item
    log.error(
        "uid=%s could not be processed; quarantined\n%s",
        item.uid,
        result.trouble.rstrip(),
        extra={"uid": item.uid, "mailbox": item.mailbox, "outcome": "quarantined"},
    )
