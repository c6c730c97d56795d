"""One pass over the mailbox: handle every new message in groups, then the due work and outbox.

IDLE is only a wake-up signal; every pass starts with a UID search from the last UID
recorded, so a missed notification costs a little latency, never a message. A message that
makes the service fail is quarantined in the ledger and the pass goes on (Mailman's
runner); only passing trouble (the database, the archive, IMAP) interrupts it, and then the
group at hand rolls back whole and is read again by a later pass. The daemon's lifecycle
around passes (waiting, signals, reloads, presence) is :mod:`mailflow.daemon.runner`.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from mailflow.app.outbox import FlushReport, Outbox
from mailflow.app.service import Done, Incoming, Service
from mailflow.errors import ArchiveError
from mailflow.jobs.scheduler import Scheduler
from mailflow.mail.spool import Spooled, size_of
from mailflow.store.mailbox import quarantine, save_position
from mailflow.store.repository import Store, get_mailbox_state, record_gaps
from mailflow.store.schema import InboundOutcome
from mailflow.store.unitofwork import PASSING, UNAVAILABLE, Session, deadlocked, savepoint
from mailflow.transport.imap import Fetched, ImapError, ImapSource

log = logging.getLogger("mailflow.daemon.catchup")

# A backlog is handled in groups of messages, each in one transaction (see CatchUp._group):
# at most this many messages, bytes (a spooled message ends a group) or seconds, and only
# those one round trip to the server fetched.
GROUP_MESSAGES = 50
GROUP_BYTES = 16 * 1024 * 1024
GROUP_SECONDS = 0.5
# How many times a deadlocked group is handled again at once before the pass gives up.
DEADLOCK_RETRIES = 2

Clock = Callable[[], datetime]

# Passing trouble: a message that meets it is not quarantined; its group rolls back.
_GROUP_TROUBLE: tuple[type[Exception], ...] = (ArchiveError, ImapError, *PASSING)


@dataclass(frozen=True)
class Wiring:
    """What a pass drives, built by :mod:`mailflow.daemon.runtime` (the composition root).

    A SIGHUP reload hands the running loop a new one (:meth:`Runner.rewire`).
    """

    service: Service
    store: Store
    source: ImapSource
    outbox: Outbox
    scheduler: Scheduler | None = None
    processed_folder: str | None = None
    report_gaps: bool = True


@dataclass(frozen=True)
class PassReport:
    """What one pass did."""

    handled: int
    outcomes: dict[str, int]
    outbox: FlushReport


class Handled(NamedTuple):
    """The last message of a committed group, as the heartbeat row records it."""

    mailbox: str
    uidvalidity: int
    uid: int
    outcome: str


class _Result(NamedTuple):
    """One message of a group: its outcome, and its service log line (None: quarantined).

    ``trouble`` is the traceback of a quarantined message, logged once the group commits.
    """

    item: Incoming
    outcome: str
    logged: Done | None
    trouble: str = ""


def _nothing(_: Handled) -> None:
    pass


class CatchUp:
    """Make one pass: every message after the last recorded UID, the due work, the outbox."""

    def __init__(
        self,
        wiring: Wiring,
        clock: Clock,
        *,
        stopping: threading.Event | None = None,
        watchdog: Callable[[], None] = lambda: None,
        after_group: Callable[[Handled], None] = _nothing,
    ) -> None:
        """Pass over ``wiring`` at ``clock``.

        ``stopping`` (SIGTERM) ends the pass after the message at hand; ``watchdog`` is
        pinged after each message, ``after_group`` told of each committed group.
        """
        self.wiring = wiring
        self.clock = clock
        self.stopping = stopping or threading.Event()
        self.watchdog = watchdog
        self.after_group = after_group

    def run(self) -> PassReport:
        """Handle every message after the last recorded UID, then flush the outbox."""
        wiring = self.wiring
        source = wiring.source
        mailbox = source.mailbox
        with wiring.store.transaction() as session:
            position = get_mailbox_state(session, mailbox)
        uidvalidity = source.uidvalidity
        last_uid = 0
        if position is not None and position.uidvalidity == uidvalidity:
            last_uid = position.last_uid
        elif position is not None:
            # The server renumbered the folder: rescan it; the ledger and Message-IDs dedupe.
            log.warning("IMAP %s: UIDVALIDITY changed, rescanning the folder", mailbox)
        outcomes: dict[str, int] = {}
        done: list[int] = []
        # A large message is spooled next to the archive it will be copied into.
        spool = wiring.service.archive.scratch
        # Gaps are meaningful only above a position read from this very UIDVALIDITY.
        gaps = wiring.report_gaps and last_uid > 0
        fetched = iter(source.fetch_after(last_uid, spool_dir=spool, gaps=gaps))
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
                self.after_group(
                    Handled(last.item.mailbox, last.item.uidvalidity, last.item.uid, last.outcome)
                )
        finally:
            # Only committed groups are in ``done``. They are moved even when a later group
            # failed: the position is already past them, so they would never be moved.
            self._move(done)
        if gaps:
            self._record_gaps(mailbox, uidvalidity, done if not complete else None)
        if wiring.scheduler is not None:
            wiring.scheduler.run_due(self.clock())
        report = wiring.outbox.flush(self.clock())
        return PassReport(len(done), outcomes, report)

    def _record_gaps(self, mailbox: str, uidvalidity: int, done: list[int] | None) -> None:
        """Record the UIDs this pass found gone: moved or deleted before they were fetched.

        ``done``: the UIDs handled, when the pass stopped early; only the gaps below them
        are sure (the next pass reads the rest again and finds the others).
        """
        missing = self.wiring.source.missing
        if done is not None:
            missing = [uid for uid in missing if uid < max(done, default=0)]
        if not missing:
            return
        with self.wiring.store.transaction() as session:
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
        folder = self.wiring.processed_folder
        if not (folder and uids):
            return
        try:
            self.wiring.source.move(uids, folder)
        except Exception as exc:  # they are handled and recorded; only their folder is off
            log.warning("IMAP: %d handled message(s) not moved to %s: %s", len(uids), folder, exc)

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
        wiring = self.wiring
        # The batch ends before the transaction: the group's files (its messages, the
        # mails they send) are archived durably before the commit that refers to them.
        with wiring.store.transaction() as session, wiring.service.archive.batch():
            for item in list(items):
                results.append(self._handle(session, item))
                self.watchdog()  # only the watchdog: a heartbeat row would wait
            while more is not None and self._room(items, started) and wiring.source.ahead:
                got = next(more, None)
                if got is None:
                    break
                item = Incoming(got.mailbox, got.uidvalidity, got.uid, got.raw)
                items.append(item)
                results.append(self._handle(session, item))
                self.watchdog()
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
                done = self.wiring.service.handle_in(session, item, self.clock())
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
