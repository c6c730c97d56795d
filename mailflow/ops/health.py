"""The daemon's heartbeat (written by the loop) and the health report `mailflow status` reads.

The daemon writes one ``daemon_status`` row per mailbox with the wall clock: started,
heartbeat, IMAP connected or not since when, last IDLE wake-up, last message handled.
`mailflow status` reads that row plus the outbox, the open requests and the digests, and
calls the daemon unhealthy when (see docs/deployment.md, "Monitoring"):

- no daemon ever recorded a heartbeat for this mailbox, or the last one stopped;
- the heartbeat is older than ``stale_factor`` (3) times the loop's longest wait: the loop
  is stuck or the process is gone;
- IMAP has been disconnected for more than ``imap_down_seconds`` (300 s);
- the oldest pending outbox row is older than ``outbox_age_seconds`` (3600 s): mail is not
  leaving;
- a daemon that is gone (its process ended, or no heartbeat for 30 s) still holds claims
  on outbox rows: no daemon runs to release and send them.

The report also lists every daemon registered in the store (several may share a PostgreSQL
store) and counts the claims released so far.

Overdue stages and failed mails are reported but never make it unhealthy: they are people's
work (reminders and escalations handle them), not a fault of the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mailflow import __version__
from mailflow.store.claims import Process, Seen, holders
from mailflow.store.figures import (
    daemon_status,
    failed_mail,
    last_digest,
    overdue_requests,
    pending_mail,
    released_claims,
)
from mailflow.store.ledger import last_handled
from mailflow.store.repository import Store, count_gaps_to_report, recent_gaps
from mailflow.store.schema import DaemonStatusRow
from mailflow.store.threads import HeldOpening, held_openings
from mailflow.store.unitofwork import Session, StoreError

log = logging.getLogger("mailflow.ops.health")

WallClock = Callable[[], datetime]
# `mailflow status` lists the mail that vanished in the last days.
GAPS_SHOWN_DAYS = 7


def wall_clock() -> datetime:
    """Return the real time in UTC (heartbeats never follow ``--now``)."""
    return datetime.now(UTC)


class Heartbeat:
    """Record the loop's progress in ``daemon_status``; failures are logged, never raised."""

    def __init__(
        self, store: Store, name: str, wait_seconds: float, clock: WallClock = wall_clock
    ) -> None:
        self.store = store
        self.name = name
        self.wait_seconds = wait_seconds
        self.clock = clock
        self._connected: bool | None = None

    @property
    def connected(self) -> bool | None:
        """Return the IMAP state last recorded (None before the first)."""
        return self._connected

    def _update(self, **values: Any) -> None:
        now = self.clock()
        try:
            with self.store.transaction() as session:
                row = daemon_status(session, self.name)
                if row is None:
                    row = DaemonStatusRow(
                        name=self.name,
                        host=socket.gethostname(),
                        pid=os.getpid(),
                        version=__version__,
                        started_at=now,
                        heartbeat_at=now,
                        wait_seconds=round(self.wait_seconds),
                        imap_connected=False,
                        imap_since=now,
                    )
                    session.add(row)
                row.heartbeat_at = now
                for key, value in values.items():
                    setattr(row, key, now if value is _NOW else value)
        except StoreError as exc:
            # The store being down is reported by the pass itself; a heartbeat must not
            # turn a passing trouble into a crash.
            log.warning("heartbeat not recorded: %s", exc)

    def started(self) -> None:
        """Record a (re)start: new pid, version and start time, not stopped."""
        self._connected = False
        self._update(
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            started_at=_NOW,
            wait_seconds=round(self.wait_seconds),
            imap_connected=False,
            imap_since=_NOW,
            stopped_at=None,
        )

    def beat(self, connected: bool) -> None:
        """Record that the loop is alive, and whether IMAP is connected."""
        if connected != self._connected:
            self._connected = connected
            self._update(imap_connected=connected, imap_since=_NOW)
        else:
            self._update()

    def woke(self) -> None:
        """Record an IDLE wake-up (the server announced mail)."""
        self._update(last_wake_at=_NOW)

    def handled(self, mailbox: str, uidvalidity: int, uid: int, outcome: str) -> None:
        """Record the last message handled, with its Message-ID from the ledger."""
        message_id: str | None = None
        request: str | None = None
        try:
            with self.store.transaction() as session:
                found = last_handled(session, mailbox, uidvalidity, uid)
                if found is not None:
                    message_id, request = found
        except StoreError as exc:
            log.warning("heartbeat not recorded: %s", exc)
            return
        self._update(
            last_message_at=_NOW,
            last_message_id=message_id,
            last_outcome=outcome,
            last_request=request,
        )

    def stopped(self) -> None:
        """Record a clean stop, so that status says "stopped" rather than "stuck"."""
        self._update(stopped_at=_NOW, imap_connected=False, imap_since=_NOW)


