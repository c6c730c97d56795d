"""Read the shared mailbox over IMAP: the intake adapter, and the only user of imapclient.

The daemon's loop, built on :class:`ImapSource` and :class:`Reconnector`::

    reconnector.connect()
    while running:
        for fetched in source.fetch_after(last_uid):   # catch-up after every wake-up
            ...                                       # one DB transaction per message
        source.move(done_uids, processed_folder)      # only after the commit
        source.wait(timeout)                          # IDLE, or the poll fallback

and on :class:`ImapUnavailableError`, ``reconnector.connect()`` again and catch up.

Messages are identified by (mailbox, UIDVALIDITY, UID). The caller remembers the last UID it
committed *together with* the UIDVALIDITY it belongs to; when :attr:`ImapSource.uidvalidity`
differs after a connect, the server renumbered the mailbox: the old UIDs mean nothing, so the
caller must rescan from UID 0 and drop what it already has by Message-ID / SHA-256.

Bodies are read with ``BODY.PEEK[]`` and ``\\Seen`` is never read or set: people read the
shared mailbox too, so "unread" says nothing about what mailflow has processed.

Server behaviour this module works around (seen with Dovecot 2.3 and imapclient 4.1):

- A server shows a client only the messages it has announced with ``EXISTS``; Dovecot
  announces new mail at the *end* of a command, so a SEARCH right after a delivery misses it.
  Every catch-up therefore starts with NOOP.
- imaplib files ``EXISTS`` announced during other commands (SEARCH, FETCH) in a dict nobody
  reads. Those announcements are drained after each catch-up's NOOP; any left when
  :meth:`ImapSource.wait` starts mean mail came in meanwhile, and it returns at once.
- Dovecot sends ``+ idling`` and a pending ``* N EXISTS`` in one TCP segment; imaplib buffers
  both, and ``idle_check`` polls the socket, so it never sees the second line. A NOOP just
  before IDLE leaves nothing pending; what still slips into that gap is read by ``idle_done``
  when the IDLE is re-issued (at most ``idle_seconds`` later).
- ``idle_check`` swallows EOF and socket errors and returns ``[]`` early; an early empty
  return therefore ends the IDLE, and ``idle_done`` raises if the connection is gone.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from types import TracebackType
from typing import Any

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import CapabilityError, LoginError

from mailflow.config import Imap
from mailflow.errors import MailflowError
from mailflow.mail.spool import LARGE_MESSAGE_BYTES, RawMail, SpoolWriter
from mailflow.transport.oauth2 import OAuth2Error, OAuth2UnavailableError, TokenSource
from mailflow.transport.tls import certificate_advice, verifying_context

log = logging.getLogger(__name__)

# Untagged responses imaplib stores but nothing reads; drained so a session running for weeks
# does not grow them without bound.
_STORED_RESPONSES = ("EXISTS", "RECENT", "EXPUNGE", "FETCH")
# Kernel keepalive probes: a peer that vanished without a FIN (NAT timeout, pulled cable)
# makes the socket fail in ~2 minutes instead of at the next IDLE re-issue.
_KEEPALIVE = {"TCP_KEEPIDLE": 60, "TCP_KEEPINTVL": 15, "TCP_KEEPCNT": 4}
# At most this many bytes of small messages per UID FETCH round trip.
BATCH_BYTES = 8 * 1024 * 1024
# A large message is fetched in pieces of this size (BODY.PEEK[]<offset.length>).
PIECE_BYTES = 1024 * 1024
# At most this many UIDs above the last one read are checked for gaps in one pass.
MAX_GAP_SCAN = 100_000


class ImapError(MailflowError):
    """Root of the IMAP adapter's errors."""


class ImapUnavailableError(ImapError):
    """The server cannot be reached or the connection broke: reconnect and catch up."""


class ImapAuthError(ImapError):
    """The server refused the login: retrying will not help until the operator acts."""


class ImapTlsError(ImapError):
    """TLS could not be set up (certificate, STARTTLS missing): a configuration problem."""


class ImapCommandError(ImapError):
    """The server refused a command (missing folder, no MOVE/UIDPLUS): not transient."""


