"""The SMTP adapter against the real relay into Dovecot, plus small real servers for TLS/auth.

A TCP proxy of our own sits between the adapter and the relay where a test must count
connections, cut one, answer the greeting with 421 or speak TLS; everything still ends in the
recipients' real mailboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import random
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from testbed.dovecot import Dovecot
from testbed.mail import build_message, fetch_raw, parse
from testbed.ports import HOST, free_port
from testbed.smtp import SmtpRelay

from mailflow.app.outbox import Verdict
from mailflow.config import Smtp
from mailflow.transport.smtp import (
    Outgoing,
    SendResult,
    SmtpAuthError,
    SmtpSender,
    SmtpTlsError,
)

SENDER = "rrss@example.org"
EHLO = "mailflow.test"  # a fixed EHLO name: socket.getfqdn() can hang on DNS in sandboxes


def _settings(port: int, security: str = "none", **extra: Any) -> Smtp:
    return Smtp.model_validate(
        {"host": HOST, "port": port, "security": security, "from_address": SENDER, **extra}
    )


def _sender(port: int, security: str = "none", **extra: Any) -> SmtpSender:
    tls_context = extra.pop("tls_context", None)
    connections = extra.pop("connections", 1)
    return SmtpSender(
        _settings(port, security, **extra),
        tls_context=tls_context,
        connections=connections,
        local_hostname=EHLO,
    )


def _judged(results: list[SendResult]) -> list[Verdict]:
    """Return what the outbox's retry policy makes of the adapter's results."""
    return [Verdict.of(result) for result in results]


def _message(key: int | str, recipients: tuple[str, ...], subject: str = "") -> Outgoing:
    message = build_message(
        "Redes Sociales <rrss@example.org>",
        recipients,
        subject or f"[RRSS-2026-{key:0>4}] Mensaje {key}",
        f"Publicación {key}: contenido con acentos y una línea\n.que empieza con punto\n",
        headers={"Message-ID": f"<rrss-test-{key}@example.org>"},
    )
    # CRLF line ends, as the outbox stores them: the relay then sees these very bytes.
    return Outgoing(key, SENDER, recipients, message.as_bytes(policy=email.policy.SMTP))


def _delivered(dovecot: Dovecot, address: str, item: Outgoing) -> int:
    """Return how many copies of item's exact bytes sit in address's INBOX."""
    # Dovecot's LMTP prepends trace headers (Return-Path, Delivered-To, Received) only.
    return sum(raw.endswith(item.raw) for raw in fetch_raw(dovecot, address))


# -- a TCP proxy: count, cut, refuse at greeting, terminate TLS -----------------------------


class _Proxy:
    """Forward connections to upstream in threads; see the attributes for the tricks."""

    def __init__(self, upstream: int, tls: ssl.SSLContext | None = None) -> None:
        self.upstream = upstream
        self.tls = tls
        self.connections = 0
        self.greeting: bytes | None = None  # answer this and hang up, instead of proxying
        self.silent = False  # accept, then say nothing: a server that hangs
        self.cut_at_mail: int | None = None  # drop the link at the Nth MAIL FROM (counted)
        self.closed_by_client = threading.Semaphore(0)  # released as each client hangs up
        self._mails = 0
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(0.1)
        self.port: int = self.listener.getsockname()[1]
        self._spawn(self._accept)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self.connections += 1
            with self._lock:
                self._sockets.append(client)
            if self.silent:
                continue
            if self.greeting is not None:
                with contextlib.suppress(OSError):
                    client.sendall(self.greeting)
                self._hang_up(client)
                continue
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        if self.tls is not None:
            try:
                client = self.tls.wrap_socket(client, server_side=True)
            except OSError:
                self._hang_up(client)
                return
            with self._lock:
                self._sockets.append(client)
        server = socket.create_connection((HOST, self.upstream))
        with self._lock:
            self._sockets.append(server)
        self._spawn(self._pump, server, client, False)
        self._pump(client, server, True)

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        while True:
            try:
                chunk = source.recv(65536)
            except OSError:
                chunk = b""
            if from_client and chunk.upper().startswith(b"MAIL FROM"):
                with self._lock:
                    self._mails += 1
                    cut = self._mails == self.cut_at_mail
                if cut:
                    chunk = b""
            if not chunk:
                if from_client:
                    self.closed_by_client.release()
                self._hang_up(source)
                self._hang_up(sink)
                return
            try:
                sink.sendall(chunk)
            except OSError:
                self._hang_up(source)
                return

    @staticmethod
    def _hang_up(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed.set()
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                self._hang_up(sock)
        for thread in self._threads:
            thread.join(timeout=10)
        with self._lock:
            for sock in self._sockets:
                sock.close()


@pytest.fixture
def proxy(relay: SmtpRelay) -> Iterator[_Proxy]:
    server = _Proxy(relay.port)
    yield server
    server.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Make a self-signed certificate for localhost / 127.0.0.1 with the openssl CLI."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def _trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


# -- sending through the relay into real mailboxes -----------------------------------------


def test_twenty_messages_over_one_connection_arrive_byte_for_byte(
    relay: SmtpRelay, proxy: _Proxy, dovecot: Dovecot, maildomain: str
) -> None:
    items = [_message(i, (f"u{i % 4}@{maildomain}", f"all@{maildomain}")) for i in range(20)]

    results = _judged(_sender(proxy.port).send_many_sync(items))

    assert proxy.connections == 1
    assert [r.key for r in results] == list(range(20))
    assert all(r.done and r.error is None and not r.permanent for r in results)
    assert [r.accepted for r in results] == [item.recipients for item in items]
    assert [m.raw for m in relay.accepted] == [item.raw for item in items]
    assert all(_delivered(dovecot, f"all@{maildomain}", item) == 1 for item in items)
    for i, raw in enumerate(fetch_raw(dovecot, f"u1@{maildomain}")):
        assert parse(raw)["Message-ID"] == f"<rrss-test-{4 * i + 1}@example.org>"


def test_temporary_refusal_of_one_recipient_is_retried_with_the_same_bytes(
    relay: SmtpRelay, dovecot: Dovecot, maildomain: str
) -> None:
    ana, beto, cata = (f"{n}@{maildomain}" for n in ("ana", "beto", "cata"))
    item = _message(1, (ana, beto, cata))
    relay.fail_next(451, recipient=beto)
    sender = _sender(relay.port)

    [first] = _judged(sender.send_many_sync([item]))

    assert first.accepted == (ana, cata)
    assert list(first.temporary) == [beto]
    assert first.temporary[beto].startswith("451 ")
    assert (first.done, first.retry_recipients, first.error) == (False, (beto,), None)
    assert _delivered(dovecot, ana, item) == _delivered(dovecot, cata, item) == 1
    assert _delivered(dovecot, beto, item) == 0

    retry = Outgoing(item.key, item.sender, first.retry_recipients, item.raw)
    [second] = _judged(sender.send_many_sync([retry]))

    assert second.done and second.accepted == (beto,)
    assert [_delivered(dovecot, a, item) for a in (ana, beto, cata)] == [1, 1, 1]


def test_permanent_refusals_are_told_apart_per_recipient(
    relay: SmtpRelay, dovecot: Dovecot, maildomain: str
) -> None:
    ok, refused = f"ok@{maildomain}", f"refused@{maildomain}"
    unknown = "nadie@unregistered.example"  # Dovecot itself answers 550 for it
    item = _message(2, (ok, refused, unknown))
    relay.fail_next(550, recipient=refused)

    [result] = _judged(_sender(relay.port).send_many_sync([item]))

    assert result.accepted == (ok,)
    assert set(result.permanent) == {refused, unknown}
    assert all(reply.startswith("550 ") for reply in result.permanent.values())
    assert result.done and result.error is None
    assert _delivered(dovecot, ok, item) == 1


def test_all_recipients_refused_sends_no_data(relay: SmtpRelay, maildomain: str) -> None:
    a, b = f"a@{maildomain}", f"b@{maildomain}"
    relay.fail_next(550, recipient=a)
    relay.fail_next(452, recipient=b)

    [result] = _judged(_sender(relay.port).send_many_sync([_message(3, (a, b))]))

    assert (result.accepted, list(result.permanent), list(result.temporary)) == ((), [a], [b])
    assert relay.accepted == []


@pytest.mark.parametrize(
    ("code", "stage"), [(554, "data"), (451, "data"), (451, "mail"), (550, "mail"), (421, "mail")]
)
def test_whole_message_refusal_applies_to_every_recipient(
    relay: SmtpRelay, dovecot: Dovecot, maildomain: str, code: int, stage: str
) -> None:
    kind = "permanent" if code >= 500 else "temporary"
    a, b = f"a@{maildomain}", f"b@{maildomain}"
    relay.fail_next(code, stage=stage)  # type: ignore[arg-type]
    refused, after = _message(4, (a, b)), _message(5, (a,))

    first, second = _judged(_sender(relay.port).send_many_sync([refused, after]))

    outcome = first.permanent if kind == "permanent" else first.temporary
    assert set(outcome) == {a, b} and first.accepted == ()
    assert all(reply.startswith(f"{code} ") for reply in outcome.values())
    assert first.error is not None and str(code) in first.error
    assert first.done is (kind == "permanent")
    assert second.done and second.accepted == (a,)  # the connection carries on
    assert _delivered(dovecot, a, refused) == 0 and _delivered(dovecot, a, after) == 1


def test_421_at_data_is_temporary_and_the_next_message_reconnects(
    relay: SmtpRelay, proxy: _Proxy, dovecot: Dovecot, maildomain: str
) -> None:
    a = f"a@{maildomain}"
    relay.fail_next(421)  # the relay also closes the connection after it
    items = [_message(6, (a,)), _message(7, (a,))]

    first, second = _judged(_sender(proxy.port).send_many_sync(items))

    assert list(first.temporary) == [a] and first.temporary[a].startswith("421 ")
    assert first.error is not None and "421" in first.error
    assert second.done and second.accepted == (a,)
    assert proxy.connections == 2
    assert _delivered(dovecot, a, items[0]) == 0 and _delivered(dovecot, a, items[1]) == 1


def test_421_greeting_makes_the_whole_batch_temporary(proxy: _Proxy, maildomain: str) -> None:
    proxy.greeting = b"421 4.3.2 too busy, try later\r\n"
    items = [_message(8, (f"a@{maildomain}",)), _message(9, (f"b@{maildomain}",))]

    results = _judged(_sender(proxy.port).send_many_sync(items))

    assert proxy.connections == 1  # no hammering a server that said it is busy
    assert all(not r.done and r.accepted == () for r in results)
    assert all(r.error is not None and "421" in r.error for r in results)


def test_a_server_that_never_answers_times_out_as_temporary(proxy: _Proxy, maildomain: str) -> None:
    proxy.silent = True
    items = [_message(18, (f"a@{maildomain}",)), _message(19, (f"b@{maildomain}",))]

    results = _judged(_sender(proxy.port, timeout_seconds=5).send_many_sync(items))

    assert proxy.connections == 1
    assert all(not r.done and r.error is not None for r in results)
    assert "Timed out" in (results[0].error or "")


def test_connection_refused_is_temporary_until_the_server_is_back(
    relay: SmtpRelay, dovecot: Dovecot, maildomain: str
) -> None:
    a = f"a@{maildomain}"
    item = _message(10, (a,))
    sender = _sender(relay.port)

    with relay.refusing_connections():
        [down] = _judged(sender.send_many_sync([item]))
    retry = Outgoing(item.key, item.sender, down.retry_recipients, item.raw)
    [up] = _judged(sender.send_many_sync([retry]))

    assert not down.done and down.retry_recipients == (a,) and down.accepted == ()
    assert down.error is not None
    assert up.done and up.accepted == (a,)
    assert _delivered(dovecot, a, item) == 1


def test_dropped_connection_mid_batch_is_reopened_and_nothing_is_lost_or_doubled(
    relay: SmtpRelay, proxy: _Proxy, dovecot: Dovecot, maildomain: str
) -> None:
    proxy.cut_at_mail = 6  # as a server closing an idle or overused connection would
    items = [_message(20 + i, (f"a@{maildomain}",)) for i in range(10)]

    results = _judged(_sender(proxy.port).send_many_sync(items))

    assert all(r.done and r.error is None for r in results)
    assert proxy.connections == 2
    assert [m.raw for m in relay.accepted] == [item.raw for item in items]
    assert all(_delivered(dovecot, f"a@{maildomain}", item) == 1 for item in items)


def test_several_connections_share_a_batch(
    relay: SmtpRelay, proxy: _Proxy, dovecot: Dovecot, maildomain: str
) -> None:
    items = [_message(40 + i, (f"u{i}@{maildomain}",)) for i in range(12)]

    results = _judged(_sender(proxy.port, connections=3).send_many_sync(items))

    assert [r.key for r in results] == [item.key for item in items]
    assert all(
        r.done and r.accepted == item.recipients for r, item in zip(results, items, strict=True)
    )
    assert proxy.connections == 3
    assert sorted(m.raw for m in relay.accepted) == sorted(item.raw for item in items)


def test_each_result_is_told_as_soon_as_the_message_is_decided(
    relay: SmtpRelay, proxy: _Proxy, maildomain: str
) -> None:
    """The outbox records each mail while the batch goes on: a crash then repeats less."""
    items = [_message(60 + i, (f"a@{maildomain}",)) for i in range(5)]
    told: list[tuple[int | str, int]] = []

    def on_result(result: SendResult) -> None:
        told.append((result.key, len(relay.accepted)))

    results = _sender(proxy.port).send_many_sync(items, on_result)

    # Told in order, each right after the relay took that very mail, on one connection.
    assert told == [(item.key, n) for n, item in enumerate(items, start=1)]
    assert [r.key for r in results] == [item.key for item in items]
    assert proxy.connections == 1


@pytest.mark.parametrize("connections", [1, 3])
def test_a_failing_result_hook_stops_the_batch_and_its_error_is_raised(
    relay: SmtpRelay, proxy: _Proxy, maildomain: str, connections: int
) -> None:
    items = [_message(70 + i, (f"a@{maildomain}",)) for i in range(12)]
    told: list[int | str] = []
    failure = RuntimeError("the database went away")

    def on_result(result: SendResult) -> None:
        told.append(result.key)
        if len(told) == 3:
            raise failure

    with pytest.raises(RuntimeError) as raised:
        _sender(proxy.port, connections=connections).send_many_sync(items, on_result)

    assert raised.value is failure
    assert len(told) == 3
    # Mails other connections had in flight may have left; nothing was sent after that.
    assert 3 <= len(relay.accepted) <= 3 + connections - 1
    # Every connection was closed before the error came out.
    assert all(proxy.closed_by_client.acquire(timeout=5) for _ in range(proxy.connections))


def test_login_is_used_when_configured(relay: SmtpRelay, maildomain: str) -> None:
    sender = _sender(relay.port, username="mailflow@example.org", password="s3cret")

    [result] = _judged(sender.send_many_sync([_message(11, (f"a@{maildomain}",))]))

    assert result.done
    assert relay.accepted[0].login == "mailflow@example.org"


# -- security: TLS, STARTTLS and login failures are configuration errors --------------------


def test_starttls_required_but_not_offered_sends_nothing(relay: SmtpRelay, maildomain: str) -> None:
    item = _message(12, (f"a@{maildomain}",))

    with pytest.raises(SmtpTlsError, match=r"no ofrece STARTTLS.*security") as caught:
        _sender(relay.port, "starttls").send_many_sync([item])

    assert relay.accepted == []
    [result] = _judged(caught.value.results)
    assert not result.done and result.error is not None


def test_implicit_tls_with_a_trusted_certificate_delivers(
    relay: SmtpRelay, dovecot: Dovecot, maildomain: str, certificate: tuple[Path, Path]
) -> None:
    tls_proxy = _Proxy(relay.port, tls=_server_context(certificate))
    item = _message(13, (f"a@{maildomain}",))
    try:
        sender = _sender(tls_proxy.port, "tls", tls_context=_trusting(certificate))
        [result] = _judged(sender.send_many_sync([item]))
    finally:
        tls_proxy.close()

    assert result.done
    assert _delivered(dovecot, f"a@{maildomain}", item) == 1


def test_unverifiable_certificate_is_a_tls_error(
    relay: SmtpRelay, maildomain: str, certificate: tuple[Path, Path]
) -> None:
    tls_proxy = _Proxy(relay.port, tls=_server_context(certificate))
    try:
        with pytest.raises(SmtpTlsError, match=r"no se pudo verificar.*\[smtp\] ca_file"):
            _sender(tls_proxy.port, "tls").send_many_sync([_message(14, (f"a@{maildomain}",))])
    finally:
        tls_proxy.close()
    assert relay.accepted == []


def test_tls_to_a_plain_port_names_the_security_setting(relay: SmtpRelay) -> None:
    with pytest.raises(SmtpTlsError, match=r"security y port"):
        _sender(relay.port, "tls").send_many_sync([_message(15, ("a@example.org",))])


class _Recorder:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, envelope.rcpt_tos, envelope.original_content))
        return "250 OK"


def _only_mailflow(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = isinstance(data, LoginPassword) and data.password == b"right"
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def starttls_server(certificate: tuple[Path, Path]) -> Iterator[tuple[Controller, _Recorder]]:
    """Run an aiosmtpd that offers STARTTLS and checks passwords (the relay does neither)."""
    recorder = _Recorder()
    controller = Controller(
        recorder,
        hostname=HOST,
        port=free_port(),
        tls_context=_server_context(certificate),
        require_starttls=True,
        authenticator=_only_mailflow,
    )
    controller.start()
    yield controller, recorder
    controller.stop()


def test_starttls_upgrades_then_logs_in_and_sends(
    starttls_server: tuple[Controller, _Recorder], certificate: tuple[Path, Path]
) -> None:
    controller, recorder = starttls_server
    item = _message(16, ("a@example.org",))
    sender = _sender(
        controller.port,
        "starttls",
        username="rrss",
        password="right",
        tls_context=_trusting(certificate),
    )

    [result] = _judged(sender.send_many_sync([item]))

    assert result.done
    assert recorder.received == [(SENDER, ["a@example.org"], item.raw)]


def test_refused_login_is_an_auth_error_naming_the_settings(
    starttls_server: tuple[Controller, _Recorder], certificate: tuple[Path, Path]
) -> None:
    controller, recorder = starttls_server
    sender = _sender(
        controller.port,
        "starttls",
        username="rrss",
        password="wrong",
        tls_context=_trusting(certificate),
    )

    with pytest.raises(SmtpAuthError, match=r'"rrss".*\[smtp\] username y la contraseña'):
        asyncio.run(sender.check())
    with pytest.raises(SmtpAuthError) as caught:
        sender.send_many_sync([_message(17, ("a@example.org",))])

    assert "wrong" not in str(caught.value)
    assert recorder.received == []
    assert [r.retry_recipients for r in _judged(caught.value.results)] == [("a@example.org",)]


def test_starttls_with_an_unverifiable_certificate_is_a_tls_error(
    starttls_server: tuple[Controller, _Recorder],
) -> None:
    controller, recorder = starttls_server
    sender = _sender(controller.port, "starttls")  # the system's CAs do not know ours

    with pytest.raises(SmtpTlsError, match=r"no se pudo verificar"):
        asyncio.run(sender.check())
    assert recorder.received == []


# -- a mail that carries files: streamed from its archived file ----------------------------


def _archived(tmp_path: Path, key: int, recipients: tuple[str, ...], *, last_crlf: bool) -> Path:
    """Write a mail with a 3 MB file and lines starting with "." as the archive holds it."""
    message = build_message(
        "Redes Sociales <rrss@example.org>",
        recipients,
        f"[RRSS-2026-{key:04d}] Archivos",
        "Primera línea.\n.línea que empieza con punto\n..y otra con dos\n.\n",
        headers={"Message-ID": f"<rrss-file-{key}@example.org>"},
        attachments=[("foto.jpg", random.Random(key).randbytes(3 * 1024 * 1024), "image/jpeg")],
    )
    raw = message.as_bytes(policy=email.policy.SMTP)
    path = tmp_path / f"{key}.eml"
    path.write_bytes(raw if last_crlf else raw.removesuffix(b"\r\n"))
    return path


@pytest.mark.parametrize("last_crlf", [True, False])
def test_an_archived_mail_is_streamed_into_data_byte_for_byte(
    relay: SmtpRelay, dovecot: Dovecot, maildomain: str, tmp_path: Path, last_crlf: bool
) -> None:
    to = (f"directora@{maildomain}",)
    path = _archived(tmp_path, 21, to, last_crlf=last_crlf)
    item = Outgoing(21, SENDER, to, b"", path)

    [result] = _judged(_sender(relay.port).send_many_sync([item]))

    assert result.done and result.accepted == to
    wanted = path.read_bytes() + (b"" if last_crlf else b"\r\n")
    assert relay.accepted[-1].raw == wanted  # dot-stuffed on the wire, undone by the server
    assert sum(raw.endswith(wanted) for raw in fetch_raw(dovecot, to[0])) == 1


def test_a_streamed_mail_refused_at_data_is_refused_for_everyone(
    relay: SmtpRelay, maildomain: str, tmp_path: Path
) -> None:
    to = (f"a@{maildomain}", f"b@{maildomain}")
    relay.fail_next(554)
    [result] = _judged(
        _sender(relay.port).send_many_sync(
            [Outgoing(22, SENDER, to, b"", _archived(tmp_path, 22, to, last_crlf=True))]
        )
    )
    assert set(result.permanent) == set(to) and result.error
    assert relay.accepted == []


def test_a_missing_archived_mail_is_not_sent_and_says_why(
    relay: SmtpRelay, maildomain: str, tmp_path: Path
) -> None:
    to = (f"a@{maildomain}",)
    [result] = _judged(
        _sender(relay.port).send_many_sync([Outgoing(23, SENDER, to, b"", tmp_path / "gone.eml")])
    )
    assert list(result.permanent) == list(to)
    assert "gone.eml cannot be read" in result.permanent[to[0]]
    assert relay.accepted == []
