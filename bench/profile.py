"""Profile one `mailflow run --once` over a backlog of N requests, or count its SQL.

    .venv/bin/python bench/profile.py 500 sqlite postgresql          # wall time per store
    .venv/bin/python bench/profile.py 500 sqlite --profile           # pyinstrument text report
    .venv/bin/python bench/profile.py 100 postgresql --queries       # statements, most first

It starts the test bed like `make bench`, fills a shared mailbox with N requests (the
backlog's corpus) and runs mailflow on a fresh store per store kind; reports go to
``--out`` (default: the current directory).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench.backlog import requests_between
from bench.bed import REPO, STORES, bed
from bench.mailbox import append_all, fetch_all

PYTHON = REPO / ".venv" / "bin" / "python"
# Counts every statement by its first 110 characters and writes them, most frequent first.
_COUNT = """
import atexit, collections, re, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
seen = collections.Counter()
@event.listens_for(Engine, "before_cursor_execute")
def _count(conn, cursor, statement, *args):
    seen[re.sub(r"\\s+", " ", statement)[:110]] += 1
out_path = sys.argv.pop(1)
def _write():
    with open(out_path, "w") as out:
        out.writelines(f"{n:7d} {s}\\n" for s, n in seen.most_common())
atexit.register(_write)
from mailflow.cli import main
main()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, help="requests in the backlog")
    parser.add_argument("stores", nargs="*", choices=STORES, default=list(STORES))
    parser.add_argument("--profile", action="store_true", help="run under pyinstrument")
    parser.add_argument("--queries", action="store_true", help="count SQL statements")
    parser.add_argument("--out", type=Path, default=Path.cwd())
    args = parser.parse_args()
    with bed() as b:
        mailbox = b.site("profile-mailbox", "sqlite", "sink")
        append_all(b.dovecot, mailbox.shared, requests_between(mailbox, 0, args.n))
        fetch_all(b.dovecot, mailbox.shared)  # warm Dovecot's caches, as the bench does
        for store in args.stores:
            site = b.site(f"profile-{store}", store, "sink", domain=mailbox.domain)
            mailflow = ["--config", str(site.config_path), "run", "--once"]
            report = args.out / f"{'queries' if args.queries else 'profile'}-{store}-{args.n}.txt"
            if args.queries:
                cmd = [str(PYTHON), "-c", _COUNT, str(report), *mailflow]
            elif args.profile:
                pyinstrument = ["-m", "pyinstrument", "-r", "text", "-o", str(report)]
                cmd = [str(PYTHON), *pyinstrument, str(REPO / ".venv/bin/mailflow"), *mailflow]
            else:
                cmd = [str(REPO / ".venv/bin/mailflow"), *mailflow]
            started = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
            seconds = time.perf_counter() - started
            summary = [line for line in done.stdout.splitlines() if "salida:" in line]
            outcome = summary[-1] if summary else done.stderr[-500:]
            print(f"{store} N={args.n}: {seconds:.1f} s {outcome}")
            if args.profile or args.queries:
                print(f"  report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
