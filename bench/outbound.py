"""Outbound: the outbox flush rate against raw aiosmtplib, to the same server.

mailflow renders real outbox rows (acknowledgements and "Acción requerida" of new
requests); they are put back to pending and flushed in this process by the runtime's own
`Outbox.flush`, then the same bytes are sent raw over one aiosmtplib connection. Both to
the sink (the fastest peer) and to the relay (real delivery into Dovecot over LMTP).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import update

from bench.backlog import requests_between
from bench.bed import SMTP_CONNECTIONS, Bed, Peer, StoreKind
from bench.daemon import DaemonError, run
from bench.mailbox import append_all
from bench.rawsmtp import outbox_mails, send
from mailflow.config import load_settings
from mailflow.daemon.runtime import build_runtime
from mailflow.store.repository import make_engine
from mailflow.store.schema import OutboxRow, OutboxStatus


@dataclass(frozen=True)
class Rate:
    """Mails per second: mailflow's flush and the raw send of the same mails."""

    mails: int
    flush: float
    raw: float


def _pending(url: str, now: dt.datetime) -> None:
    """Put every outbox row back to pending, due now, as if never sent."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(OutboxRow).values(
                    status=OutboxStatus.PENDING.value,
                    attempts=0,
                    sent_at=None,
                    next_attempt_at=now - dt.timedelta(minutes=1),
                )
            )
    finally:
        engine.dispose()


def _flush(config: Path, now: dt.datetime) -> tuple[int, float]:
    runtime = build_runtime(load_settings(config, {}))
    try:
        started = time.perf_counter()
        report = runtime.outbox.flush(now)
        return report.sent, time.perf_counter() - started
    finally:
        runtime.store.close()


def measure(bed: Bed, store: StoreKind, requests: int) -> dict[Peer, Rate]:
    """Make the outbox of ``requests`` new requests; time its flush and the raw send."""
    site = bed.site(f"outbound-{store}", store, "sink")
    append_all(bed.dovecot, site.shared, requests_between(site, 0, requests))
    run(site.config_path, site.root / "seed.log", "run", "--once")
    mails = outbox_mails(site.db_url, site.shared, site.root / "archive")
    configs: dict[Peer, Path] = {"sink": site.config_path, "relay": site.root / "relay.toml"}
    relay_text = site.config_text().replace(
        "[smtp]\n", f"[smtp]\nconnections = {SMTP_CONNECTIONS}\n", 1
    )
    configs["relay"].write_text(relay_text, encoding="utf-8")
    rates: dict[Peer, Rate] = {}
    servers: dict[Peer, tuple[str, int]] = {
        "sink": (bed.sink.host, bed.sink.port),
        "relay": (bed.relay.host, bed.relay.port),
    }
    for peer, (host, port) in servers.items():
        now = dt.datetime.now(dt.UTC)
        _pending(site.db_url, now)
        sent, seconds = _flush(configs[peer], now)
        if sent != len(mails):
            raise DaemonError(f"{store} → {peer}: flushed {sent} of {len(mails)} mails")
        raw = send(host, port, mails)
        bed.relay.reset()
        rates[peer] = Rate(len(mails), len(mails) / seconds, len(mails) / raw)
    return rates