@dataclass(frozen=True)
class Fetched:
    """One message exactly as the server holds it, and where it was found.

    ``raw`` is the bytes of a small message, or the file a large one was spooled into;
    the file is deleted when the caller asks for the next message.
    """

    mailbox: str
    uidvalidity: int
    uid: int
    raw: RawMail


@dataclass(frozen=True)
class MailboxSurvey:
    """What ``check-config --live`` saw in the mailbox: size, capabilities, some headers."""

    folder: str
    count: int
    uidvalidity: int
    capabilities: tuple[str, ...]
    headers: tuple[tuple[str, ...], ...]  # one header's values, per message, newest last


def default_ssl_context(settings: Imap | None = None) -> ssl.SSLContext:
    """Return a context that verifies the server's certificate and host name.

    It trusts the system's CAs, or only those in ``imap.ca_file`` when that is set.
    """
    return verifying_context(settings.ca_file if settings else None)


class ImapSource:
    """Own one IMAP connection to the configured folder; reconnecting is the caller's call.

    Not thread-safe: one thread drives it. Every method raises :class:`ImapError`
    subclasses only; after :class:`ImapUnavailableError` the connection is closed and
    :meth:`connect` must be called again.
    """

    def __init__(
        self,
        settings: Imap,
        *,
        ssl_context: ssl.SSLContext | None = None,
        tokens: TokenSource | None = None,
        sleep: Callable[[float], object] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if settings.auth == "xoauth2" and tokens is None:
            raise ValueError('imap auth = "xoauth2" needs a TokenSource')
        self._settings = settings
        self._ssl_context = ssl_context
        self._tokens = tokens
        self._sleep = sleep
        self._monotonic = monotonic
        self._client: Any = None  # imapclient is untyped
        self._uidvalidity: int | None = None
        self._known_folders: set[str] = set()
        self._ahead = 0
        self._missing: list[int] = []

    # -- connection -----------------------------------------------------------------------

    @property
    def mailbox(self) -> str:
        """Return the folder this source reads."""
        return self._settings.folder

    @property
    def where(self) -> str:
        """Return ``user@host:port`` for log lines and error messages (never the password)."""
        s = self._settings
        return f"{s.username}@{s.host}:{s.port}"

    @property
    def tokens(self) -> TokenSource | None:
        """The XOAUTH2 token source this connection logs in with, if any."""
        return self._tokens

    @property
    def connected(self) -> bool:
        """Tell whether a connection is open (it may still turn out dead on next use)."""
        return self._client is not None

    @property
    def uidvalidity(self) -> int:
        """Return the selected folder's UIDVALIDITY; compare it with the one you stored."""
        if self._uidvalidity is None:
            raise ImapUnavailableError(f"IMAP {self.where}: not connected")
        return self._uidvalidity

    @property
    def has_idle(self) -> bool:
        """Tell whether the server offers IDLE (else :meth:`wait` polls)."""
        return self._has("IDLE")

    def connect(self) -> None:
        """Open the connection, log in and select the folder (closing any previous one)."""
        self.close()
        s = self._settings
        if s.security == "none":
            log.warning(
                "IMAP %s: security = none, password and mail travel unencrypted", self.where
            )
        with self._translate("connect"):
            client = IMAPClient(
                s.host,
                s.port,
                ssl=s.security == "tls",
                ssl_context=self._context() if s.security == "tls" else None,
                timeout=SocketTimeout(connect=s.timeout_seconds, read=s.timeout_seconds),
            )
        self._client = client
        try:
            self._start_session(client)
        except BaseException:
            self._drop()
            raise

    def _start_session(self, client: Any) -> None:
        """Upgrade to TLS if asked, log in, and select the folder read-write."""
        s = self._settings
        _enable_keepalive(client.socket())
        if s.security == "starttls":
            with self._translate("STARTTLS"):
                client.starttls(self._context())
        self._login(client)
        with self._translate(f"select {s.folder}"):
            # Read-write (not EXAMINE) so that MOVE works; bodies are only ever PEEKed.
            selected = client.select_folder(s.folder)
        if b"UIDVALIDITY" not in selected:
            raise ImapCommandError(f"IMAP {self.where}: la carpeta {s.folder} no tiene UIDVALIDITY")
        self._uidvalidity = int(selected[b"UIDVALIDITY"])
        self._drain()  # SELECT's EXISTS is the starting point, not news: catch up first
        waiting = "IDLE" if self.has_idle else f"no IDLE, polling every {s.poll_seconds} s"
        log.info(
            "IMAP %s: selected %s (UIDVALIDITY %d, %d messages, %s)",
            self.where,
            s.folder,
            self._uidvalidity,
            selected.get(b"EXISTS", 0),
            waiting,
        )

    def _login(self, client: Any) -> None:
        """Log in with the password, or with an OAuth2 access token (XOAUTH2)."""
        s = self._settings
        if s.auth == "password":
            assert s.password is not None  # the config guarantees it
            with self._translate("login"):
                client.login(s.username, s.password.get_secret_value())
            return
        assert self._tokens is not None
        with self._translate("XOAUTH2 login"):
            if not client.has_capability("AUTH=XOAUTH2"):
                raise self._no_xoauth2(client)
        # A cached token may have been revoked before its expiry: on refusal, forget it and
        # try once more with a fresh one; a fresh token refused is the operator's problem.
        for attempt in (1, 2):
            token = self._token()
            try:
                with self._translate_io("XOAUTH2 login"):
                    client.oauth2_login(s.username, token)
                return
            except LoginError as error:
                self._tokens.invalidate(token)
                if attempt == 2 or "[UNAVAILABLE]" in str(error):
                    raise self._login_error(error, oauth=True) from None
                log.info("IMAP %s: access token refused; asking for a new one", self.where)

    def _token(self) -> str:
        """Return an access token, as IMAP errors when the provider does not give one."""
        assert self._tokens is not None
        try:
            return self._tokens.token()
        except OAuth2UnavailableError as error:
            self._drop()
            raise ImapUnavailableError(f"IMAP {self.where}: sin token de acceso: {error}") from None
        except OAuth2Error as error:
            self._drop()
            raise ImapAuthError(f"IMAP {self.where}: sin token de acceso: {error}") from None

    def _no_xoauth2(self, client: Any) -> ImapError:
        mechanisms = [c for c in client.capabilities() if c.startswith(b"AUTH=")]
        offered = sorted(c.decode().removeprefix("AUTH=") for c in mechanisms)
        self._drop()
        return ImapAuthError(
            f"IMAP {self.where}: el servidor no ofrece XOAUTH2 (ofrece "
            f'{", ".join(offered) or "ningún mecanismo AUTH"}); ponga imap.auth = "password", '
            "o revise imap.host e imap.security (algunos servidores solo lo ofrecen con TLS)"
        )

    def close(self) -> None:
        """Log out politely if the connection still works; never raise."""
        client, self._client = self._client, None
        self._uidvalidity = None
        if client is None:
            return
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError) as error:
            log.debug("IMAP %s: logout failed (%s); connection closed anyway", self.where, error)
            with contextlib.suppress(Exception):
                client.shutdown()

    def _drop(self) -> None:
        """Close a broken connection without talking to the server, which may hang."""
        client, self._client = self._client, None
        self._uidvalidity = None
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()

    def __enter__(self) -> ImapSource:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading --------------------------------------------------------------------------

    def fetch_after(
        self,
        last_uid: int,
        batch: int = 50,
        *,
        spool_dir: Path | None = None,
        gaps: bool = False,
    ) -> Iterator[Fetched]:
        """Yield every message with a UID above ``last_uid``, in UID order, unmarked.

        Sizes come first (``RFC822.SIZE``): small messages are fetched up to ``batch``
        and :data:`BATCH_BYTES` per round trip, so a backlog is never held in memory at
        once; a message of :data:`~mailflow.mail.spool.LARGE_MESSAGE_BYTES` or more is fetched
        in :data:`PIECE_BYTES` pieces straight into a file under ``spool_dir`` (the
        system's temporary folder by default), hashed while written. A message expunged
        between SEARCH and FETCH is skipped. Check :attr:`uidvalidity` against the stored
        one before trusting ``last_uid``.

        ``gaps``: also find the UIDs above ``last_uid`` that were given to a message which
        is no longer there (moved or deleted by someone else before it was fetched); they
        are in :attr:`missing` as the iteration goes. Only meaningful when ``last_uid`` is
        a position read from this very UIDVALIDITY.
        """
        client = self._require()
        self._missing = []
        # UIDNEXT before the NOOP: every UID below it belongs to a message delivered before
        # the NOOP announces what is there, so SEARCH lists it unless it is gone.
        uidnext = self._uidnext(client) if gaps else None
        with self._translate("NOOP"):
            client.noop()  # the server shows only announced mail: make it announce now
        self._drain()
        with self._translate("UID SEARCH"):
            found = client.search(["UID", f"{last_uid + 1}:*"])
        # "N:*" always matches the highest UID, even when it is below N (RFC 3501 6.4.8).
        uids = sorted(uid for uid in found if uid > last_uid)
        if uidnext is not None:
            listed = set(uids)
            top = min(uidnext, last_uid + 1 + MAX_GAP_SCAN)
            self._missing = [uid for uid in range(last_uid + 1, top) if uid not in listed]
        if uids:
            log.info("IMAP %s: %d new message(s) after UID %d", self.where, len(uids), last_uid)
        uidvalidity = self.uidvalidity
        self._ahead = 0
        for start in range(0, len(uids), batch):
            sizes = self._sizes(client, uids[start : start + batch])
            for group in _rounds(sizes, batch):
                if len(group) == 1 and sizes[group[0]] >= LARGE_MESSAGE_BYTES:
                    yield from self._fetch_large(client, uidvalidity, group[0], spool_dir)
                    continue
                with self._translate("UID FETCH"):
                    data = client.fetch(group, ["BODY.PEEK[]"])
                present: list[tuple[int, bytes]] = []
                for uid in group:
                    raw = data.get(uid, {}).get(b"BODY[]")
                    if raw is None:
                        self._vanished(uid)
                    else:
                        present.append((uid, bytes(raw)))
                for index, (uid, raw) in enumerate(present):
                    self._ahead = len(present) - index - 1
                    yield Fetched(self.mailbox, uidvalidity, uid, raw)
                self._ahead = 0

    @property
    def missing(self) -> list[int]:
        """Return the UIDs the current :meth:`fetch_after` found gone, in order."""
        return sorted(self._missing)

    def _uidnext(self, client: Any) -> int:
        """Return the UID the server will give the next message of the folder."""
        with self._translate("STATUS UIDNEXT"):
            status = client.folder_status(self.mailbox, [b"UIDNEXT"])
        return int(status[b"UIDNEXT"])

    @property
    def ahead(self) -> int:
        """Return how many messages :meth:`fetch_after` holds fetched but not yet yielded.

        Taking them costs no round trip: the runner takes only these while a transaction
        is open, so that no wait on the server holds the database's locks.
        """
        return self._ahead

    def _sizes(self, client: Any, uids: list[int]) -> dict[int, int]:
        """Return each message's size in bytes; an expunged one is missing (and logged)."""
        with self._translate("UID FETCH"):
            data = client.fetch(uids, ["RFC822.SIZE"])
        sizes = {}
        for uid in uids:
            size = data.get(uid, {}).get(b"RFC822.SIZE")
            if size is None:
                self._vanished(uid)
            else:
                sizes[uid] = int(size)
        return sizes

    def _fetch_large(
        self, client: Any, uidvalidity: int, uid: int, spool_dir: Path | None
    ) -> Iterator[Fetched]:
        """Fetch one message piece by piece into a spool file; delete it once handled."""
        with SpoolWriter(spool_dir, ".eml") as writer:
            offset = 0
            while True:
                item = f"BODY.PEEK[]<{offset}.{PIECE_BYTES}>"
                with self._translate("UID FETCH"):
                    data = client.fetch([uid], [item])
                piece = data.get(uid, {}).get(f"BODY[]<{offset}>".encode())
                if piece is None:
                    if offset == 0:
                        self._vanished(uid)
                        return
                    break  # past the end: some servers answer nothing there
                writer.write(piece)
                offset += len(piece)
                if len(piece) < PIECE_BYTES:
                    break
            spooled = writer.finish()
        try:
            yield Fetched(self.mailbox, uidvalidity, uid, spooled)
        finally:
            spooled.discard()

    def _vanished(self, uid: int) -> None:
        log.info("IMAP %s: UID %d vanished between SEARCH and FETCH", self.where, uid)
        self._missing.append(uid)

    def survey(self, header: str, last: int) -> MailboxSurvey:
        """Describe the selected folder, with the values of ``header`` on its ``last`` mails."""
        client = self._require()
        with self._translate("UID SEARCH"):
            uids = sorted(client.search(["ALL"]))
        chosen = uids[-last:] if last > 0 else []
        item = f"BODY.PEEK[HEADER.FIELDS ({header.upper()})]"
        data: dict[int, Any] = {}
        if chosen:
            with self._translate("UID FETCH"):
                data = client.fetch(chosen, [item])
        key = item.replace(".PEEK", "").encode()
        headers = tuple(
            _header_values(data.get(uid, {}).get(key, b""), header) for uid in chosen if uid in data
        )
        with self._translate("CAPABILITY"):
            capabilities = tuple(sorted(c.decode() for c in client.capabilities()))
        return MailboxSurvey(self.mailbox, len(uids), self.uidvalidity, capabilities, headers)

    # -- waiting --------------------------------------------------------------------------

    def wait(self, timeout: float) -> bool:
        """Block until the server announces new mail (True) or ``timeout`` seconds pass.

        True means "search now"; it may be a false alarm, never a missed message. Uses IDLE,
        re-issued every ``idle_seconds``; without IDLE, NOOP every ``poll_seconds``. The
        connection is never left in IDLE when this returns or raises.
        """
        client = self._require()
        if self._drain():
            return True  # announced during the last catch-up, after its search
        deadline = self._monotonic() + timeout
        if self.has_idle:
            if self._noop_announces_mail(client):
                return True
            while (left := deadline - self._monotonic()) > 0:
                if self._idle(client, min(left, self._settings.idle_seconds)):
                    return True
            return False
        return self._poll(client, deadline)

    def _poll(self, client: Any, deadline: float) -> bool:
        """Sleep up to ``poll_seconds``, then NOOP; True if mail was announced or it is time."""
        interval = self._settings.poll_seconds
        pause = max(0.0, min(interval, deadline - self._monotonic()))
        self._sleep(pause)
        # A server that does not announce mail on NOOP is still searched every interval.
        return self._noop_announces_mail(client) or pause >= interval

    def _idle(self, client: Any, seconds: float) -> bool:
        """Run one IDLE command for at most ``seconds``; return whether mail was announced."""
        end = self._monotonic() + seconds
        announced = False
        try:
            with self._translate("IDLE"):
                client.idle()
                while not announced and (left := end - self._monotonic()) > 0:
                    responses = client.idle_check(timeout=left)
                    self._check_bye(responses)
                    announced = _announces_mail(responses)
                    if not responses and self._monotonic() < end - 0.01:
                        break  # readable yet nothing to read: EOF, which idle_done reports
                _text, responses = client.idle_done()
        except BaseException:
            # Interrupted mid-IDLE (timeout, signal): the protocol state is unknown.
            self._drop()
            raise
        self._drain()
        return announced or _announces_mail(responses)

    def _noop_announces_mail(self, client: Any) -> bool:
        """Send NOOP (keepalive and sync); return whether it announced new mail."""
        with self._translate("NOOP"):
            _text, responses = client.noop()
        self._drain()
        self._check_bye(responses)
        return _announces_mail(responses)

    def _check_bye(self, responses: Sequence[tuple[Any, ...]]) -> None:
        """Raise ImapUnavailableError when the server said BYE (shutdown, kicked, timeout)."""
        for response in responses:
            if response and response[0] == b"BYE":
                text = b" ".join(part for part in response[1:] if isinstance(part, bytes))
                self._drop()
                raise ImapUnavailableError(
                    f"IMAP {self.where}: el servidor cerró la conexión: "
                    f"{text.decode('utf-8', 'replace')}"
                )

    def _drain(self) -> bool:
        """Forget stored unsolicited responses; return whether they announced new mail."""
        announced = False
        for name in _STORED_RESPONSES:
            if self._take(name) and name in ("EXISTS", "RECENT"):
                announced = True
        return announced

    def _take(self, name: str) -> list[bytes]:
        """Remove and return the responses imaplib stored under ``name``."""
        # imaplib.IMAP4.response() is imaplib's public way to take a stored response; only
        # reaching imaplib through IMAPClient._imap is private (imapclient has no API for it).
        _name, data = self._require()._imap.response(name)
        return [item for item in data if isinstance(item, bytes)]

    # -- moving ---------------------------------------------------------------------------

    def move(self, uids: Sequence[int], folder: str) -> None:
        """Move messages to ``folder`` (created if missing); call only after the DB commit.

        Uses UID MOVE, else COPY + ``\\Deleted`` + UID EXPUNGE (UIDPLUS), deleting only
        what the server confirms it copied. Without either, raises ImapCommandError: a plain
        EXPUNGE would also purge messages that people flagged ``\\Deleted``. UIDs already
        gone are ignored, so repeating a move after a crash is harmless.
        """
        if not uids:
            return
        client = self._require()
        self._ensure_folder(client, folder)
        with self._translate("NOOP"):
            client.noop()  # commands only see announced messages: announce them all now
        with self._translate(f"move {len(uids)} message(s) to {folder}"):
            if self._has("MOVE"):
                client.move(list(uids), folder)
            elif self._has("UIDPLUS"):
                self._copy_and_expunge(client, uids, folder)
            else:
                raise ImapCommandError(
                    f"IMAP {self.where}: el servidor no ofrece MOVE ni UIDPLUS, así que no se "
                    "puede mover correo sin riesgo; quite imap.processed_folder de la configuración"
                )
        log.info("IMAP %s: moved UID(s) %s to %s", self.where, _uid_list(uids), folder)

    def _copy_and_expunge(self, client: Any, uids: Sequence[int], folder: str) -> None:
        """COPY, then delete only the messages the COPYUID answer lists as copied."""
        self._take("COPYUID")  # forget any stale one
        client.copy(list(uids), folder)
        # imaplib files the tagged reply's [COPYUID v src dst] code under its name.
        copied: set[int] = set()
        for code in self._take("COPYUID"):
            parts = code.split()
            if len(parts) == 3:
                copied |= _uid_set(parts[1])
        confirmed = sorted(copied & set(uids))
        if not confirmed:
            # No proof of a copy: deleting could lose mail, so leave it where it is.
            log.warning("IMAP %s: COPY to %s confirmed nothing; left in place", self.where, folder)
            return
        client.add_flags(confirmed, [b"\\Deleted"], silent=True)
        client.uid_expunge(confirmed)

    def _ensure_folder(self, client: Any, folder: str) -> None:
        """Create and subscribe ``folder`` unless it exists (it may appear concurrently)."""
        if folder in self._known_folders:
            return
        with self._translate(f"create {folder}"):
            if not client.folder_exists(folder):
                try:
                    client.create_folder(folder)
                except imaplib.IMAP4.abort:
                    raise
                except imaplib.IMAP4.error:
                    if not client.folder_exists(folder):  # not another daemon's doing
                        raise
                else:
                    log.info("IMAP %s: created folder %s", self.where, folder)
                # Subscribed, so that people's mail clients show it by default.
                client.subscribe_folder(folder)
        self._known_folders.add(folder)

    # -- helpers --------------------------------------------------------------------------

    def _require(self) -> Any:
        """Return the open client, or raise ImapUnavailableError."""
        if self._client is None:
            raise ImapUnavailableError(f"IMAP {self.where}: not connected; call connect()")
        return self._client

    def _has(self, capability: str) -> bool:
        """Tell whether the server announced ``capability`` (after login)."""
        with self._translate("CAPABILITY"):
            return bool(self._require().has_capability(capability))

    def _context(self) -> ssl.SSLContext:
        """Return the caller's TLS context, or a verifying default one."""
        if self._ssl_context is None:
            self._ssl_context = default_ssl_context(self._settings)
        return self._ssl_context

    @contextlib.contextmanager
    def _translate_io(self, action: str) -> Iterator[None]:
        """Like :meth:`_translate`, but let a refused login through to the caller."""
        try:
            yield
        except LoginError:
            raise
        except Exception:
            with self._translate(action):
                raise

    @contextlib.contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        """Turn imapclient, socket and TLS failures into mailflow's IMAP errors."""
        try:
            yield
        except ImapError:
            raise
        except LoginError as error:
            raise self._login_error(error) from None
        except ssl.SSLError as error:
            raise self._tls_error(action, error) from None
        except CapabilityError as error:
            raise self._capability_error(action, error) from None
        except (imaplib.IMAP4.abort, OSError) as error:  # OSError covers timeouts and TLS
            self._drop()
            reason = str(error) or type(error).__name__
            raise ImapUnavailableError(f"IMAP {self.where}: {action} falló: {reason}") from None
        except imaplib.IMAP4.error as error:
            raise ImapCommandError(f"IMAP {self.where}: {action} rechazado: {error}") from None

    def _login_error(self, error: LoginError, *, oauth: bool = False) -> ImapError:
        """Classify a refused login: temporary ([UNAVAILABLE], RFC 5530) or the operator's."""
        self._drop()
        text = str(error)
        if "[UNAVAILABLE]" in text:
            return ImapUnavailableError(
                f"IMAP {self.where}: inicio de sesión rechazado por ahora: {text}"
            )
        if oauth:
            return ImapAuthError(
                f"IMAP {self.where}: inicio de sesión XOAUTH2 rechazado aun con un token de acceso "
                f"recién emitido ({text}); revise que imap.username sea el buzón del token, que "
                "el registro de la aplicación permita IMAP ([oauth2] scope) y que el buzón "
                "tenga IMAP habilitado (docs/providers.md)"
            )
        return ImapAuthError(
            f"IMAP {self.where}: inicio de sesión rechazado ({text}); revise imap.username y la "
            "contraseña (imap.password_env, password_file, password_credential o password) y "
            "que la cuenta pueda usar IMAP"
        )

    def _tls_error(self, action: str, error: ssl.SSLError) -> ImapError:
        """Classify a TLS failure: the peer hanging up is transient, the rest is config."""
        self._drop()
        if isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return ImapUnavailableError(f"IMAP {self.where}: {action} falló: {error}")
        if isinstance(error, ssl.SSLCertVerificationError):
            advice = certificate_advice(error, "imap", self._settings.host)
            return ImapTlsError(
                f"IMAP {self.where}: el certificado TLS del servidor no fue aceptado "
                f"({error.verify_message}): {advice}"
            )
        return ImapTlsError(
            f"IMAP {self.where}: TLS falló ({error.reason or error}); revise imap.security "
            'e imap.port ("tls" suele ser el puerto 993, "starttls" el 143)'
        )

    def _capability_error(self, action: str, error: CapabilityError) -> ImapError:
        """Explain a missing capability; only STARTTLS can be missing at connect time."""
        if action == "STARTTLS":
            self._drop()
            return ImapTlsError(
                f"IMAP {self.where}: el servidor no ofrece STARTTLS; use "
                'security = "tls" (suele ser el puerto 993), o corrija el servidor'
            )
        return ImapCommandError(f"IMAP {self.where}: {action}: {error}")


