"""Send outbox mail over SMTP with aiosmtplib; the only module that speaks SMTP.

The caller owns the outbox rows: this adapter takes messages already rendered to bytes and
reports, per recipient, what the server answered. It never rebuilds a message, so a retry
carries the very bytes (and Message-ID) of the first attempt.

Each recipient ends accepted or refused, and a refusal carries the server's reply code and
line (``Reply``): what to make of it (try again later, give up, tell someone) is the
outbox's retry policy, not this module's. When no SMTP reply came (refused or timed-out
connection, a message never attempted) the code is -1. A failure of the whole message or
connection (refused or timed-out connection, 421, a refusal of MAIL FROM or of the DATA)
applies to every recipient still undecided and also sets ``SendResult.error``. Failures
only an operator can fix (login refused, TLS not offered or not verifiable) raise an
``SmtpError``, which carries the results of the whole batch so that nothing already sent is
sent again.

``on_result``, when given, hears of each message as soon as it is decided, while the
connection stays open: the caller can record it durably at once, so that a crash later in
the batch sends again only what was not yet recorded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple

import aiosmtplib
from aiosmtplib.typing import SMTPStatus

from mailflow.config import Smtp
from mailflow.errors import MailflowError
from mailflow.transport.oauth2 import OAuth2Error, OAuth2UnavailableError, TokenSource
from mailflow.transport.tls import certificate_advice, verifying_context

log = logging.getLogger(__name__)
CHUNK = 256 * 1024  # bytes of an archived mail read (and sent) at a time


@dataclass(frozen=True)
class SmtpFound:
    """What an SMTP server said of itself when mailflow connected and logged in."""

    where: str
    greeting: str
    extensions: tuple[str, ...]
    encrypted: bool
    logged_in: bool


@dataclass(frozen=True)
class Outgoing:
    """One rendered outbox message: its row key, SMTP envelope and exact bytes.

    A mail that carries files comes as ``path`` (its archived ``.eml``, CRLF lines of
    7-bit text as mailflow writes them) with ``raw`` empty: it is streamed into DATA a
    block at a time, never read whole.
    """

    key: int | str
    sender: str
    recipients: tuple[str, ...]
    raw: bytes
    path: Path | None = None

    def __post_init__(self) -> None:
        if not self.recipients:
            raise ValueError(f"outbox message {self.key} has no recipients")


class Reply(NamedTuple):
    """One refusal as the server gave it: its code (-1: no SMTP reply) and its line."""

    code: int
    line: str  # "451 4.3.0 Try again later", or "(not sent) …" when nothing was answered


@dataclass(frozen=True)
class SendResult:
    """What the server said about one message: who it accepted, who it refused and how."""

    key: int | str
    accepted: tuple[str, ...] = ()
    refused: dict[str, Reply] = field(default_factory=dict)
    error: str | None = None


OnResult = Callable[[SendResult], None]


class SmtpError(MailflowError):
    """SMTP cannot work as configured; ``results`` covers the batch that was interrupted."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.results: list[SendResult] = []


class SmtpAuthError(SmtpError):
    """The server refused our login, or offers none we can use."""


class SmtpTlsError(SmtpError):
    """TLS was required but failed: certificate not verified, or STARTTLS not offered."""


class _UnavailableError(Exception):
    """The server cannot take mail now (refused, timed out, 421): try again later."""


class _TimedOutError(Exception):
    """A command timed out mid-transaction; the message is decided, the server is not well."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result.error)
        self.result = result


def _refused_for_good(code: int) -> bool:
    """Tell whether a reply to our login is a 5xx: a refusal, not a busy server (RFC 5321)."""
    return 500 <= code < 600


class _Tally:
    """Collect the replies for one message's recipients as they arrive."""

    def __init__(self, item: Outgoing) -> None:
        self.key = item.key
        self.undecided = list(dict.fromkeys(item.recipients))
        self.accepted: list[str] = []
        self.refused: dict[str, Reply] = {}
        self.error: str | None = None

    def refuse(self, recipient: str, code: int, reply: str) -> None:
        self.refused[recipient] = Reply(code, reply)
        self.undecided.remove(recipient)

    def accept(self, recipients: list[str]) -> None:
        self.accepted.extend(recipients)
        self.undecided = [r for r in self.undecided if r not in recipients]

    def fail_rest(self, code: int, reply: str, error: str) -> None:
        self.error = error
        for recipient in list(self.undecided):
            self.refuse(recipient, code, reply)

    def result(self) -> SendResult:
        return SendResult(self.key, tuple(self.accepted), self.refused, self.error)