_NOW = object()  # "the heartbeat's time" in Heartbeat._update


@dataclass(frozen=True)
class Limits:
    """When `mailflow status` calls the daemon unhealthy."""

    stale_factor: float = 3.0
    imap_down_seconds: float = 300.0
    outbox_age_seconds: float = 3600.0


@dataclass
class Report:
    """What `mailflow status` prints; ``problems`` empty means healthy."""

    daemon: dict[str, Any] | None
    outbox: dict[str, Any]
    overdue_stages: int
    last_digest: str | None
    problems: list[str] = field(default_factory=list)
    # Mail that vanished from the mailbox before it was fetched: people's doing, reported
    # but never unhealthy (see mailflow.daemon.catchup, "gaps").
    gaps: dict[str, Any] = field(default_factory=dict)
    # Openings waiting for their sender's CONFIRMO (never a problem: people's work).
    held: list[dict[str, Any]] = field(default_factory=list)
    daemons: list[Seen] = field(default_factory=list)  # every holder of claims, judged
    released: int = 0  # outbox claims released from daemons that were gone, ever

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "problems": self.problems,
            "daemon": self.daemon,
            "outbox": self.outbox,
            "overdue_stages": self.overdue_stages,
            "last_digest": self.last_digest,
            "gaps": self.gaps,
            "held_openings": self.held,
            "daemons": [holder.as_json() for holder in self.daemons],
            "claims": {
                "held": sum(h.claims for h in self.daemons if not h.gone),
                "held_by_gone": sum(h.claims for h in self.daemons if h.gone),
                "released": self.released,
            },
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def check(
    store: Store, name: str, *, wall: datetime, now: datetime, limits: Limits = Limits()
) -> Report:
    """Read the store and judge the daemon's health; ``wall`` is the real time, ``now``
    the procedures' clock (``--now``) for the outbox and deadlines."""
    problems: list[str] = []
    with store.transaction() as session:
        row = daemon_status(session, name)
        pending = pending_mail(session)
        failed = failed_mail(session)
        overdue = overdue_requests(session, now)
        digest = last_digest(session)
        gaps = _gaps(session, now)
        held = [_held(h) for h in held_openings(session)]
        seen = holders(session, Process.this())
        released = released_claims(session)
    daemon: dict[str, Any] | None = None
    if row is None:
        problems.append(f"ningún daemon ha trabajado nunca en {name}")
    else:
        age = (wall - row.heartbeat_at).total_seconds()
        daemon = {
            "name": row.name,
            "host": row.host,
            "pid": row.pid,
            "version": row.version,
            "started_at": _iso(row.started_at),
            "heartbeat_at": _iso(row.heartbeat_at),
            "heartbeat_age_seconds": round(age, 1),
            "stopped_at": _iso(row.stopped_at),
            "imap_connected": row.imap_connected,
            "imap_since": _iso(row.imap_since),
            "last_wake_at": _iso(row.last_wake_at),
            "last_message": {
                "at": _iso(row.last_message_at),
                "message_id": row.last_message_id,
                "outcome": row.last_outcome,
                "request": row.last_request,
            },
        }
        limit = limits.stale_factor * row.wait_seconds
        if row.stopped_at is not None:
            problems.append(f"el daemon se detuvo el {_iso(row.stopped_at)}")
        elif age > limit:
            problems.append(
                f"sin latido desde hace {age:.0f} s (más de {limit:.0f} s): "
                f"el daemon (pid {row.pid} en {row.host}) está trabado o ya no existe"
            )
        elif not row.imap_connected:
            down = (wall - row.imap_since).total_seconds()
            if down > limits.imap_down_seconds:
                problems.append(f"IMAP desconectado desde hace {down:.0f} s")
    count, oldest = pending
    outbox: dict[str, Any] = {
        "pending": int(count or 0),
        "oldest_pending": _iso(oldest),
        "failed": int(failed or 0),
    }
    if oldest is not None:
        waited = (now - oldest).total_seconds()
        outbox["oldest_pending_age_seconds"] = round(waited, 1)
        if waited > limits.outbox_age_seconds:
            waiting = "correo espera" if count == 1 else "correos esperan"
            problems.append(
                f"{count} {waiting} salir, el más antiguo desde hace {waited / 60:.0f} min"
            )
    problems += [
        f"{h.claims} {'correo tomado' if h.claims == 1 else 'correos tomados'} por el daemon "
        f"pid {h.pid} en {h.host}, que ya no está ({h.gone}): un daemon en marcha "
        f"{'lo envía' if h.claims == 1 else 'los envía'} enseguida"
        for h in seen
        if h.gone and h.claims
    ]
    return Report(
        daemon,
        outbox,
        int(overdue or 0),
        _iso(digest),
        problems,
        gaps=gaps,
        held=held,
        daemons=seen,
        released=int(released or 0),
    )