def _rounds(sizes: dict[int, int], batch: int) -> Iterator[list[int]]:
    """Group UIDs (in order) into fetches of at most ``batch`` messages and BATCH_BYTES.

    A large message is a group of its own, fetched in pieces.
    """
    group: list[int] = []
    total = 0
    for uid, size in sizes.items():
        if group and (
            size >= LARGE_MESSAGE_BYTES or total + size > BATCH_BYTES or len(group) >= batch
        ):
            yield group
            group, total = [], 0
        if size >= LARGE_MESSAGE_BYTES:
            yield [uid]
            continue
        group.append(uid)
        total += size
    if group:
        yield group


def _header_values(raw: bytes, name: str) -> tuple[str, ...]:
    """Return every value of header ``name`` in a raw header block, unfolded, in order."""
    parsed = BytesHeaderParser(policy=compat32).parsebytes(bytes(raw))
    return tuple(" ".join(str(v).split()) for v in parsed.get_all(name, []))


def _announces_mail(responses: Sequence[tuple[Any, ...]]) -> bool:
    """Tell whether untagged responses include ``* N EXISTS`` or ``* N RECENT``."""
    return any(
        len(r) >= 2 and isinstance(r[0], int) and r[1] in (b"EXISTS", b"RECENT") for r in responses
    )


