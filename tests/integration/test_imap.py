"""The IMAP intake adapter against the real Dovecot of the test bed."""

from __future__ import annotations

import logging
import selectors
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from testbed.dovecot import Dovecot, TlsFiles
from testbed.mail import append, deliver, imap, send_as
from testbed.scratch import remove_scratch, scratch_dir
from testbed.smtp import SmtpRelay

from mailflow.config import Imap
from mailflow.transport.imap import (
    ImapAuthError,
    ImapCommandError,
    ImapSource,
    ImapTlsError,
    ImapUnavailableError,
    Reconnector,
)

pytestmark = pytest.mark.servers


def message(n: int, extra: bytes = b"") -> bytes:
    """Return a small raw message whose bytes must survive the round trip unchanged."""
    return (
        b"From: ana@example.org\r\nTo: rrss@example.org\r\n"
        b"Subject: prueba %d\r\nMessage-ID: <m%d@example.org>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"\r\nT\xc3\xadtulo: n\xc3\xbamero %d\r\n%s" % (n, n, n, extra)
    )


def settings_for(dovecot: Dovecot, address: str, **overrides: object) -> Imap:
    """Return [imap] settings logging in as address on the plain test listener."""
    account = dovecot.account(address)
    values: dict[str, object] = {
        "host": account.host,
        "port": account.port,
        "security": "none",
        "username": account.username,
        "password": account.password,
        "timeout_seconds": 5,
    }
    return Imap.model_validate({**values, **overrides})


@pytest.fixture
def address(maildomain: str) -> str:
    """Return the shared mailbox's address, empty at the start of each test."""
    return f"rrss@{maildomain}"


@pytest.fixture
def source(dovecot: Dovecot, address: str) -> Iterator[ImapSource]:
    """Give a connected ImapSource on the test's own mailbox; close it afterwards."""
    with ImapSource(settings_for(dovecot, address)) as connected:
        yield connected


