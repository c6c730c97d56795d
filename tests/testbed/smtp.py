"""Run an SMTP server on 127.0.0.1 that relays every accepted message into Dovecot over LMTP.

The relay stands in for the institution's outgoing mail server: whatever the daemon sends
lands, byte for byte (plus the trace headers Dovecot's LMTP prepends: Return-Path,
Delivered-To, Received), in the recipients' real mailboxes.

Behaviour:

* AUTH PLAIN/LOGIN is offered without TLS and any login succeeds; sending without AUTH works
  too. The login is recorded with each message.
* With ``tls`` (a certificate, see testbed/ca.py) the port offers STARTTLS, and a second
  port, ``tls_port``, speaks TLS from the first byte (port 465 style). Each message records
  whether it came over TLS.
* With ``oauth2`` (a check of user and access token, e.g. ``FakeOAuth2.valid``) the relay
  also offers AUTH XOAUTH2, answering a refused token the way Gmail and Microsoft do: a 334
  challenge carrying a JSON error, then 535 after the client's empty line.
* Each RCPT is checked against Dovecot at RCPT time (an LMTP probe), so an unknown user is
  refused with Dovecot's own 550 as a real server would; the message is delivered at DATA,
  one LMTP transaction per recipient so each gets its own result.
* Faults are injected with ``fail_next()``: an answer such as 421/451/550 at MAIL, RCPT (for
  one recipient) or DATA, for the next N times; ``refusing_connections()`` closes the port.
* ``accepted`` logs each message answered 250 (envelope, raw bytes, per-recipient LMTP
  results); ``refused`` logs each injected or relayed refusal. ``reset()`` clears both and
  pending faults.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from .dovecot import TlsFiles
from .ports import HOST

Stage = Literal["mail", "rcpt", "data"]
LMTP_TIMEOUT = 60.0


@dataclass(frozen=True)
class Delivery:
    """LMTP's answer for one recipient of a relayed message."""

    recipient: str
    code: int
    message: str

    @property
    def ok(self) -> bool:
        """Tell whether Dovecot stored the message for this recipient."""
        return 200 <= self.code < 300


@dataclass(frozen=True)
class RelayedMessage:
    """A message the relay answered 250 to, with what Dovecot said for each recipient."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    deliveries: tuple[Delivery, ...]
    login: str | None = None
    tls: bool = False
    # time.perf_counter() when LMTP had stored it (the benchmarks time arrivals by it).
    delivered_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class Refusal:
    """A refusal the relay answered: injected by a test or relayed from Dovecot."""

    stage: Stage
    code: int
    message: str
    mail_from: str | None
    recipient: str | None = None


@dataclass
class Fault:
    """An answer to give instead of the real one, the next `remaining` times it applies."""

    code: int
    message: str
    stage: Stage
    recipient: str | None
    remaining: int

    @property
    def reply(self) -> str:
        """Return the SMTP reply line."""
        return f"{self.code} {self.message}"


def _default_text(code: int) -> str:
    """Return a plausible reply text for an injected code."""
    if code == 421:
        return "4.3.2 Service not available, closing transmission channel (injected)"
    if 400 <= code < 500:
        return "4.3.0 Temporary failure, try again later (injected)"
    return "5.7.1 Message rejected (injected)"


@dataclass
class _State:
    """Everything the loop thread and the test thread share, behind one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: list[Fault] = field(default_factory=list)
    accepted: list[RelayedMessage] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    in_data: int = 0  # DATA commands being delivered right now

    def take_fault(self, stage: Stage, recipient: str | None = None) -> Fault | None:
        """Return (and count down) the first pending fault for stage and recipient."""
        with self.lock:
            for fault in self.faults:
                if fault.stage != stage:
                    continue
                if fault.recipient is not None and fault.recipient != (recipient or "").lower():
                    continue
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                return fault
        return None


