"""Tell systemd how the daemon is doing: the sd_notify(3) datagram protocol, by hand.

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (in the abstract namespace when the name starts with ``@``). It is a
dozen lines, so it is written here rather than taken from python-systemd, which needs the
libsystemd headers and a compiler at install time. Without ``$NOTIFY_SOCKET`` (a terminal,
the tests, another supervisor) every method does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("mailflow.ops.sd_notify")


class Notifier:
    """Send READY, WATCHDOG, STATUS, RELOADING and STOPPING to systemd, if it listens."""

    def __init__(
        self, env: Mapping[str, str], monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.setblocking(False)
        self.watchdog_seconds = _watchdog_seconds(env)
        self._monotonic = monotonic
        self._last_ping = float("-inf")
        self._stopping_sent = False

    @property
    def enabled(self) -> bool:
        """Return True when a supervisor listens on a notify socket."""
        return self._socket is not None

    def ping_interval(self, default: float) -> float:
        """Return how long a wait may last and still ping in time: default, or a third of it."""
        if self.watchdog_seconds is None:
            return default
        return max(0.5, min(default, self.watchdog_seconds / 3))

    def send(self, *fields: str) -> None:
        """Send one message; a supervisor that went away is not an error of ours."""
        if self._socket is None:
            return
        data = "\n".join(fields).encode("utf-8", "replace")
        try:
            self._socket.sendto(data, self._address)
        except OSError as exc:
            log.debug("sd_notify to %s failed: %s", self._address, exc)

    def ready(self, status: str = "") -> None:
        """Say that start-up is complete (config, store and the first IMAP login)."""
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        """Set the one-line status `systemctl status` shows."""
        self.send(f"STATUS={text}")

    def watchdog(self, force: bool = False) -> None:
        """Ping the watchdog; at most four times per watchdog interval unless forced."""
        if self.watchdog_seconds is None:
            return
        now = self._monotonic()
        if force or now - self._last_ping >= self.watchdog_seconds / 4:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def reloading(self) -> None:
        """Say that a reload started; ready() ends it."""
        self.send("RELOADING=1", "STATUS=reloading the configuration")

    def stopping(self) -> None:
        """Say that the daemon is shutting down (once: the signal handler and the loop's end)."""
        if not self._stopping_sent:
            self._stopping_sent = True
            self.send("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """Return $WATCHDOG_USEC in seconds when it is meant for this process, else None."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1_000_000
