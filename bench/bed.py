"""The test bed of the benchmarks: Dovecot, the relay into it, PostgreSQL and a sink server.

The servers are the test suite's own (tests/testbed/). Each measurement gets a fresh mail
domain (empty mailboxes) and a fresh database, and a mailflow config written by
``testbed.site.Site`` that points at the relay or, for bulk outbound mail, at the sink.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from testbed.dovecot import Dovecot
from testbed.postgres import Postgres
from testbed.site import Site
from testbed.smtp import SmtpRelay

REPO = Path(__file__).resolve().parent.parent

StoreKind = Literal["sqlite", "postgresql"]
Peer = Literal["relay", "sink"]
STORES: tuple[StoreKind, ...] = ("sqlite", "postgresql")
SMTP_CONNECTIONS = 3  # [smtp] connections of every benchmark site


class Sink:
    """The discard SMTP server of bench/sink.py, in a process of its own."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.sink"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())

    def stop(self) -> None:
        """Close its stdin (it exits then) and wait; kill it if it lingers."""
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@dataclass
class Bed:
    """Running servers plus a scratch directory for configs, databases and archives."""

    dovecot: Dovecot
    relay: SmtpRelay
    postgres: Postgres
    sink: Sink
    root: Path
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def site(
        self, name: str, store: StoreKind, peer: Peer = "relay", *, domain: str | None = None
    ) -> Site:
        """Return a new institution with empty mailboxes, a fresh store and its config.

        With peer "sink", the daemon's mail goes to the sink server instead of the relay.
        With a domain, the site reads that domain's (already filled) mailboxes instead.
        """
        slug = f"{name}-{next(self._names)}"
        if domain is None:
            domain = f"{slug}.bench.example.org"
            self.dovecot.add_domain(domain)
        root = self.root / slug
        root.mkdir()
        if store == "sqlite":
            url = f"sqlite:///{root / 'mailflow.db'}"
        else:
            url = self.postgres.create_database(slug)
        site = Site(self.dovecot, self.relay, domain, url, root)
        text = site.config_text()
        relay_at = f'[smtp]\nhost = "{self.relay.host}"\nport = {self.relay.port}\n'
        assert relay_at in text, "testbed.site changed its [smtp] section"
        server = self.sink if peer == "sink" else self.relay
        host, port = server.host, server.port
        # Issue 8: concurrency where the server allows it (both of ours do).
        smtp_at = f'[smtp]\nhost = "{host}"\nport = {port}\nconnections = {SMTP_CONNECTIONS}\n'
        site.config_path.write_text(text.replace(relay_at, smtp_at), encoding="utf-8")
        return site


@contextmanager
def bed(keep: bool = False) -> Iterator[Bed]:
    """Start every server; stop them all (and delete their files) at the end."""
    root = Path(tempfile.mkdtemp(prefix="mailflow-bench-"))
    root.chmod(0o755)
    try:
        with ExitStack() as stack:
            dovecot = stack.enter_context(Dovecot(domains=("bench.example.org",)))
            relay = stack.enter_context(SmtpRelay(dovecot.host, dovecot.lmtp_port))
            postgres = stack.enter_context(Postgres())
            sink = Sink()
            stack.callback(sink.stop)
            yield Bed(dovecot, relay, postgres, sink, root)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