class _Handler:
    """aiosmtpd hooks: apply faults, probe recipients, deliver over LMTP."""

    def __init__(self, relay: SmtpRelay) -> None:
        self.relay = relay
        self.state = relay.state

    def _refuse(self, server: SMTP, fault: Fault, envelope: Envelope, rcpt: str | None) -> str:
        """Log an injected refusal and return its reply; 421 also drops the connection."""
        self.state.refused.append(
            Refusal(fault.stage, fault.code, fault.message, envelope.mail_from, rcpt)
        )
        if fault.code == 421 and server.transport is not None:
            # Close right after aiosmtpd has written our reply (it writes before yielding).
            asyncio.get_running_loop().call_soon(server.transport.close)
        return fault.reply

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        """Accept the sender unless a fault says otherwise."""
        if fault := self.state.take_fault("mail"):
            return self._refuse(server, fault, envelope, None)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Accept a recipient Dovecot knows, unless a fault says otherwise."""
        if fault := self.state.take_fault("rcpt", address):
            return self._refuse(server, fault, envelope, address)
        code, text = await asyncio.to_thread(self.relay.probe, address)
        if not 200 <= code < 300:
            self.state.refused.append(Refusal("rcpt", code, text, envelope.mail_from, address))
            return f"{code} {text}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Deliver to each recipient over LMTP; answer 250 if any delivery succeeded."""
        if fault := self.state.take_fault("data"):
            return self._refuse(server, fault, envelope, None)
        # Counted until the outcome is logged: wait_quiet() then sees the whole DATA.
        with self.state.lock:
            self.state.in_data += 1
        try:
            return await self._deliver(server, session, envelope)
        finally:
            with self.state.lock:
                self.state.in_data -= 1

    async def _deliver(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        mail_from = envelope.mail_from or ""
        body_8bit = [o for o in envelope.mail_options if o.upper().startswith("BODY=")]
        deliveries = await asyncio.to_thread(
            self.relay.deliver, mail_from, list(envelope.rcpt_tos), raw, body_8bit
        )
        if not any(d.ok for d in deliveries):
            first = deliveries[0]
            self.state.refused.append(Refusal("data", first.code, first.message, mail_from))
            return f"{first.code} {first.message}"
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        transport = server.transport
        tls = session.ssl is not None or (
            transport is not None and transport.get_extra_info("ssl_object") is not None
        )
        self.state.accepted.append(
            RelayedMessage(mail_from, tuple(envelope.rcpt_tos), raw, tuple(deliveries), login, tls)
        )
        return "250 OK relayed"


class _OAuthHandler(_Handler):
    """The relay's hooks plus AUTH XOAUTH2, checked by the relay's ``oauth2`` callable."""

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """Check ``user=U^Aauth=Bearer T^A^A``; refuse the way Gmail does (334 JSON, 535)."""
        if len(args) == 2:
            blob: bytes | object = args[1].encode()
        else:
            blob = await server.challenge_auth("", encode_to_b64=False)
        if blob is MISSING or not isinstance(blob, bytes):
            return AuthResult(success=False, handled=True)
        try:
            fields = base64.b64decode(blob, validate=True).decode().split("\x01")
        except ValueError:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Bad XOAUTH2")
        values = dict(f.split("=", 1) for f in fields if "=" in f)
        user = values.get("user", "")
        token = values.get("auth", "").removeprefix("Bearer ")
        check = self.relay.oauth2
        if check is not None and user and check(user, token):
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        error = {"status": "401", "schemes": "bearer", "scope": "https://mail.test/"}
        challenge = base64.b64encode(json.dumps(error).encode())
        await server.challenge_auth(challenge, encode_to_b64=False)  # the client sends ""
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Username and Password not accepted"
        )


def _text(reply: bytes | str) -> str:
    """Return an SMTP reply text as str (smtplib gives bytes, typeshed allows both)."""
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def _accept_any_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    """Let every AUTH succeed: the relay checks nothing, the daemon's login code runs."""
    # Keep the credentials so handle_DATA can log who sent the message.
    return AuthResult(success=True, auth_data=auth_data)


