"""Who holds a claim: each daemon's identity and heartbeat, and the release of claims of the gone.

A claim is an outbox row being sent: ``outbox.claimed_by`` names the daemon sending it (a
``daemons`` row). Every process that flushes the outbox registers a row of its own (a
fresh id, its host, pid and the kernel's start time of that pid), renews its heartbeat
while it runs (every few seconds, and in each transaction that claims or records mail),
and deletes the row when it stops cleanly.

A holder is gone when

- its process is not running on this machine: same host, machine id, boot and PID
  namespace, and the pid is free, a zombie, or reused by a process started at another
  moment; or
- its heartbeat is older than ``GONE_AFTER`` (a process on another machine, or frozen);
- or it has no row at all.

Its claims are then released (the rows are due again at once, for whichever daemon flushes
next) and its row deleted, in one transaction, and only if its heartbeat has not moved
since it was judged: a holder renewing at that very moment keeps its claims.

A holder stops starting new mails once it could not renew for ``STOP_SENDING_AFTER``, half
of ``GONE_AFTER``: by the time another daemon may call it gone it has stopped, so no mail
is ever sent by two daemons at once. Heartbeats are written and judged with the database's
clock on PostgreSQL (daemons on several hosts: their clocks may differ), with this
machine's on SQLite (one host).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import delete, event, func, select, text, update
from sqlalchemy.orm import Session

from mailflow import __version__
from mailflow.store.repository import Store
from mailflow.store.schema import DaemonRow, OutboxRow

log = logging.getLogger("mailflow.store.claims")

# Longer than any pause of a healthy daemon's heartbeat (every 5 s, in a thread of its own),
# short enough that a second daemon takes over well within a minute.
GONE_AFTER = timedelta(seconds=30)
STOP_SENDING_AFTER = GONE_AFTER / 2
# The boot time is computed from two clocks; rounded, so that every process agrees on it.
_BOOT_ROUNDING = 10


@dataclass(frozen=True)
class Process:
    """Which process a holder is, and where its pid means that process."""

    host: str
    machine: str  # host, machine id, boot and PID namespace: where ``pid`` can be checked
    pid: int
    start: str | None  # the kernel's start time of pid (ticks since boot); None: unknown

    @classmethod
    def this(cls) -> Process:
        """Describe the calling process."""
        pid = os.getpid()
        return cls(socket.gethostname(), _machine(), pid, _stat(pid)[1])

    def running(self, here: Process) -> bool | None:
        """Tell whether this process still runs, as seen from ``here``; None: cannot tell.

        Only a process on the machine of ``here`` can be checked; elsewhere the heartbeat
        alone decides. A pid that exists but cannot be inspected counts as running.
        """
        if self.machine != here.machine:
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # another user's process: it exists, its start time is hidden
        state, start = _stat(self.pid)
        if state in {"Z", "X"}:
            return False  # dead, not yet reaped by its parent
        return start is None or self.start is None or start == self.start


def _machine() -> str:
    """Return where a pid names one process: host, machine id, boot and PID namespace.

    Read from what a sandboxed service can still see (systemd's ProcSubset=pid hides
    /proc/sys): the boot is its wall-clock time, from CLOCK_BOOTTIME, rounded.
    """
    try:
        machine_id = Path("/etc/machine-id").read_text(encoding="ascii").strip()
    except OSError:
        machine_id = "-"
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = "-"
    boot = "-"
    if hasattr(time, "CLOCK_BOOTTIME"):
        booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        boot = str(round(booted / _BOOT_ROUNDING) * _BOOT_ROUNDING)
    return f"{socket.gethostname()} {machine_id} {boot} {namespace}"[:255]


def _stat(pid: int) -> tuple[str | None, str | None]:
    """Return the state and start time of ``pid`` from /proc, or Nones when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None, None
    # "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return None, None
    return fields[0], fields[19]  # fields 3 and 22 of proc(5)