def flags_of(dovecot: Dovecot, address: str, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
    """Return every message's flags, read from a second connection."""
    with imap(dovecot, address) as client:
        client.select_folder(folder, readonly=True)
        return dict(client.get_flags(client.search()))


def later(seconds: float, action: Callable[[], object]) -> threading.Thread:
    """Run action in a thread after seconds; join the returned thread."""

    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


# -- reading ------------------------------------------------------------------------------


def test_fetch_after_yields_exact_bytes_in_uid_order_and_leaves_them_unread(
    dovecot: Dovecot, address: str, source: ImapSource
) -> None:
    raws = [message(n, b"x" * n * 100) for n in range(5)]
    uids = [append(dovecot, address, raw) for raw in raws]

    got = list(source.fetch_after(0, batch=2))  # three round trips

    assert [f.uid for f in got] == uids == sorted(uids)
    assert [f.raw for f in got] == raws
    assert {(f.mailbox, f.uidvalidity) for f in got} == {("INBOX", source.uidvalidity)}
    assert all(b"\\Seen" not in flags for flags in flags_of(dovecot, address).values())


def test_ahead_counts_the_messages_fetched_with_the_one_just_yielded(
    dovecot: Dovecot, address: str, source: ImapSource
) -> None:
    for n in range(5):
        append(dovecot, address, message(n, b"x" * 100))
    # Round trips of two: the runner may take the second of each without waiting on
    # the server, then ends its transaction before the next round trip.
    aheads = [source.ahead for _ in source.fetch_after(0, batch=2)]
    assert aheads == [1, 0, 1, 0, 0]
    assert source.ahead == 0


def test_fetch_after_ignores_the_highest_uid_that_n_star_always_matches(
    dovecot: Dovecot, address: str, source: ImapSource
) -> None:
    first, second = (append(dovecot, address, message(n)) for n in (1, 2))

    assert [f.uid for f in source.fetch_after(first)] == [second]
    assert list(source.fetch_after(second)) == []  # "UID SEARCH UID 3:*" answers 2
    assert list(source.fetch_after(second + 100)) == []


def test_fetch_after_sees_mail_delivered_after_the_folder_was_selected(
    dovecot: Dovecot, address: str, source: ImapSource
) -> None:
    # Dovecot shows a client new mail only once announced; a bare SEARCH would miss it.
    deliver(dovecot, [address], message(1))

    assert [f.raw.endswith(message(1)) for f in source.fetch_after(0)] == [True]


def test_uidvalidity_is_the_servers(dovecot: Dovecot, address: str, source: ImapSource) -> None:
    with imap(dovecot, address) as client:
        selected = client.select_folder("INBOX", readonly=True)

    assert source.uidvalidity == selected[b"UIDVALIDITY"] > 0


# -- waiting ------------------------------------------------------------------------------


def test_wait_wakes_within_two_seconds_of_an_smtp_delivery(
    address: str, source: ImapSource, relay: SmtpRelay
) -> None:
    sent_at: list[float] = []

    def send() -> None:
        send_as(relay, "ana@example.org", [address], "Solicitud", "Título: prueba")
        sent_at.append(time.monotonic())

    assert source.has_idle
    sender = later(0.5, send)
    woke = source.wait(10)
    woke_at = time.monotonic()
    sender.join()

    assert woke
    latency = woke_at - sent_at[0]
    assert latency < 2, f"IDLE woke {latency:.3f} s after the delivery"
    assert [f.uid for f in source.fetch_after(0)] == [1]


def test_wait_wakes_on_an_append_from_another_connection(
    dovecot: Dovecot, address: str, source: ImapSource
) -> None:
    appender = later(0.5, lambda: append(dovecot, address, message(1)))
    started = time.monotonic()
    woke = source.wait(10)
    appender.join()

    assert woke
    assert time.monotonic() - started < 2.5


def test_wait_returns_false_when_nothing_comes(source: ImapSource) -> None:
    started = time.monotonic()

    assert source.wait(1.0) is False
    assert 1.0 <= time.monotonic() - started < 2.0
    assert list(source.fetch_after(0)) == []  # the connection is usable again (IDLE ended)


def test_wait_returns_at_once_for_mail_that_came_just_before_it(
    dovecot: Dovecot, address: str, source: ImapSource
) -> None:
    assert list(source.fetch_after(0)) == []
    deliver(dovecot, [address], message(1))  # between the catch-up and the IDLE
    started = time.monotonic()

    assert source.wait(10)
    assert time.monotonic() - started < 1


def test_wait_returns_at_once_for_mail_announced_during_a_catch_up(
    dovecot: Dovecot, address: str, source: ImapSource
) -> None:
    for n in (1, 2):
        append(dovecot, address, message(n))
    fetched = source.fetch_after(0, batch=1)
    first = next(fetched)
    deliver(dovecot, [address], message(3))  # announced in the reply to the next FETCH
    rest = list(fetched)
    assert [f.uid for f in [first, *rest]] == [1, 2]
    started = time.monotonic()

    assert source.wait(10)
    assert time.monotonic() - started < 1
    assert [f.uid for f in source.fetch_after(2)] == [3]


def test_wait_polls_with_noop_when_the_server_has_no_idle(
    dovecot: Dovecot, address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pauses: list[float] = []
    with ImapSource(settings_for(dovecot, address, poll_seconds=30), sleep=pauses.append) as src:
        real_has = src._has
        monkeypatch.setattr(src, "_has", lambda name: name != "IDLE" and real_has(name))
        assert not src.has_idle

        quiet = src.wait(2)
        deliver(dovecot, [address], message(1))
        announced = src.wait(2)
        full_interval = src.wait(100)

    assert (quiet, announced, full_interval) == (False, True, True)
    assert pauses == pytest.approx([2, 2, 30], abs=0.1)


# -- broken connections -------------------------------------------------------------------


class Proxy:
    """Forward TCP connections to a server; a test can cut, freeze or refuse them."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server((host, 0))
        self.port: int = self.listener.getsockname()[1]
        self.frozen = threading.Event()
        self.refusing = threading.Event()
        self.peers: dict[socket.socket, socket.socket] = {}
        self.lock = threading.Lock()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            for key, _ in self.selector.select(timeout=0.05):
                with self.lock:
                    if key.fileobj is self.listener:
                        self.accept()
                    elif not self.frozen.is_set():
                        self.forward(key.fileobj)  # type: ignore[arg-type]

    def accept(self) -> None:
        client, _ = self.listener.accept()
        if self.refusing.is_set():
            client.close()
            return
        server = socket.create_connection(self.target)
        self.peers[client], self.peers[server] = server, client
        for sock in (client, server):
            self.selector.register(sock, selectors.EVENT_READ)

    def forward(self, sock: socket.socket) -> None:
        if sock not in self.peers:
            return
        try:
            data = sock.recv(65536)
            if data:
                self.peers[sock].sendall(data)
                return
        except OSError:
            pass
        self.drop(sock)

    def drop(self, sock: socket.socket) -> None:
        if sock not in self.peers:
            return  # already dropped with its peer
        for s in (sock, self.peers[sock]):
            del self.peers[s]
            self.selector.unregister(s)
            s.close()

    def cut(self) -> None:
        """Close every forwarded connection, as a server crash or a reset would."""
        with self.lock:
            for sock in list(self.peers):
                self.drop(sock)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.cut()
        self.selector.close()
        self.listener.close()


@pytest.fixture
def proxy(dovecot: Dovecot) -> Iterator[Proxy]:
    """Give a proxy in front of Dovecot's IMAP port."""
    forwarder = Proxy(dovecot.host, dovecot.imap_port)
    yield forwarder
    forwarder.close()


def test_a_cut_connection_raises_during_idle_and_reconnecting_catches_up(
    dovecot: Dovecot, address: str, proxy: Proxy
) -> None:
    with ImapSource(settings_for(dovecot, address, port=proxy.port)) as src:
        cutter = later(0.5, proxy.cut)
        started = time.monotonic()
        with pytest.raises(ImapUnavailableError, match="IDLE falló"):
            src.wait(30)
        cutter.join()
        assert time.monotonic() - started < 2
        assert not src.connected

        append(dovecot, address, message(1))
        Reconnector(src).connect()
        assert [f.raw for f in src.fetch_after(0)] == [message(1)]


def test_a_frozen_connection_raises_after_the_socket_timeout(
    dovecot: Dovecot, address: str, proxy: Proxy
) -> None:
    # No FIN, no RST: only the read timeout can tell, since idle_check hides nothing here.
    with ImapSource(settings_for(dovecot, address, port=proxy.port, timeout_seconds=5)) as src:
        freezer = later(0.5, proxy.frozen.set)
        started = time.monotonic()
        with pytest.raises(ImapUnavailableError, match="timed out"):
            src.wait(2)  # IDLE ends at 2 s; DONE then waits 5 s for an answer
        freezer.join()
        assert 6.5 < time.monotonic() - started < 9


def test_a_kicked_session_raises_with_the_servers_bye(
    dovecot: Dovecot, address: str, source: ImapSource
) -> None:
    kick = ["doveadm", "-c", str(dovecot.conf_path), "kick", address]
    kicker = later(0.5, lambda: subprocess.run(kick, check=True, capture_output=True))

    with pytest.raises(ImapUnavailableError, match="el servidor cerró la conexión"):
        source.wait(30)
    kicker.join()


def test_reconnector_backs_off_until_the_server_accepts_again(
    dovecot: Dovecot, address: str, proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            proxy.refusing.clear()

    proxy.refusing.set()
    src = ImapSource(settings_for(dovecot, address, port=proxy.port))
    with caplog.at_level(logging.WARNING, logger="mailflow.transport.imap"):
        Reconnector(src, sleep=pause, rand=lambda: 1.0).connect()
    try:
        assert src.connected
    finally:
        src.close()

    assert pauses == [1.0, 2.0, 4.0]
    lines = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(lines) == 3
    assert all(f"{address}@127.0.0.1:{proxy.port}" in line for line in lines)
    assert not any(dovecot.password in line for line in lines)


# -- moving -------------------------------------------------------------------------------


def test_move_creates_the_folder_and_moves_only_the_given_messages(
    dovecot: Dovecot, address: str, source: ImapSource
) -> None:
    uids = [append(dovecot, address, message(n)) for n in (1, 2, 3)]

    source.move(uids[:2], "Procesados")
    source.move(uids[:2], "Procesados")  # a repeat after a crash does nothing

    with imap(dovecot, address) as client:
        assert client.folder_exists("Procesados")
        assert "Procesados" in [f[2] for f in client.list_sub_folders()]  # subscribed
    assert list(flags_of(dovecot, address)) == [uids[2]]
    assert [f.uid for f in source.fetch_after(0)] == [uids[2]]
    moved = ImapSource(settings_for(dovecot, address, folder="Procesados"))
    with moved:
        assert [f.raw for f in moved.fetch_after(0)] == [message(1), message(2)]


def test_move_without_the_move_extension_expunges_only_its_own_messages(
    dovecot: Dovecot, address: str, source: ImapSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_has = source._has
    monkeypatch.setattr(source, "_has", lambda name: name != "MOVE" and real_has(name))
    mine = append(dovecot, address, message(1))
    theirs = append(dovecot, address, message(2), flags=["\\Deleted"])  # a person's

    source.move([mine], "Procesados")

    assert flags_of(dovecot, address) == {theirs: (b"\\Deleted",)}
    assert len(flags_of(dovecot, address, "Procesados")) == 1


# -- refusals -----------------------------------------------------------------------------


def test_a_wrong_password_raises_auth_error_naming_what_to_check(
    dovecot: Dovecot, address: str
) -> None:
    pauses: list[float] = []
    src = ImapSource(settings_for(dovecot, address, password="not-the-password"))

    with pytest.raises(ImapAuthError) as raised:
        Reconnector(src, sleep=pauses.append).connect()

    text = str(raised.value)
    assert address in text
    assert "imap.username" in text
    assert "password" in text
    assert "not-the-password" not in text
    assert pauses == []  # never retried
    assert not src.connected


def test_a_missing_folder_is_a_command_error(dovecot: Dovecot, address: str) -> None:
    src = ImapSource(settings_for(dovecot, address, folder="NoExiste"))

    with pytest.raises(ImapCommandError, match="select NoExiste rechazado"):
        src.connect()
    assert not src.connected


def test_an_unreachable_server_is_unavailable(dovecot: Dovecot, address: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    src = ImapSource(settings_for(dovecot, address, port=port))

    with pytest.raises(ImapUnavailableError, match="connect falló"):
        src.connect()


# -- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_dovecot() -> Iterator[tuple[Dovecot, ssl.SSLContext]]:
    """Run a Dovecot with a throwaway self-signed certificate; give a context trusting it."""
    folder = scratch_dir("mailflow-imap-tls-")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(cafile=str(cert))
    server = Dovecot(tls=TlsFiles(cert=cert, key=key))
    try:
        server.start()
        yield server, context
    finally:
        server.stop()
        remove_scratch(folder)


def tls_settings(server: Dovecot, security: str) -> Imap:
    """Return settings for one mailbox per security mode on the TLS-enabled Dovecot."""
    port = server.imaps_port if security == "tls" else server.imap_port
    return settings_for(server, f"{security}@example.org", security=security, port=port)


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_modes_verify_the_server_with_the_given_context(
    tls_dovecot: tuple[Dovecot, ssl.SSLContext], security: str
) -> None:
    server, context = tls_dovecot
    append(server, f"{security}@example.org", message(1))

    with ImapSource(tls_settings(server, security), ssl_context=context) as src:
        assert [f.raw for f in src.fetch_after(0)] == [message(1)]


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_an_untrusted_certificate_is_a_tls_error(
    tls_dovecot: tuple[Dovecot, ssl.SSLContext], security: str
) -> None:
    server, _ = tls_dovecot
    src = ImapSource(tls_settings(server, security))  # the system's CAs do not know it

    with pytest.raises(ImapTlsError, match="certificado TLS del servidor no fue aceptado"):
        src.connect()


def test_starttls_on_a_server_without_it_is_a_tls_error(dovecot: Dovecot, address: str) -> None:
    src = ImapSource(settings_for(dovecot, address, security="starttls"))

    with pytest.raises(ImapTlsError, match="no ofrece STARTTLS"):
        src.connect()
