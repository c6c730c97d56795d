"""Fill mailboxes fast, read them raw, and watch them with IMAP IDLE."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage

from imapclient import IMAPClient
from testbed.dovecot import Dovecot
from testbed.mail import parse

APPEND_BYTES = 32 * 1024 * 1024  # per MULTIAPPEND command
# Re-issuing IDLE often would open more gaps between commands; never would leave a missed
# announcement (see Watcher._run) waiting forever.
IDLE_SECONDS = 10.0


def _login(dovecot: Dovecot, address: str) -> IMAPClient:
    account = dovecot.account(address)
    client = IMAPClient(account.host, account.port, ssl=False, timeout=120)
    client.login(account.username, account.password)
    return client


def append_all(dovecot: Dovecot, address: str, messages: Iterable[bytes]) -> int:
    """APPEND every message to address's INBOX, many per command (MULTIAPPEND); count them."""
    client = _login(dovecot, address)
    count, chunk, size = 0, list[bytes](), 0
    try:
        for raw in messages:
            chunk.append(raw)
            size += len(raw)
            if size >= APPEND_BYTES or len(chunk) >= 500:
                client.multiappend("INBOX", chunk)
                count, chunk, size = count + len(chunk), [], 0
        if chunk:
            client.multiappend("INBOX", chunk)
            count += len(chunk)
    finally:
        client.logout()
    return count


def fetch_all(dovecot: Dovecot, address: str, batch: int = 100) -> tuple[int, int]:
    """Read every message of address's INBOX (BODY.PEEK[]); return (messages, bytes)."""
    client = _login(dovecot, address)
    try:
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search("ALL"))
        total = 0
        for start in range(0, len(uids), batch):
            fetched = client.fetch(uids[start : start + batch], ["BODY.PEEK[]"])
            total += sum(len(item[b"BODY[]"]) for item in fetched.values())
        return len(uids), total
    finally:
        client.logout()


@dataclass(frozen=True)
class Arrival:
    """A message that appeared in a watched mailbox, and when IDLE announced it."""

    at: float  # time.perf_counter() when the announcement was read
    message: EmailMessage


class Watcher:
    """Watch one INBOX with IMAP IDLE in a thread; queue each new message with its time.

    The time is taken when the server's ``* N EXISTS`` is read, before the message is
    fetched, so the measurement never waits on a poll. A message found by the search
    after a fetch (it came in meanwhile) is stamped with the time of that search.
    """

    def __init__(self, dovecot: Dovecot, address: str) -> None:
        self.address = address
        self.arrivals: queue.Queue[Arrival] = queue.Queue()
        self._client = _login(dovecot, address)
        self._client.select_folder("INBOX")
        self._last = max(self._client.search("ALL"), default=0)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{address}", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        try:
            announced: float | None = None
            while not self._stop.is_set():
                found = self._client.search(["UID", f"{self._last + 1}:*"])
                found = sorted(u for u in found if u > self._last)  # N:* matches the last UID
                if found:
                    at = announced or time.perf_counter()
                    fetched = self._client.fetch(found, ["BODY.PEEK[]"])
                    for uid in found:
                        self.arrivals.put(Arrival(at, parse(fetched[uid][b"BODY[]"])))
                    self._last = found[-1]
                announced = None
                # Dovecot may send "+ idling" and a pending "* N EXISTS" in one segment, and
                # imaplib would keep the second line buffered where idle_check never looks
                # (mailflow/imap.py works around the same): NOOP first to take it.
                _text, pending = self._client.noop()
                if _exists(pending):
                    announced = time.perf_counter()
                    continue
                self._client.idle()
                self._ready.set()
                responses = self._client.idle_check(timeout=IDLE_SECONDS)
                if _exists(responses):
                    announced = time.perf_counter()
                self._client.idle_done()
        except BaseException as error:  # reported by the main thread's next()
            if not self._stop.is_set():  # else: close() cut the connection
                self._error = error
            self._ready.set()

    def next(self, timeout: float) -> Arrival:
        """Return the next new message; raise TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if self._error is not None:
                raise RuntimeError(f"watcher of {self.address} failed") from self._error
            try:
                return self.arrivals.get(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"nothing new for {self.address} in {timeout} s") from None

    def drain(self) -> Iterator[Arrival]:
        """Yield what arrived and was not taken yet."""
        while True:
            try:
                yield self.arrivals.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        """Stop the thread by closing its connection (it may be in a long IDLE)."""
        self._stop.set()
        self._client.shutdown()
        self._thread.join(timeout=5)


def _exists(responses: list[tuple[object, ...]]) -> bool:
    """Tell whether untagged responses announce new mail (``* N EXISTS``)."""
    return any(len(r) >= 2 and r[1] == b"EXISTS" for r in responses)
