"""The daemon's lifecycle: start, wait for mail with IDLE, signals, reloads, stop.

Each wake-up (and each reconnect, and at least every ``wait_seconds``) makes one pass
(:mod:`mailflow.daemon.catchup`). Around the passes the runner keeps the loop alive: it
rides out passing trouble (the database, SMTP, a lost IMAP connection) with a pause, stops
intake while the archive cannot take files, applies SIGHUP between messages, pings
systemd's watchdog and the heartbeat row, and sends the mail it takes over from daemons
that are gone (:mod:`mailflow.daemon.presence`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from types import FrameType

from mailflow.app.outbox import Outbox
from mailflow.app.service import Service
from mailflow.daemon.catchup import CatchUp, Clock, Handled, PassReport, Wiring
from mailflow.daemon.presence import CHECK_EVERY, Presence
from mailflow.errors import ArchiveError
from mailflow.jobs.scheduler import Scheduler
from mailflow.ops.health import Heartbeat
from mailflow.ops.sd_notify import Notifier
from mailflow.store.repository import Store
from mailflow.store.unitofwork import PASSING, UNAVAILABLE
from mailflow.transport.imap import ImapSource, ImapUnavailableError, Reconnector
from mailflow.transport.smtp import SmtpError

log = logging.getLogger("mailflow.daemon.runner")

# Passing trouble: a pass is tried again after a pause (PASS), a flush left to the next (FLUSH).
_PASS_TROUBLE: tuple[type[Exception], ...] = (*PASSING, SmtpError)
_FLUSH_TROUBLE: tuple[type[Exception], ...] = (*UNAVAILABLE, SmtpError)


class Runner:
    """Drive one mailbox through the service; one thread, one IMAP connection."""

    def __init__(
        self,
        wiring: Wiring,
        clock: Clock,
        *,
        wait_seconds: float = 60.0,
        notifier: Notifier | None = None,
        heartbeat: Heartbeat | None = None,
        presence: Presence | None = None,
        retry_seconds: float = 30.0,
    ) -> None:
        """Drive ``wiring`` (what :mod:`mailflow.daemon.runtime` built) at ``clock``."""
        self.wiring = wiring
        wiring.outbox.alive = self._alive  # a long flush pings the watchdog between groups
        self.clock = clock
        # The longest wait without a pass: deferred outbox rows (retries are due 1 min or
        # more after a failure) are sent by the pass that follows a quiet wait.
        self.wait_seconds = wait_seconds
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
        self._last_handled: Handled | None = None
        self._beat_at = float("-inf")
        self._waiting = False
        self._loop_thread: int | None = None
        self._stop_reason = ""

    # What the wiring holds, as the runner drives it now (a reload replaces it).

    @property
    def service(self) -> Service:
        """Return the service the passes hand messages to."""
        return self.wiring.service

    @property
    def store(self) -> Store:
        """Return the store of the current wiring."""
        return self.wiring.store

    @property
    def source(self) -> ImapSource:
        """Return the IMAP source of the current wiring."""
        return self.wiring.source

    @property
    def outbox(self) -> Outbox:
        """Return the outbox of the current wiring."""
        return self.wiring.outbox

    @property
    def scheduler(self) -> Scheduler | None:
        """Return the timed work of the current wiring, if any."""
        return self.wiring.scheduler

    @property
    def processed_folder(self) -> str | None:
        """Return the folder handled messages are moved to, if any."""
        return self.wiring.processed_folder

    @processed_folder.setter
    def processed_folder(self, folder: str | None) -> None:
        self.wiring = replace(self.wiring, processed_folder=folder)

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
        self.wiring = wiring

    def catch_up(self) -> PassReport:
        """Make one pass (:class:`~mailflow.daemon.catchup.CatchUp`) over the current wiring."""
        return CatchUp(
            self.wiring,
            self.clock,
            stopping=self.stopping,
            watchdog=self.notifier.watchdog,
            after_group=self._after_group,
        ).run()

    def _after_group(self, last: Handled) -> None:
        """Between two groups: feed the heartbeat, send what a gone daemon left."""
        self._last_handled = last
        self._alive()
        self._take_over()  # a long backlog must not hold up a dead daemon's mail

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
