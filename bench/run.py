"""Run mailflow's benchmarks on the real test bed and print one table (`make bench`).

Sections: latency (the daemon in IDLE, reply → next person's mail), backlog (`run --once`
over N new requests), outbound (outbox flush vs raw aiosmtplib) and memory (peak RSS with
20 MB attachments and a big store), each on SQLite and PostgreSQL, each against a baseline
measured in the same run. bench/README.md says how to read the table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import backlog, latency, memory, outbound
from bench.bed import STORES, Bed, Peer, StoreKind, bed
from bench.table import Row, render

SECTIONS = ("latency", "backlog", "outbound", "memory")


@dataclass(frozen=True)
class Sizes:
    """How much work each section does."""

    actions: int
    backlog: list[int]
    outbound_requests: int
    store_requests: int
    big_mails: int


FULL = Sizes(200, [500, 2000, 10000], 500, 100_000, 5)
QUICK = Sizes(30, [200, 500], 200, 10_000, 3)


def say(text: str) -> None:
    """Report progress on stderr; the table alone goes to stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def pct(values: list[float], p: int) -> float:
    """Return the p-th percentile (inclusive method)."""
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def verdict(value: float, limit: float, *, at_least: bool = False) -> bool:
    return value >= limit if at_least else value <= limit


def latency_rows(b: Bed, sizes: Sizes) -> list[Row]:
    runs = {}
    for store in STORES:
        say(f"latency: {sizes.actions} actions through the daemon ({store})")
        runs[store] = latency.measure(b, store, sizes.actions)
    base = [x for r in runs.values() for x in r.baseline]
    rows = []
    for p, limit in ((50, 0.5), (95, None), (99, 2.0)):
        got = {s: pct(r.daemon, p) for s, r in runs.items()}
        worst, ref = max(got.values()), pct(base, p)
        rows.append(
            Row(
                f"latency p{p}, {sizes.actions} actions (s)",
                f"{got['sqlite']:.3f}",
                f"{got['postgresql']:.3f}",
                f"{ref:.3f}",
                f"{ref / worst:.2f}",
                f"≤ {limit:g} s" if limit else "—",
                verdict(worst, limit) if limit else None,
            )
        )
    # Floors: the daemon's wake-up is one baseline hop (SMTP → LMTP → IDLE, held 500 ms by
    # Dovecot), its own mail then one more relay → LMTP delivery.
    idle_hop = statistics.median(base)
    lmtp_hop = statistics.median(x for r in runs.values() for x in r.baseline_delivered)
    rows.append(
        Row(
            "  floor: baseline p50 + relay → LMTP p50 (s)",
            f"{idle_hop + lmtp_hop:.3f}",
            f"{idle_hop + lmtp_hop:.3f}",
            f"{lmtp_hop:.3f} (SMTP → LMTP only)",
        )
    )
    own = {s: [d - idle_hop - lmtp_hop for d in r.daemon] for s, r in runs.items()}
    for p in (50, 99):
        rows.append(
            Row(
                f"  daemon's own turn p{p} (latency − floor, s)",
                f"{pct(own['sqlite'], p):.3f}",
                f"{pct(own['postgresql'], p):.3f}",
            )
        )
    rows.append(
        Row(
            "  latency p50 to the recipient's IDLE notice (+500 ms hold, s)",
            f"{pct(runs['sqlite'].daemon_idle, 50):.3f}",
            f"{pct(runs['postgresql'].daemon_idle, 50):.3f}",
        )
    )
    rows.append(
        Row(
            "  daemon peak RSS during the latency run (MB)",
            f"{runs['sqlite'].peak_rss_mb:.0f}",
            f"{runs['postgresql'].peak_rss_mb:.0f}",
        )
    )
    return rows


def backlog_rows(b: Bed, sizes: Sizes) -> list[Row]:
    say(f"backlog: N = {sizes.backlog}, outbound mail to the sink")
    results = backlog.measure(b, sizes.backlog, progress=say)
    rows = []
    for r in results:
        worst = max(p.seconds for p in r.runs.values())
        ratio = r.raw / worst
        sent = r.runs["sqlite"].sent
        rows.append(
            Row(
                f"backlog N={r.n:,} ({r.mailbox_mb:,.0f} MB, {sent:,} mails out) run --once (s)",
                f"{r.runs['sqlite'].seconds:.1f}",
                f"{r.runs['postgresql'].seconds:.1f}",
                f"{r.raw:.1f} (fetch {r.raw_fetch:.1f} + send {r.raw_send:.1f})",
                f"{ratio:.2f}",
                "≥ 0.5",
                ratio >= 0.5,
            )
        )
    if len(results) >= 3:
        rows.append(_growth(results))
    rows.append(
        Row(
            f"  backlog peak RSS at N={results[-1].n:,} (MB)",
            f"{results[-1].runs['sqlite'].peak_rss_mb:.0f}",
            f"{results[-1].runs['postgresql'].peak_rss_mb:.0f}",
        )
    )
    return rows