def _unsent(item: Outgoing, error: str) -> SendResult:
    """Return the result of a message never attempted: every recipient without a reply."""
    tally = _Tally(item)
    tally.fail_rest(-1, f"(not sent) {error}", error)
    return tally.result()


def wire_size(raw: bytes) -> int:
    """Return the RFC 1870 size of raw: as sent, with CRLF line ends, before dot-stuffing.

    Counted, not rewritten: each bare LF or bare CR becomes CRLF on the wire, one byte more.
    """
    return len(raw) + raw.count(b"\n") + raw.count(b"\r") - 2 * raw.count(b"\r\n")


def _envelope(conn: aiosmtplib.SMTP, item: Outgoing, size: int) -> tuple[list[str], str]:
    """Return the MAIL FROM options and the address encoding this message needs."""
    options = []
    if conn.supports_extension("size"):
        options.append(f"SIZE={size}")
    if not item.raw.isascii() and conn.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    if all(a.isascii() for a in (item.sender, *item.recipients)):
        return options, "ascii"
    if not conn.supports_extension("smtputf8"):
        raise aiosmtplib.SMTPNotSupported(
            "the server lacks SMTPUTF8, which a non-ASCII address needs"
        )
    return [*options, "SMTPUTF8"], "utf-8"


@dataclass
class _Batch:
    """State shared by the connections working through one ``send_many`` call."""

    queue: deque[tuple[int, Outgoing]]
    on_result: OnResult | None = None
    results: dict[int, SendResult] = field(default_factory=dict)
    retried: set[int] = field(default_factory=set)
    unavailable: str | None = None
    fatal: SmtpError | None = None
    hook_failed: BaseException | None = None  # what on_result raised; it stops the batch

    def decide(self, index: int, result: SendResult) -> None:
        """Keep one message's result and tell the caller; a failing hook stops the batch."""
        self.results[index] = result
        # Once the hook failed, the batch stops: a connection woken in the same loop turn
        # (before the task group cancels it) must not call it again.
        if self.on_result is None or self.hook_failed is not None:
            return
        try:
            self.on_result(result)
        except BaseException as exc:
            self.hook_failed = exc
            raise


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """Return the TLS error behind exc, if any (aiosmtplib wraps some of them)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        # A TLS session torn down mid-handshake is the network's fault, not the config's.
        if isinstance(seen, ssl.SSLError) and not isinstance(
            seen, ssl.SSLEOFError | ssl.SSLZeroReturnError
        ):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _drop(conn: aiosmtplib.SMTP, transport: asyncio.BaseTransport | None = None) -> None:
    """Close conn at once, TLS included.

    aiosmtplib's close() starts a polite TLS shutdown that needs more turns of the event
    loop; when the loop ends first (``asyncio.run``), the socket would be left open.
    """
    transport = transport or conn.transport
    conn.close()
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()


async def _reset(conn: aiosmtplib.SMTP) -> None:
    """Abort the current transaction so the connection can carry the next message."""
    if not conn.is_connected:
        return
    try:
        await conn.rset()
    except (aiosmtplib.SMTPException, OSError):
        _drop(conn)


async def _quit(conn: aiosmtplib.SMTP) -> None:
    """Say goodbye politely; every message is already decided, so failures do not matter."""
    transport = conn.transport  # quit() forgets it, and we still have to abort it
    try:
        if conn.is_connected:
            await conn.quit()
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        _drop(conn, transport)


def _stuffed(handle: BinaryIO) -> Iterator[bytes]:
    """Yield a file of CRLF lines in blocks of whole lines, dot-stuffed (RFC 5321 §4.5.2)."""
    carry = b""
    while block := handle.read(CHUNK):
        block = carry + block
        cut = block.rfind(b"\n") + 1
        block, carry = block[:cut], block[cut:]
        if block:
            yield (b"." if block.startswith(b".") else b"") + block.replace(b"\n.", b"\n..")
    if carry:  # no final line break: DATA still ends on a line of its own
        yield (b"." if carry.startswith(b".") else b"") + carry.replace(b"\n.", b"\n..") + b"\r\n"


async def _data_from(conn: aiosmtplib.SMTP, handle: BinaryIO) -> None:
    """Send DATA with the file's bytes streamed, waiting for the socket between blocks.

    ``conn.data()`` takes the whole message and copies it three times (line endings,
    dot-stuffing, the final dot): 95 MB of peak memory for a 20 MB mail. Here at most one
    block is held, and the transport's buffer is drained after each (the protocol's flow
    control, as ``StreamWriter.drain`` does). Errors are raised as ``conn.data()`` does.
    """
    response = await conn.execute_command(b"DATA")
    if response.code != SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    protocol = conn.protocol
    timeout = conn.timeout
    try:
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        # A reply the server sends before the final dot (a refusal mid-stream) is kept
        # for the read below instead of being dropped as unsolicited.
        protocol._response_pending = True
        for block in _stuffed(handle):
            protocol.write(block)
            await asyncio.wait_for(protocol._drain_helper(), timeout)
        protocol.write(b".\r\n")
        response = await protocol.read_response(timeout=timeout)
    except (TimeoutError, aiosmtplib.SMTPReadTimeoutError) as exc:
        conn.close()
        raise aiosmtplib.SMTPTimeoutError(f"timed out sending DATA: {exc}") from exc
    except (ConnectionError, aiosmtplib.SMTPServerDisconnected) as exc:
        conn.close()
        raise aiosmtplib.SMTPServerDisconnected(f"connection lost during DATA: {exc}") from exc
    if response.code != SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(response.code, response.message)


class SmtpSender:
    """Send outbox messages through the configured SMTP server, reusing connections."""

    def __init__(
        self,
        settings: Smtp,
        *,
        tls_context: ssl.SSLContext | None = None,
        connections: int = 1,
        local_hostname: str | None = None,
        tokens: TokenSource | None = None,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        if settings.auth == "xoauth2" and tokens is None:
            raise ValueError('smtp auth = "xoauth2" needs a TokenSource')
        self._settings = settings
        self._tokens = tokens
        self._where = f"{settings.host}:{settings.port}"
        self._connections = connections
        self._local_hostname = local_hostname
        self._tls_context: ssl.SSLContext | None = None
        if settings.security != "none":
            # Built once: the default context verifies the chain and the host name.
            # [smtp] ca_file, when set, replaces the system's CAs.
            self._tls_context = tls_context or verifying_context(settings.ca_file)
        else:
            log.warning(
                'smtp: security = "none": mail%s to %s travels unencrypted',
                " and the login password" if settings.username else "",
                self._where,
            )

    async def send_many(
        self, items: Iterable[Outgoing], on_result: OnResult | None = None
    ) -> list[SendResult]:
        """Send every item and return one result per item, in order.

        Raise ``SmtpAuthError`` / ``SmtpTlsError`` when the configuration is at fault; the
        exception's ``results`` then holds what happened to each item (unsent ones have
        code -1), so the caller can still record the messages that did leave.
        ``on_result`` is called with each result once the server has decided it; if it
        raises, no further message is sent and its exception is raised once the
        connections are closed.
        """
        batch = _Batch(deque(enumerate(items)), on_result)
        pending = [item for _, item in batch.queue]
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self._connections, len(pending))):
                    group.create_task(self._work(batch))
        except BaseExceptionGroup as group_error:
            if batch.hook_failed is None:
                raise
            # The hook's error is the one raised; whatever else went wrong is logged.
            for other in group_error.exceptions:
                if other is not batch.hook_failed and not isinstance(other, asyncio.CancelledError):
                    log.error("smtp: also failed while stopping the batch: %r", other)
        if batch.hook_failed is not None:
            if batch.fatal is not None:
                log.error("smtp: %s", batch.fatal)
            raise batch.hook_failed
        reason = str(batch.fatal or batch.unavailable or "not attempted")
        results = [
            batch.results.get(index) or _unsent(item, reason) for index, item in enumerate(pending)
        ]
        if batch.fatal is not None:
            batch.fatal.results = results
            raise batch.fatal
        return results

    def send_many_sync(
        self, items: Iterable[Outgoing], on_result: OnResult | None = None
    ) -> list[SendResult]:
        """Run ``send_many`` in a fresh event loop, for the daemon's synchronous loop."""
        return asyncio.run(self.send_many(items, on_result))

    async def check(self) -> SmtpFound:
        """Connect, secure and log in once, raising what ``send_many`` would hit first.

        Return what the server said of itself (``check-config --live`` prints it).
        """
        try:
            conn = await self._connect()
        except _UnavailableError as exc:
            raise SmtpError(f"el servidor SMTP {self._where} no está disponible: {exc}") from exc
        found = SmtpFound(
            where=self._where,
            greeting=_greeting(conn),
            extensions=tuple(sorted(conn.esmtp_extensions)),
            encrypted=self._settings.security != "none",
            logged_in=self._settings.auth == "xoauth2" or self._settings.username is not None,
        )
        await _quit(conn)
        return found

    def check_sync(self) -> SmtpFound:
        """Run :meth:`check` in a fresh event loop."""
        return asyncio.run(self.check())

    async def _work(self, batch: _Batch) -> None:
        """Send queued messages over one connection until none are left or it fails."""
        conn: aiosmtplib.SMTP | None = None
        try:
            while batch.queue and batch.fatal is None and batch.hook_failed is None:
                index, item = batch.queue.popleft()
                if conn is None or not conn.is_connected:
                    conn = await self._open(batch, index, item)
                    if conn is None:
                        break
                try:
                    result = await self._send_one(conn, item)
                except _TimedOutError as exc:
                    batch.unavailable = exc.result.error
                    batch.decide(index, exc.result)
                    break
                except Exception as exc:  # one odd message must not lose the batch's results
                    log.exception("smtp: outbox %s: unexpected failure", item.key)
                    _drop(conn)
                    result = _unsent(item, f"unexpected failure: {exc!r}")
                if result is None and index not in batch.retried:
                    # Dropped before the server decided: once more on a fresh connection.
                    batch.retried.add(index)
                    batch.queue.appendleft((index, item))
                    continue
                result = result or _unsent(item, "connection lost twice")
                self._log(item, result)
                batch.decide(index, result)
        except BaseException:  # the hook's error, or cancelled because another task's raised
            if conn is not None:
                _drop(conn)
            raise
        if conn is not None:
            await _quit(conn)

    async def _open(self, batch: _Batch, index: int, item: Outgoing) -> aiosmtplib.SMTP | None:
        """Connect for the next item, or put it back and record why the server is out."""
        try:
            return await self._connect()
        except _UnavailableError as exc:
            log.warning("smtp: %s unavailable: %s", self._where, exc)
            batch.unavailable = str(exc)
        except SmtpError as exc:
            batch.fatal = exc
        batch.queue.appendleft((index, item))
        return None

    async def _connect(self) -> aiosmtplib.SMTP:
        """Open, secure and log in one connection; raise _UnavailableError or an SmtpError."""
        settings = self._settings
        if self._local_hostname is None:
            # Asked once per sender: getfqdn() can wait seconds on a DNS that does not answer.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        conn = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            use_tls=settings.security == "tls",
            start_tls=False,  # done below, so that a server without STARTTLS is an error
            tls_context=self._tls_context,
            timeout=settings.timeout_seconds,
            local_hostname=self._local_hostname,
        )
        try:
            await conn.connect()
            await self._greet(conn)
            if settings.security == "starttls":
                await self._starttls(conn)
            if settings.auth == "xoauth2":
                assert settings.username is not None  # the config guarantees it
                await self._login_xoauth2(conn, settings.username)
            elif settings.username is not None and settings.password is not None:
                await self._login(conn, settings.username, settings.password.get_secret_value())
        except BaseException as exc:
            _drop(conn)
            raise self._explain(exc) from exc
        return conn

    async def _greet(self, conn: aiosmtplib.SMTP) -> None:
        """Send EHLO (HELO for an old server) so that extensions are known before MAIL."""
        try:
            await conn.ehlo()
        except aiosmtplib.SMTPHeloError:
            await conn.helo()

    async def _starttls(self, conn: aiosmtplib.SMTP) -> None:
        """Upgrade conn to TLS, refusing to go on in clear if the server cannot."""
        if not conn.supports_extension("starttls"):
            raise SmtpTlsError(
                f"el servidor SMTP {self._where} no ofrece STARTTLS, y [smtp] security = "
                '"starttls" prohíbe enviar sin cifrar: active STARTTLS en el servidor, o ponga '
                'security = "tls" si espera TLS desde el primer byte (suele ser el puerto 465)'
            )
        await conn.starttls()
        await self._greet(conn)  # RFC 3207: forget what was said before TLS, ask again

    async def _login(self, conn: aiosmtplib.SMTP, username: str, password: str) -> None:
        """Log in, telling the operator which setting to check when the server says no."""
        check = (
            "revise [smtp] username y la contraseña (password_env, password_file, "
            "password_credential o password)"
        )
        if not conn.supports_extension("auth"):
            raise SmtpAuthError(
                f"el servidor SMTP {self._where} no ofrece inicio de sesión (AUTH) aquí; quite "
                "[smtp] username y la contraseña si no lo necesita, o revise [smtp] security: "
                "muchos servidores solo ofrecen AUTH con TLS"
            )
        try:
            await conn.login(username, password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            if not _refused_for_good(exc.code):
                raise
            raise SmtpAuthError(
                f'el servidor SMTP {self._where} rechazó el inicio de sesión de "{username}" '
                f"({exc.code} {exc.message}): {check}"
            ) from exc
        except aiosmtplib.SMTPException as exc:
            offered = ", ".join(conn.server_auth_methods) or "ninguno"
            raise SmtpAuthError(
                f"el servidor SMTP {self._where} no ofrece un método de inicio de sesión que "
                f"mailflow use (ofrece {offered}; mailflow usa PLAIN, LOGIN o CRAM-MD5)"
            ) from exc

    async def _login_xoauth2(self, conn: aiosmtplib.SMTP, username: str) -> None:
        """Log in with an access token; a refused cached token is refreshed once."""
        assert self._tokens is not None
        if "xoauth2" not in conn.server_auth_methods:
            offered = ", ".join(conn.server_auth_methods) or "ninguno"
            raise SmtpAuthError(
                f"el servidor SMTP {self._where} no ofrece XOAUTH2 (ofrece {offered}); "
                'ponga [smtp] auth = "password", o revise [smtp] host, port y security '
                "(muchos servidores solo ofrecen AUTH después de STARTTLS)"
            )
        for attempt in (1, 2):
            token = await self._token()
            try:
                await conn.auth_xoauth2(username, token)
                return
            except aiosmtplib.SMTPAuthenticationError as exc:
                self._tokens.invalidate(token)
                if not _refused_for_good(exc.code):
                    raise
                if attempt == 2:
                    raise SmtpAuthError(
                        f"el servidor SMTP {self._where} rechazó el inicio de sesión XOAUTH2 de "
                        f'"{username}" aun con un token de acceso recién emitido ({exc.code} '
                        f"{exc.message}): revise que [smtp] username sea el buzón del token, que "
                        "el registro de la aplicación permita enviar por SMTP ([oauth2] scope) y "
                        "que el buzón tenga SMTP AUTH habilitado (docs/providers.md)"
                    ) from exc
                log.info("smtp: %s refused the access token; asking for a new one", self._where)

    async def _token(self) -> str:
        """Return an access token without blocking the event loop on the HTTP request."""
        assert self._tokens is not None
        try:
            return await asyncio.to_thread(self._tokens.token)
        except OAuth2UnavailableError as exc:
            raise _UnavailableError(f"no access token: {exc}") from None
        except OAuth2Error as exc:
            raise SmtpAuthError(
                f"servidor SMTP {self._where}: sin token de acceso: {exc}"
            ) from None

    def _explain(self, exc: BaseException) -> BaseException:
        """Turn a connection failure into SmtpError (operator) or _UnavailableError (retry)."""
        if isinstance(exc, SmtpError) or not isinstance(exc, Exception):
            return exc
        tls = _tls_failure(exc)
        if isinstance(tls, ssl.SSLCertVerificationError):
            advice = certificate_advice(tls, "smtp", self._settings.host)
            return SmtpTlsError(
                f"no se pudo verificar el certificado TLS del servidor SMTP {self._where} "
                f"({tls.verify_message}): {advice}"
            )
        if tls is not None:
            return SmtpTlsError(
                f"TLS con el servidor SMTP {self._where} falló ({tls.reason or tls}): revise "
                '[smtp] security y port ("tls" es TLS desde el primer byte, suele ser el puerto '
                '465; "starttls" cifra una conexión abierta en claro, suele ser el 587)'
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return _UnavailableError(f"{exc.code} {exc.message}")
        if isinstance(exc, aiosmtplib.SMTPException | OSError):
            return _UnavailableError(str(exc) or type(exc).__name__)
        return exc

    async def _send_one(self, conn: aiosmtplib.SMTP, item: Outgoing) -> SendResult | None:
        """Send one message on conn; return None if the link dropped before a decisive reply."""
        tally = _Tally(item)
        try:
            await self._transact(conn, item, tally)
        except aiosmtplib.SMTPServerDisconnected:
            _drop(conn)
            return None
        except aiosmtplib.SMTPTimeoutError as exc:
            _drop(conn)
            tally.fail_rest(-1, f"(no reply) {exc}", f"timed out: {exc}")
            raise _TimedOutError(tally.result()) from exc
        except aiosmtplib.SMTPResponseException as exc:
            reply = f"{exc.code} {exc.message}"
            stage = "MAIL FROM" if isinstance(exc, aiosmtplib.SMTPSenderRefused) else "DATA"
            if exc.code == 421:
                stage = "the connection"
                _drop(conn)  # 421 means the server is closing the connection: go with it
            tally.fail_rest(exc.code, reply, f"server refused {stage}: {reply}")
            await _reset(conn)
        except aiosmtplib.SMTPNotSupported as exc:
            tally.fail_rest(550, f"(not sent) {exc}", str(exc))
        return tally.result()

    async def _transact(self, conn: aiosmtplib.SMTP, item: Outgoing, tally: _Tally) -> None:
        """Run MAIL, RCPT for each recipient and DATA, recording each refusal in tally."""
        if item.path is None:
            await self._transact_with(conn, item, tally, None)
            return
        try:
            handle = item.path.open("rb")
        except OSError as exc:
            # Opened before MAIL FROM: once DATA has begun nothing can be taken back.
            reason = f"(not sent) the archived mail {item.path.name} cannot be read: {exc.strerror}"
            tally.fail_rest(550, reason, reason)
            return
        with handle:
            await self._transact_with(conn, item, tally, handle)

    async def _transact_with(
        self, conn: aiosmtplib.SMTP, item: Outgoing, tally: _Tally, handle: BinaryIO | None
    ) -> None:
        size = wire_size(item.raw) if handle is None else os.fstat(handle.fileno()).st_size
        options, encoding = _envelope(conn, item, size)
        try:
            await conn.mail(item.sender, options=options, encoding=encoding)
        except ValueError as exc:  # aiosmtplib refuses addresses that could inject commands
            tally.fail_rest(550, f"(not sent) {exc}", f"unusable sender address: {exc}")
            return
        rcpt_ok: list[str] = []
        for recipient in list(tally.undecided):
            try:
                await conn.rcpt(recipient, encoding=encoding)
                rcpt_ok.append(recipient)
            except aiosmtplib.SMTPRecipientRefused as exc:
                if exc.code == 421:
                    raise
                tally.refuse(recipient, exc.code, f"{exc.code} {exc.message}")
            except ValueError as exc:
                tally.refuse(recipient, 550, f"(not sent) {exc}")
        if not rcpt_ok:
            await _reset(conn)
            return
        if handle is None:
            await conn.data(item.raw)
        else:
            await _data_from(conn, handle)
        tally.accept(rcpt_ok)

    def _log(self, item: Outgoing, result: SendResult) -> None:
        """Log one message's outcome: keys, counts and server replies, never the content."""
        if result.refused:
            log.warning(
                "smtp: outbox %s: %d accepted, refused %s",
                item.key,
                len(result.accepted),
                {who: reply.line for who, reply in result.refused.items()},
            )
        else:
            log.info(
                "smtp: outbox %s: accepted for %d recipient(s)",
                item.key,
                len(result.accepted),
                extra={"outbox_id": item.key, "outcome": "sent"},
            )


def _greeting(conn: aiosmtplib.SMTP) -> str:
    """Return the first line of the server's EHLO answer (its name), for people."""
    response = conn.last_ehlo_response
    if response is None:
        return ""
    return response.message.splitlines()[0][:200] if response.message else ""