class SmtpRelay:
    """Own an aiosmtpd server in a background thread with its own event loop."""

    def __init__(
        self,
        lmtp_host: str,
        lmtp_port: int,
        *,
        host: str = HOST,
        tls: TlsFiles | None = None,
        oauth2: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.lmtp_host = lmtp_host
        self.lmtp_port = lmtp_port
        self.host = host
        self.port = 0
        self.tls_port: int | None = None  # implicit TLS (port 465 style), with ``tls`` only
        self.oauth2 = oauth2
        self._tls_context: ssl.SSLContext | None = None
        if tls is not None:
            self._tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls_context.load_cert_chain(tls.cert, tls.key)
        self._tls_server: asyncio.AbstractServer | None = None
        self.state = _State()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[SMTP] = set()

    # -- what tests look at and steer -----------------------------------------------------

    @property
    def accepted(self) -> list[RelayedMessage]:
        """Return a copy of the log of messages answered 250, oldest first."""
        with self.state.lock:
            return list(self.state.accepted)

    @property
    def refused(self) -> list[Refusal]:
        """Return a copy of the log of refusals answered, oldest first."""
        with self.state.lock:
            return list(self.state.refused)

    def wait_quiet(self, timeout: float = 30.0) -> None:
        """Wait until no client is connected and no DATA is being delivered.

        After a client is killed, a DATA it had finished sending may still be on its way
        into Dovecot and into ``accepted``; a test that reads the log then sees it all.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self.state.lock:
                busy = self.state.in_data
            if not busy and not self._sessions:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"relay still busy after {timeout} s: {len(self._sessions)} session(s), "
                    f"{busy} DATA in delivery"
                )
            time.sleep(0.01)

    def fail_next(
        self,
        code: int,
        *,
        count: int = 1,
        recipient: str | None = None,
        stage: Stage | None = None,
        message: str | None = None,
    ) -> None:
        """Answer `code` instead of the real reply, the next `count` times.

        With a recipient, the RCPT of that address is refused (other recipients are not
        affected); otherwise the whole message is refused at DATA, after its content was
        sent (or at MAIL with stage="mail"). A 421 also closes the connection.
        """
        stage = stage or ("rcpt" if recipient else "data")
        if recipient and stage != "rcpt":
            raise ValueError("a fault for one recipient applies at the RCPT stage")
        fault = Fault(
            code,
            message or _default_text(code),
            stage,
            recipient.lower() if recipient else None,
            count,
        )
        with self.state.lock:
            self.state.faults.append(fault)

    def reset(self) -> None:
        """Forget pending faults and both logs (between tests sharing this relay)."""
        with self.state.lock:
            self.state.faults.clear()
            self.state.accepted.clear()
            self.state.refused.clear()

    def wait_accepted(self, count: int = 1, timeout: float = 10.0) -> list[RelayedMessage]:
        """Wait until at least `count` messages were accepted; return all of them."""
        deadline = time.monotonic() + timeout
        while len(accepted := self.accepted) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"relay accepted {len(accepted)} messages, expected {count}, "
                    f"refused: {self.refused}"
                )
            time.sleep(0.05)
        return accepted

    # -- LMTP side (run in worker threads) ------------------------------------------------

    def probe(self, recipient: str) -> tuple[int, str]:
        """Ask Dovecot whether it would take mail for recipient; return its RCPT reply."""
        try:
            with smtplib.LMTP(self.lmtp_host, self.lmtp_port, timeout=LMTP_TIMEOUT) as lmtp:
                lmtp.ehlo("relay.test")
                lmtp.mail("")
                code, text = lmtp.rcpt(recipient)
                lmtp.rset()
                return code, _text(text)
        except (OSError, smtplib.SMTPException) as error:
            return 451, f"4.4.1 relay cannot reach LMTP: {error}"

    def deliver(
        self, mail_from: str, rcpt_tos: list[str], raw: bytes, mail_options: list[str]
    ) -> list[Delivery]:
        """Deliver raw to each recipient in its own LMTP transaction; return each result.

        One transaction per recipient because smtplib reads a single reply after DATA, while
        LMTP sends one per recipient.
        """
        results: list[Delivery] = []
        try:
            with smtplib.LMTP(self.lmtp_host, self.lmtp_port, timeout=LMTP_TIMEOUT) as lmtp:
                for rcpt in rcpt_tos:
                    results.append(self._deliver_one(lmtp, mail_from, rcpt, raw, mail_options))
        except (OSError, smtplib.SMTPException) as error:
            done = {d.recipient for d in results}
            results += [
                Delivery(r, 451, f"4.4.1 relay cannot reach LMTP: {error}")
                for r in rcpt_tos
                if r not in done
            ]
        return results

    @staticmethod
    def _deliver_one(
        lmtp: smtplib.LMTP, mail_from: str, rcpt: str, raw: bytes, mail_options: list[str]
    ) -> Delivery:
        """Run one LMTP transaction for one recipient."""
        try:
            lmtp.sendmail(mail_from, [rcpt], raw, mail_options=mail_options)
        except smtplib.SMTPRecipientsRefused as error:
            code, text = error.recipients[rcpt]
            return Delivery(rcpt, code, _text(text))
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as error:
            return Delivery(rcpt, error.smtp_code, _text(error.smtp_error))
        return Delivery(rcpt, 250, "2.0.0 delivered")

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the event-loop thread and listen on a free port."""
        if self._loop is not None:
            raise RuntimeError("already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="smtp-relay", daemon=True
        )
        self._thread.start()
        self.resume()

    def resume(self) -> None:
        """Listen again (on the same port once one was chosen)."""
        self._run(self._listen())

    def pause(self) -> None:
        """Close the port and drop open sessions: connections are refused until resume()."""
        self._run(self._close())

    @contextlib.contextmanager
    def refusing_connections(self) -> Iterator[None]:
        """Refuse connections inside the block, as a relay that is down would."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def stop(self) -> None:
        """Close the server, the worker threads and the loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self.pause()
            self._run(loop.shutdown_default_executor())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> SmtpRelay:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self, coro: Any) -> Any:
        """Run a coroutine on the relay's loop and wait for its result."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("relay not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    def _factory(self, *, implicit_tls: bool = False) -> SMTP:
        """Make the protocol for one connection and remember it for pause()."""
        handler = _OAuthHandler(self) if self.oauth2 is not None else _Handler(self)
        smtp = _TrackedSMTP(
            handler,
            self._sessions,
            loop=self._loop,
            hostname="relay.test",
            auth_require_tls=False,
            authenticator=_accept_any_login,
            # STARTTLS on the plain port only: on the TLS port the session is secure already.
            tls_context=None if implicit_tls else self._tls_context,
        )
        self._sessions.add(smtp)
        return smtp

    def _tls_factory(self) -> SMTP:
        return self._factory(implicit_tls=True)

    async def _listen(self) -> None:
        """Bind the port; the first time, let the OS pick it."""
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._factory, host=self.host, port=self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self._tls_context is not None:
            self._tls_server = await loop.create_server(
                self._tls_factory,
                host=self.host,
                port=self.tls_port or 0,
                reuse_address=True,
                ssl=self._tls_context,
            )
            self.tls_port = self._tls_server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        """Stop listening and close every open session."""
        server, self._server = self._server, None
        tls_server, self._tls_server = self._tls_server, None
        if server is None:
            return
        server.close()
        if tls_server is not None:
            tls_server.close()
        for smtp in list(self._sessions):
            if smtp.transport is not None:
                smtp.transport.close()
        await server.wait_closed()
        if tls_server is not None:
            await tls_server.wait_closed()
        # Let the closed transports run connection_lost before the loop is stopped.
        for _ in range(3):
            await asyncio.sleep(0)


class _TrackedSMTP(SMTP):
    """An aiosmtpd session that leaves the relay's set of open sessions when it ends."""

    def __init__(self, handler: _Handler, sessions: set[SMTP], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._open_sessions = sessions

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget this session, then let aiosmtpd clean up."""
        self._open_sessions.discard(self)
        super().connection_lost(exc)