def _gaps(session: Session, now: datetime) -> dict[str, Any]:
    """Return the vanished mail: how many ever, how many unreported, those of the week."""
    total, recent = recent_gaps(session, now - timedelta(days=GAPS_SHOWN_DAYS))
    return {
        "total": total,
        "unreported": count_gaps_to_report(session),
        "recent": [
            {"mailbox": g.mailbox, "uid": g.uid, "noticed_at": _iso(g.noticed_at)} for g in recent
        ],
    }


def _held(opening: HeldOpening) -> dict[str, Any]:
    """Describe one held opening: who sent what, when, and until when it can be confirmed."""
    return {
        "id": opening.inbound_id,
        "sender": opening.sender,
        "procedure": opening.procedure,
        "received_at": _iso(opening.received_at),
        "expires": _iso(opening.until),
        "asked": opening.asked,
    }


def describe(report: Report) -> list[str]:
    """Return the report as lines for people."""
    lines = [("sano" if report.healthy else "NO ESTÁ SANO")]
    lines += [f"  problema: {p}" for p in report.problems]
    d = report.daemon
    if d is not None:
        age = d["heartbeat_age_seconds"]
        state = "detenido" if d["stopped_at"] else f"último latido hace {age:.0f} s"
        lines.append(f"daemon: pid {d['pid']} en {d['host']}, mailflow {d['version']}, {state}")
        imap = "conectado" if d["imap_connected"] else "desconectado"
        wake = d["last_wake_at"] or "-"
        lines.append(f"imap: {imap} desde {d['imap_since']}; último aviso de correo {wake}")
        m = d["last_message"]
        lines.append(
            f"último mensaje: {m['at'] or '-'} {m['message_id'] or '-'} "
            f"{m['outcome'] or '-'} {m['request'] or ''}".rstrip()
        )
    o = report.outbox
    if not o:
        return lines
    lines.append(
        f"salida: {o['pending']} por enviar (el más antiguo {o['oldest_pending'] or '-'}), "
        f"{o['failed']} fallidos"
    )
    lines += _claim_lines(report)
    lines.append(f"etapas vencidas: {report.overdue_stages}")
    lines.append(f"último resumen semanal: {report.last_digest or '-'}")
    g = report.gaps
    if g:
        lines.append(
            f"correos que desaparecieron del buzón sin procesar: {g['total']} en total, "
            f"{g['unreported']} sin informar aún"
        )
        lines += [
            f"  UID {item['uid']} ({item['mailbox']}), notado {item['noticed_at']}"
            for item in g["recent"]
        ]
    lines.append(f"aperturas que esperan CONFIRMO: {len(report.held)}")
    for h in report.held:
        asked = "" if h["asked"] else " (sin pedir: tope diario alcanzado)"
        lines.append(
            f"  #{h['id']} {h['procedure'] or '?'} de {h['sender']}, recibida "
            f"{h['received_at']}, vence {h['expires'] or '?'}{asked}"
        )
    return lines


def _claim_lines(report: Report) -> list[str]:
    """Return the daemons registered in the store and the claims they hold, for people."""
    running = [h for h in report.daemons if not h.gone]
    gone = [h for h in report.daemons if h.gone]
    names = ", ".join(f"pid {h.pid} en {h.host}" for h in running)
    lines = [f"daemons en marcha: {len(running)}" + (f" ({names})" if names else "")]
    lines.append(
        f"correos tomados para enviar: {sum(h.claims for h in running)} por daemons en "
        f"marcha, {sum(h.claims for h in gone)} por daemons que ya no están; liberados "
        f"hasta ahora: {report.released}"
    )
    lines += [
        f"  ya no está: pid {h.pid} en {h.host} ({h.gone}), {h.claims} "
        f"{'correo tomado' if h.claims == 1 else 'correos tomados'}"
        for h in gone
        if h.claims
    ]
    return lines


def status_name(username: str, host: str, folder: str) -> str:
    """Return the daemon_status key of one watched mailbox."""
    return f"{username}@{host}/{folder}"[:255]
