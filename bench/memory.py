"""Memory: peak RSS of `run --once` handling mails with 20 MB attachments, big store.

The store is grown to many requests (bench/storegen.py) from a seed mailflow processed
itself; then a few requests carrying a 20 MB photo each are appended and handled by one
`run --once`, and then one request with a 30 MB photo by another. The baseline is the same
command on the same store with nothing new in the mailbox: the daemon's footprint before
any mail.

Files travel with the request: ``[mail] attach_max_mb`` is raised to 25 here so that each
20 MB photo is forwarded to the Dirección Ejecutiva (a 27 MB mail composed into the
archive and streamed to the SMTP sink in the same pass); the 30 MB one is over it, listed
but not forwarded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sqlalchemy import func, select

from bench.backlog import requests_between
from bench.bed import Bed, StoreKind
from bench.corpus import MB, request_mail
from bench.daemon import DaemonError, run
from bench.mailbox import append_all
from bench.storegen import grow
from mailflow.store.repository import make_engine
from mailflow.store.schema import OutboxRow

SEED = 100
BIG = 20 * MB
HUGE = 30 * MB
FORWARD_MB = 25  # the 20 MB photos are forwarded, the 30 MB one is not


@dataclass(frozen=True)
class Memory:
    """Peak RSS (MB) of the two passes, and the size of the store they ran on."""

    requests: int
    mails: int
    idle_mb: float
    big_mb: float
    huge_mb: float
    seconds: float


def measure(bed: Bed, store: StoreKind, requests: int, mails: int) -> Memory:
    """Grow a store to ``requests``, then handle ``mails`` mails with a 20 MB photo each."""
    site = bed.site(f"memory-{store}", store, "sink")
    with site.config_path.open("a", encoding="utf-8") as config:
        config.write(f"\n[mail]\nattach_max_mb = {FORWARD_MB}\n")
    append_all(bed.dovecot, site.shared, requests_between(site, 0, SEED))
    run(site.config_path, site.root / "seed.log", "run", "--once")
    held = grow(site.db_url, requests)
    idle = run(site.config_path, site.root / "idle.log", "run", "--once")
    before = _forwarded(site.db_url)
    rng = random.Random(20)
    append_all(
        bed.dovecot,
        site.shared,
        (request_mail(site, SEED + i, rng, attachment=BIG) for i in range(mails)),
    )
    big = run(site.config_path, site.root / "big.log", "run", "--once")
    handled, _sent = big.pass_counts()
    if handled != mails:
        raise DaemonError(f"{store}: handled {handled} of {mails} mails with 20 MB photos")
    if (forwarded := _forwarded(site.db_url) - before) != mails:
        raise DaemonError(f"{store}: {forwarded} of {mails} photos forwarded to the next stage")
    append_all(bed.dovecot, site.shared, [request_mail(site, SEED + mails, rng, attachment=HUGE)])
    huge = run(site.config_path, site.root / "huge.log", "run", "--once")
    if huge.pass_counts()[0] != 1:
        raise DaemonError(f"{store}: the mail with a 30 MB photo was not handled")
    return Memory(held, mails, idle.peak_rss_mb, big.peak_rss_mb, huge.peak_rss_mb, big.seconds)


def _forwarded(url: str) -> int:
    """Return how many mails carrying files the outbox sent (each 20 MB photo, once)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(OutboxRow)
                    .where(OutboxRow.eml_sha256.is_not(None), OutboxRow.status == "sent")
                ).scalar_one()
            )
    finally:
        engine.dispose()
