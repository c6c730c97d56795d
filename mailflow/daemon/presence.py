"""This daemon in the store while it runs: its heartbeat, and what it takes over from the gone.

A thread of its own renews the daemon's claims every ``BEAT_EVERY`` seconds, whatever the
loop is doing (waiting in IDLE, sending a large mail, waiting for a database lock), and on
each beat releases the claims of daemons that are gone (:mod:`mailflow.store.claims`). The
loop asks :meth:`Presence.released` for those mails and sends them at once: at start-up,
between two groups of a backlog, and between two slices of its wait, which are short
(``CHECK_EVERY``) while other daemons share the store. Nothing here sends mail or pings
systemd: both stay in the loop's thread.
"""

from __future__ import annotations

import logging
import threading

from mailflow.store.claims import Holder
from mailflow.store.unitofwork import StoreError

log = logging.getLogger("mailflow.daemon.presence")

BEAT_EVERY = 5.0
# The longest slice of the loop's wait while other daemons share the store: a takeover
# waits at most one beat and one slice, far within the minute promised in the README.
CHECK_EVERY = 10.0


class Presence:
    """Keep this daemon's claims alive and collect those it takes over."""

    def __init__(self, holder: Holder, *, beat_every: float = BEAT_EVERY) -> None:
        self.holder = holder
        self.beat_every = beat_every
        # Other daemons were registered at the last beat: the loop checks for takeovers often.
        self.crowded = False
        self._released: set[int] = set()
        self._lock = threading.Lock()
        self._quiet = threading.Event()  # no beat under way
        self._quiet.set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Register this daemon, release what daemons that are gone held, start beating."""
        self._stopping.clear()
        self._beat_quietly()
        self._thread = threading.Thread(target=self._run, name="mailflow-presence", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating; release this daemon's claims and forget it (a clean stop)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        try:
            self.holder.leave()
        except StoreError as exc:
            # Its row stays; the next daemon finds the process gone and cleans up.
            log.warning("could not unregister this daemon: %s", exc)

    def beat(self) -> None:
        """Renew the heartbeat, release the claims of daemons that are gone."""
        self._quiet.clear()
        try:
            with self.holder.store.transaction() as session:
                self.holder.enter(session)
                released = self.holder.take_over(session)
                crowded = self.holder.peers(session) > 0
        finally:
            self._quiet.set()
        self.crowded = crowded
        if released:
            with self._lock:
                self._released.update(released)

    def make_way(self, timeout: float = 2.0) -> None:
        """Let a beat under way finish before the loop's next transaction.

        SQLite has one writer at a time: a loop going from one group of a backlog to the
        next would otherwise starve the beat (its busy handler polls, the loop does not),
        and with it the heartbeat and the takeovers.
        """
        self._quiet.wait(timeout)

    @property
    def pending(self) -> bool:
        """Tell whether mails taken over are waiting for the loop to send them."""
        with self._lock:
            return bool(self._released)

    def released(self) -> set[int]:
        """Return (and forget) the outbox rows taken over since the last call."""
        with self._lock:
            taken, self._released = self._released, set()
        return taken

    def _run(self) -> None:
        while not self._stopping.wait(self.beat_every):
            self._beat_quietly()

    def _beat_quietly(self) -> None:
        try:
            self.beat()
        except StoreError as exc:
            # The store being down is reported by the loop itself; this daemon stops
            # sending on its own once its claims cannot be renewed (Holder.holding).
            log.warning("claims not renewed: %s", exc)