def store_time(session: Session) -> datetime:
    """Return the time heartbeats are written and judged with: the database's on PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        moment = session.scalar(text("SELECT clock_timestamp()"))
        assert isinstance(moment, datetime)
        return moment.astimezone(UTC)
    return datetime.now(UTC)


class Seen(NamedTuple):
    """A holder as the store knows it, judged from one process."""

    id: str
    host: str
    pid: int
    version: str
    started_at: datetime | None
    heartbeat_at: datetime | None  # None: a claim names it, but it has no row
    heartbeat_age: float | None  # seconds
    claims: int
    gone: str | None  # why it is gone; None while it runs

    def as_json(self) -> dict[str, Any]:
        """Return the holder for `mailflow status --json`."""
        started = None if self.started_at is None else self.started_at.isoformat("T", "seconds")
        age = None if self.heartbeat_age is None else round(self.heartbeat_age, 1)
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "version": self.version,
            "started_at": started,
            "heartbeat_age_seconds": age,
            "claims": self.claims,
            "gone": self.gone,
        }


def holders(session: Session, here: Process, *, gone_after: timedelta = GONE_AFTER) -> list[Seen]:
    """Return every registered holder and every holder named by a claim, judged from here."""
    now = store_time(session)
    claims: dict[str | None, int] = {
        holder: count
        for holder, count in session.execute(
            select(OutboxRow.claimed_by, func.count(OutboxRow.id))
            .where(OutboxRow.claimed_by.is_not(None))
            .group_by(OutboxRow.claimed_by)
        )
    }
    found: list[Seen] = []
    for row in session.scalars(select(DaemonRow).order_by(DaemonRow.started_at)):
        age = (now - row.heartbeat_at).total_seconds()
        process = Process(row.host, row.machine, row.pid, row.process_start)
        why: str | None = None
        if age > gone_after.total_seconds():
            why = f"sin latido desde hace {age:.0f} s"
        elif process.running(here) is False:
            why = "su proceso ya no está en marcha"
        found.append(
            Seen(
                row.id, row.host, row.pid, row.version, row.started_at, row.heartbeat_at, age,
                claims.pop(row.id, 0), why,
            )
        )  # fmt: skip
    for holder, count in claims.items():
        assert holder is not None
        found.append(Seen(holder, "?", 0, "?", None, None, None, count, "no está registrado"))
    return found


def release(session: Session, gone: Sequence[Seen]) -> list[int]:
    """Release the claims of holders found gone and forget them; return the outbox ids.

    A holder whose heartbeat moved since it was judged keeps its row and its claims: its
    renewal and this release are serialized by the row (PostgreSQL) or the database lock
    (SQLite), and the one that comes second sees what the first did.
    """
    released: list[int] = []
    for holder in gone:
        if holder.heartbeat_at is not None:
            forgotten = session.execute(
                delete(DaemonRow)
                .where(DaemonRow.id == holder.id, DaemonRow.heartbeat_at == holder.heartbeat_at)
                .execution_options(synchronize_session=False)
            )
            if forgotten.rowcount != 1:  # type: ignore[attr-defined]
                continue
        ids = list(
            session.scalars(
                update(OutboxRow)
                .where(OutboxRow.claimed_by == holder.id)
                .values(claimed_by=None, releases=OutboxRow.releases + 1)
                .returning(OutboxRow.id)
                .execution_options(synchronize_session=False)
            )
        )
        released += ids
        if ids:
            log.warning(
                "released %d mail(s) claimed by daemon %s (pid %s on %s), gone: %s",
                len(ids),
                holder.id,
                holder.pid,
                holder.host,
                holder.gone,
                extra={"outcome": "released"},
            )
        else:
            log.info("forgot daemon %s (pid %s on %s), gone: %s", *holder[:3], holder.gone)
    return released


class Holder:
    """This process as a holder of claims: a row of its own, renewed as it works.

    Shared by the loop (the outbox claims and records under it) and the presence thread
    (which renews it every few seconds); ``id`` changes only if the process was taken for
    gone and registers again.
    """

    def __init__(
        self,
        store: Store,
        *,
        process: Process | None = None,
        version: str = __version__,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.process = process or Process.this()
        self.version = version
        self._clock = clock
        self._lock = threading.Lock()
        self._id: str | None = None
        self._renewed = -math.inf  # the monotonic moment of the last committed renewal

    @property
    def id(self) -> str | None:
        """Return the id claims are made under (None before the first registration)."""
        with self._lock:
            return self._id

    def enter(self, session: Session) -> str:
        """Renew this holder's heartbeat in ``session`` (registering first if it has no row).

        The renewal counts once ``session`` commits. Return the id to claim under.
        """
        started = self._clock()
        now = store_time(session)
        holder = self.id
        if holder is not None:
            renewed = session.execute(
                update(DaemonRow)
                .where(DaemonRow.id == holder)
                .values(heartbeat_at=now)
                .execution_options(synchronize_session=False)
            )
            if renewed.rowcount != 1:  # type: ignore[attr-defined]
                log.error(
                    "this daemon (%s) was taken for gone and its claims released: "
                    "registering again",
                    holder,
                )
                holder = None
        if holder is None:
            holder = uuid.uuid4().hex
            process = self.process
            session.add(
                DaemonRow(
                    id=holder, host=process.host[:255], machine=process.machine, pid=process.pid,
                    process_start=process.start, version=self.version[:64], started_at=now,
                    heartbeat_at=now,
                )
            )  # fmt: skip
            session.flush()
            with self._lock:
                self._id = holder
        event.listen(
            session, "after_commit", lambda _: self._renewed_at(holder, started), once=True
        )
        return holder

    def _renewed_at(self, holder: str, moment: float) -> None:
        with self._lock:
            if self._id == holder:
                self._renewed = max(self._renewed, moment)

    def holding(self, holder: str) -> bool:
        """Tell whether claims made under ``holder`` are still this process's to send."""
        with self._lock:
            return (
                self._id == holder
                and self._clock() - self._renewed < STOP_SENDING_AFTER.total_seconds()
            )

    def take_over(self, session: Session) -> list[int]:
        """Release the claims of every other holder that is gone; return the outbox ids."""
        mine = self.id
        gone = [h for h in holders(session, self.process) if h.gone and h.id != mine]
        return release(session, gone)

    def release_own(self, session: Session, holder: str) -> None:
        """Release what this holder still claims: left by one of its flushes that failed."""
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.claimed_by == holder)
            .values(claimed_by=None)
            .execution_options(synchronize_session=False)
        )

    def peers(self, session: Session) -> int:
        """Return how many other holders are registered."""
        mine = self.id
        return int(
            session.scalar(select(func.count(DaemonRow.id)).where(DaemonRow.id != mine)) or 0
        )

    def leave(self) -> None:
        """Stop cleanly: release this holder's claims and delete its row."""
        holder = self.id
        if holder is None:
            return
        with self.store.transaction() as session:
            self.release_own(session, holder)
            session.execute(delete(DaemonRow).where(DaemonRow.id == holder))
        with self._lock:
            self._id = None
            self._renewed = -math.inf
