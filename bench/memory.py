"""Memory: peak RSS of `run --once` handling mails with 20 MB attachments, big store.

The store is grown to many requests (bench/storegen.py) from a seed mailflow processed
itself; then a few requests carrying a 20 MB photo each are appended and handled by one
`run --once`, and then one request with a 30 MB photo by another. The baseline is the same
command on the same store with nothing new in the mailbox: the daemon's footprint before
any mail.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bench.backlog import requests_between
from bench.bed import Bed, StoreKind
from bench.corpus import MB, request_mail
from bench.daemon import DaemonError, run
from bench.mailbox import append_all
from bench.storegen import grow

SEED = 100
BIG = 20 * MB
HUGE = 30 * MB


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
    append_all(bed.dovecot, site.shared, requests_between(site, 0, SEED))
    run(site.config_path, site.root / "seed.log", "run", "--once")
    held = grow(site.db_url, requests)
    idle = run(site.config_path, site.root / "idle.log", "run", "--once")
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
    append_all(bed.dovecot, site.shared, [request_mail(site, SEED + mails, rng, attachment=HUGE)])
    huge = run(site.config_path, site.root / "huge.log", "run", "--once")
    if huge.pass_counts()[0] != 1:
        raise DaemonError(f"{store}: the mail with a 30 MB photo was not handled")
    return Memory(held, mails, idle.peak_rss_mb, big.peak_rss_mb, huge.peak_rss_mb, big.seconds)
