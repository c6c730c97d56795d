"""Faults a test can put under the daemon: a small full disk, a slow and cuttable TCP link.

* :func:`small_disk` mounts a tmpfs of a given size on a folder (root only; raises
  :class:`NotPermittedError` when mounting is refused, so a test can skip saying why), and
  :func:`fill` takes every byte left on it.
* :class:`FailOnCall` makes one call of a method raise (the database gone in the middle of
  the N-th message, a poisonous message), counting the calls.
* :class:`SlowProxy` forwards one TCP port to another on 127.0.0.1, server-to-client bytes
  at a bounded rate, counting them, so a test can act in the middle of a large FETCH; it
  can also reset its connections, refuse new ones, or greet them with an error and hang up
  (an SMTP server answering 421).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from .ports import HOST


def connection_lost(statement: str = "SELECT") -> OperationalError:
    """Return what SQLAlchemy raises when the database server went away mid-statement."""
    return OperationalError(statement, {}, Exception("server closed the connection"))


class FailOnCall:
    """Replace ``owner.name`` so that its ``at``-th call raises ``error``; count every call.

    With ``after``, that call is made first (its writes are done) and then raises. The
    original stays in ``original``, to put back when the trouble has passed.
    """

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        owner: object,
        name: str,
        at: int,
        error: BaseException,
        *,
        after: bool = False,
    ) -> None:
        self.calls = 0
        self.original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls != at:
                return self.original(*args, **kwargs)
            if after:
                self.original(*args, **kwargs)
            raise error

        monkeypatch.setattr(owner, name, wrapper)


class NotPermittedError(RuntimeError):
    """This machine does not let the test mount a file system."""


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (e.g. "1m") on ``path`` for the block; unmount after."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        raise NotPermittedError(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Write a file into ``folder`` until the disk is full; return it (unlink to free)."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 1):  # then byte by byte: what is left is less than a block
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return filler


class SlowProxy:
    """Forward 127.0.0.1:port to ``target``; the server's bytes flow at ``rate`` bytes/s."""

    def __init__(self, target_host: str, target_port: int, rate: float = 1e12) -> None:
        self.target = (target_host, target_port)
        self.rate = rate
        self.downstream = 0  # bytes forwarded server -> client
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.greeting: bytes | None = None  # when set: answer it and hang up, as a sick server
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def refuse(self) -> None:
        """Close the port: connections are refused until :meth:`listen`."""
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self.listener.close()

    def listen(self) -> None:
        """Listen again on the same port after :meth:`refuse`."""
        self.listener = socket.create_server((HOST, self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self.greeting is not None:
                with contextlib.suppress(OSError):
                    client.sendall(self.greeting)
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, slow: bool) -> None:
        chunk = 16384 if slow else 65536
        try:
            while data := source.recv(chunk):
                sink.sendall(data)
                if slow:
                    with self._lock:
                        self.downstream += len(data)
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def wait_downstream(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` more bytes than now have gone server -> client."""
        target = self.downstream + count
        deadline = time.monotonic() + timeout
        while self.downstream < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.downstream} bytes went through the proxy")
            time.sleep(0.01)

    def cut(self) -> None:
        """Reset every open connection (RST, as when a server dies with data unsent)."""
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pump threads blocked on it
            sock.close()

    def close(self) -> None:
        self._closed = True
        self.refuse()
        self.cut()