def _uid_set(text: bytes) -> set[int]:
    """Return the UIDs of an IMAP sequence set such as ``3:5,9`` (no ``*``)."""
    found: set[int] = set()
    for part in text.split(b","):
        low, _, high = part.partition(b":")
        first, last = sorted((int(low), int(high or low)))
        found.update(range(first, last + 1))
    return found


def _uid_list(uids: Sequence[int]) -> str:
    """Return UIDs for a log line, abbreviated when there are many."""
    shown = ",".join(str(uid) for uid in uids[:10])
    return shown if len(uids) <= 10 else f"{shown},… ({len(uids)} in all)"


def _enable_keepalive(sock: socket.socket) -> None:
    """Turn on TCP keepalive with short Linux timers, where the platform has them."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in _KEEPALIVE.items():
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


# -- reconnecting -------------------------------------------------------------------------


def backoff_delay(
    failures: int, *, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Return the pause after ``failures`` consecutive failures: doubling, capped, jittered.

    "Equal jitter": half the step is fixed so the delay really grows, the other half random
    so that several daemons restarted together do not knock on the server in step.
    """
    step = min(cap, base * 2.0 ** max(0, failures - 1))
    return step / 2 + step / 2 * rand()


class Reconnector:
    """Connect an ImapSource, retrying while the server is unavailable, with backoff.

    Only :class:`ImapUnavailableError` is retried; auth, TLS and command errors need the
    operator and are raised at once. A connection that drops within ``stable_after``
    seconds does not reset the backoff, so a server that accepts and then drops every
    connection is not hammered.
    """

    def __init__(
        self,
        source: ImapSource,
        *,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        stable_after: float = 60.0,
        max_attempts: int | None = None,
        sleep: Callable[[float], object] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.source = source
        self._base, self._cap, self._stable_after = base_delay, max_delay, stable_after
        self._max_attempts = max_attempts
        self._sleep, self._monotonic, self._rand = sleep, monotonic, rand
        self._failures = 0
        self._connected_at: float | None = None

    def connect(self) -> None:
        """Connect, sleeping between failed attempts; raise when attempts run out.

        ``sleep`` may be ``threading.Event().wait``: once it returns True (shutdown
        requested) the last error is raised instead of trying again.
        """
        where = self.source.where
        if self._connected_at is not None:
            lasted = self._monotonic() - self._connected_at
            if lasted >= self._stable_after:
                self._failures = 0
            elif self._pause(f"IMAP {where}: the last connection lasted only {lasted:.0f} s"):
                raise ImapUnavailableError(f"IMAP {where}: stopped before reconnecting")
        attempts = 0
        while True:
            attempts += 1
            try:
                self.source.connect()
            except ImapUnavailableError as error:
                out_of_attempts = self._max_attempts is not None and attempts >= self._max_attempts
                if out_of_attempts or self._pause(str(error)):
                    raise
                continue
            if self._failures:
                log.info("IMAP %s: connected again", where)
            # Failures are forgotten only once this connection proves stable (next call).
            self._connected_at = self._monotonic()
            return

    def _pause(self, reason: str) -> bool:
        """Log one line and sleep before the next attempt; return True to stop trying."""
        self._failures += 1
        delay = backoff_delay(self._failures, base=self._base, cap=self._cap, rand=self._rand)
        log.warning("%s; retrying in %.1f s (failure %d)", reason, delay, self._failures)
        return self._sleep(delay) is True
