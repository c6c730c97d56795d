"""Backlog: N new requests already in the mailbox, handled by one `mailflow run --once`.

The mailbox is filled with IMAP MULTIAPPEND, growing from one N to the next (the first 500
mails are the same at every N). Each store gets a fresh database and archive and reads the
same mailbox; its outbound mail goes to the sink server. The baseline, in the same run:
fetching the whole mailbox raw over IMAP, plus sending the very mails mailflow sent (read
back from its outbox) over one SMTP connection to the same sink.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from testbed.site import Site

from bench.bed import STORES, Bed, StoreKind
from bench.corpus import request_mail
from bench.daemon import DaemonError, run
from bench.mailbox import append_all, fetch_all
from bench.rawsmtp import outbox_mails, send


@dataclass(frozen=True)
class Pass:
    """One `run --once` over the backlog."""

    seconds: float
    handled: int
    sent: int
    peak_rss_mb: float


@dataclass
class Backlog:
    """The figures of one N: mailflow per store, and the raw baseline."""

    n: int
    mailbox_mb: float = 0.0
    runs: dict[StoreKind, Pass] = field(default_factory=dict)
    raw_fetch: float = 0.0
    raw_send: float = 0.0

    @property
    def raw(self) -> float:
        """Return the seconds of the raw baseline: fetch everything, send as much."""
        return self.raw_fetch + self.raw_send


def requests_between(site: Site, start: int, stop: int) -> Iterator[bytes]:
    rng = random.Random(start)
    for index in range(start, stop):
        yield request_mail(site, index, rng)


def measure(
    bed: Bed, sizes: list[int], progress: Callable[[str], None] = lambda _: None
) -> list[Backlog]:
    """Measure each N of sizes on one mailbox that grows between them."""
    mailbox = bed.site("backlog-mailbox", "sqlite", "sink")
    results: list[Backlog] = []
    filled = 0
    for n in sorted(sizes):
        append_all(bed.dovecot, mailbox.shared, requests_between(mailbox, filled, n))
        filled = n
        progress(f"backlog: mailbox filled to N={n:,}")
        count, size = fetch_all(bed.dovecot, mailbox.shared)  # also warms Dovecot's caches
        assert count == n, f"the mailbox holds {count} messages, expected {n}"
        result = Backlog(n, mailbox_mb=size / 1e6)
        sites = {}
        for store in STORES:
            sites[store] = site = bed.site(
                f"backlog{n}-{store}", store, "sink", domain=mailbox.domain
            )
            result.runs[store] = _once(site, n)
            progress(f"backlog: N={n:,} {store} in {result.runs[store].seconds:.1f} s")
        started = time.perf_counter()
        fetch_all(bed.dovecot, mailbox.shared)
        result.raw_fetch = time.perf_counter() - started
        mails = outbox_mails(
            sites["sqlite"].db_url, mailbox.shared, sites["sqlite"].root / "archive"
        )
        result.raw_send = send(bed.sink.host, bed.sink.port, mails)
        results.append(result)
    return results


def _once(site: Site, n: int) -> Pass:
    """Run `mailflow run --once` with a fresh store over the backlog; check it did all."""
    exited = run(site.config_path, site.root / "once.log", "run", "--once")
    handled, sent = exited.pass_counts()
    if handled != n or sent < n:
        raise DaemonError(f"{site.db_url}: handled {handled} of {n}, sent {sent} mails")
    return Pass(exited.seconds, handled, sent, exited.peak_rss_mb)