def _growth(results: list[backlog.Backlog]) -> Row:
    """Compare the cost per extra mail of the last step in N with that of the first step."""
    first, mid, last = results[0], results[-2], results[-1]

    def growth(store: StoreKind) -> float:
        early = (mid.runs[store].seconds - first.runs[store].seconds) / (mid.n - first.n)
        late = (last.runs[store].seconds - mid.runs[store].seconds) / (last.n - mid.n)
        return late / early

    got = {s: growth(s) for s in STORES}
    return Row(
        f"  linearity: s/mail from {mid.n:,} to {last.n:,} ÷ from {first.n:,} to {mid.n:,}",
        f"{got['sqlite']:.2f}",
        f"{got['postgresql']:.2f}",
        target="≤ 1.25",
        ok=max(got.values()) <= 1.25,
    )


def outbound_rows(b: Bed, sizes: Sizes) -> list[Row]:
    rates = {}
    for store in STORES:
        say(f"outbound: flush the outbox of {sizes.outbound_requests} requests ({store})")
        rates[store] = outbound.measure(b, store, sizes.outbound_requests)
    rows = []
    peers: tuple[tuple[Peer, str], ...] = (
        ("sink", "sink, stores nothing"),
        ("relay", "relay → Dovecot LMTP"),
    )
    for peer, label in peers:
        got = {s: r[peer] for s, r in rates.items()}
        raw = statistics.mean(r.raw for r in got.values())
        ratio = min(r.flush for r in got.values()) / raw
        mails = got["sqlite"].mails
        rows.append(
            Row(
                f"outbox flush of {mails:,} mails → {label} (mails/s)",
                f"{got['sqlite'].flush:.0f}",
                f"{got['postgresql'].flush:.0f}",
                f"{raw:.0f} (raw aiosmtplib)",
                f"{ratio:.2f}",
                "≥ 0.5",
                ratio >= 0.5,
            )
        )
    return rows


def memory_rows(b: Bed, sizes: Sizes) -> list[Row]:
    got = {}
    for store in STORES:
        say(f"memory: {sizes.big_mails} × 20 MB, store of {sizes.store_requests:,} ({store})")
        got[store] = memory.measure(b, store, sizes.store_requests, sizes.big_mails)
    worst = max(m.big_mb for m in got.values())
    idle = max(m.idle_mb for m in got.values())
    held = min(m.requests for m in got.values())
    return [
        Row(
            f"peak RSS, {sizes.big_mails} mails × 20 MB photo, store of {held:,} requests (MB)",
            f"{got['sqlite'].big_mb:.0f}",
            f"{got['postgresql'].big_mb:.0f}",
            f"{idle:.0f} (no new mail)",
            "—",
            "≤ 200 MB",
            worst <= 200,
        ),
        Row(
            "peak RSS, 1 mail × 30 MB photo, same store (MB)",
            f"{got['sqlite'].huge_mb:.0f}",
            f"{got['postgresql'].huge_mb:.0f}",
            f"{idle:.0f} (no new mail)",
            "—",
            "≤ 200 MB",
            max(m.huge_mb for m in got.values()) <= 200,
        ),
    ]


BUILDERS: dict[str, Callable[[Bed, Sizes], list[Row]]] = {
    "latency": latency_rows,
    "backlog": backlog_rows,
    "outbound": outbound_rows,
    "memory": memory_rows,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: 30 actions, backlog 200/500, outbox of 200 requests, store of 10,000",
    )
    parser.add_argument(
        "--only", choices=SECTIONS, action="append", help="run only this section (repeatable)"
    )
    parser.add_argument("--keep", action="store_true", help="keep configs, stores and logs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    rows: list[Row] = []
    with bed(keep=args.keep) as b:
        say(
            f"test bed up: Dovecot IMAP :{b.dovecot.imap_port}, relay :{b.relay.port}, "
            f"sink :{b.sink.port}, PostgreSQL :{b.postgres.port}; files in {b.root}"
        )
        for section in args.only or SECTIONS:
            section_started = time.monotonic()
            rows += BUILDERS[section](b, sizes)
            say(f"{section} done in {time.monotonic() - section_started:.0f} s")
    print(render(rows))
    mode = "quick" if args.quick else "full"
    print(f"\n{mode} run, {time.monotonic() - started:.0f} s; see bench/README.md for each row.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
