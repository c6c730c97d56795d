"""Fixtures shared by all tests: the real-server test bed and the store URLs.

Servers start lazily, the first time a test asks for one, and stop at the end of the session;
pure unit tests never touch them and run without Dovecot or PostgreSQL installed. Tests that
use a server fixture are marked `servers` automatically, so `-m "not servers"` skips them.
Install the servers with `scripts/ensure-test-packages.sh` (as root).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testbed.ca import TestCa, make_ca
from testbed.dovecot import Dovecot
from testbed.oauth2 import FakeOAuth2
from testbed.postgres import Postgres
from testbed.scratch import remove_scratch, scratch_dir
from testbed.site import Scenario, Site
from testbed.smtp import SmtpRelay

from mailflow.store.repository import Store, upgrade

SERVER_FIXTURES = frozenset(
    {"dovecot", "smtp_relay", "relay", "postgres", "maildomain", "scenario", "tls_bed"}
)
_startup_seconds: dict[str, float] = {}
_domain_counter = itertools.count(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a server fixture (directly or not) with `servers`."""
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report how long each server took to start, to spot a slow machine at a glance."""
    if _startup_seconds:
        times = ", ".join(f"{name} {secs:.2f} s" for name, secs in _startup_seconds.items())
        terminalreporter.write_line(f"testbed start-up: {times}")


def _slug(request: pytest.FixtureRequest, limit: int) -> str:
    """Return the test's name reduced to [a-z0-9-], for database and domain names."""
    return re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:limit].strip("-")


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """Run Dovecot (IMAP + IDLE, LMTP) for the session; any address @example.org/.com works."""
    server = Dovecot()
    started = time.monotonic()
    try:
        server.start()
        _startup_seconds["dovecot"] = time.monotonic() - started
        yield server
    finally:
        server.stop()  # raises if any Dovecot process survives


@pytest.fixture(scope="session")
def smtp_relay(dovecot: Dovecot) -> Iterator[SmtpRelay]:
    """Run the SMTP relay into Dovecot for the session (see `relay` for a clean one per test)."""
    server = SmtpRelay(dovecot.host, dovecot.lmtp_port)
    started = time.monotonic()
    try:
        server.start()
        _startup_seconds["smtp_relay"] = time.monotonic() - started
        yield server
    finally:
        server.stop()


@pytest.fixture
def relay(smtp_relay: SmtpRelay) -> Iterator[SmtpRelay]:
    """Give the session's relay with no pending faults and empty logs, and clean up after."""
    smtp_relay.reset()
    smtp_relay.resume()  # in case a test ended inside refusing_connections() by force
    yield smtp_relay
    smtp_relay.reset()
    smtp_relay.resume()


@pytest.fixture
def maildomain(dovecot: Dovecot, request: pytest.FixtureRequest) -> str:
    """Register and return a mail domain of this test's own: all its mailboxes start empty."""
    domain = f"t{next(_domain_counter)}-{_slug(request, 30)}.example.net"
    dovecot.add_domain(domain)
    return domain


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """Run a PostgreSQL cluster for the session (trust auth, 127.0.0.1, free port)."""
    server = Postgres()
    started = time.monotonic()
    try:
        server.start()
        _startup_seconds["postgres"] = time.monotonic() - started
        yield server
    finally:
        server.stop()  # raises if any postgres process survives


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.servers),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Give a SQLAlchemy URL of an empty database: a SQLite file, or a fresh PostgreSQL db."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mailflow.db'}"
        return
    # Asked for here, not in the signature, so the sqlite variant never starts PostgreSQL.
    server: Postgres = request.getfixturevalue("postgres")
    url = server.create_database(_slug(request, 40))
    yield url
    server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """Give a store on a freshly migrated database (SQLite and PostgreSQL, from ``db_url``)."""
    upgrade(db_url)
    store = Store.from_url(db_url)
    yield store
    store.close()


@pytest.fixture
def scenario(
    dovecot: Dovecot, relay: SmtpRelay, maildomain: str, db_url: str, tmp_path: Path
) -> Iterator[Scenario]:
    """Give a whole institution on the test bed and a daemon to run passes over it."""
    scenario = Scenario(Site(dovecot, relay, maildomain, db_url, tmp_path))
    yield scenario
    scenario.close()


@dataclass
class TlsBed:
    """Servers that speak TLS only with the session's throwaway CA, and take XOAUTH2.

    ``dovecot``: IMAPS on ``imaps_port``, STARTTLS on ``imap_port``, XOAUTH2 checked against
    ``oauth``. ``relay``: STARTTLS on ``port``, implicit TLS on ``tls_port``, XOAUTH2 too.
    Separate from the plain ``dovecot``/``smtp_relay``, which the other tests use and which
    serve as the servers that do not offer STARTTLS.
    """

    ca: TestCa
    oauth: FakeOAuth2
    dovecot: Dovecot
    relay: SmtpRelay


@pytest.fixture(scope="session")
def tls_bed() -> Iterator[TlsBed]:
    """Run the TLS/XOAUTH2 test bed for the session (started by the first test asking)."""
    started = time.monotonic()
    ca = make_ca(scratch_dir("mailflow-ca-"))
    with contextlib.ExitStack() as stack:
        stack.callback(remove_scratch, ca.ca_file.parent)
        oauth = stack.enter_context(FakeOAuth2())
        dovecot = Dovecot(tls=ca.server, oauth2_tokeninfo_url=oauth.tokeninfo_url)
        stack.enter_context(dovecot)
        relay = SmtpRelay(dovecot.host, dovecot.lmtp_port, tls=ca.server, oauth2=oauth.valid)
        stack.enter_context(relay)
        _startup_seconds["tls_bed"] = time.monotonic() - started
        yield TlsBed(ca, oauth, dovecot, relay)
