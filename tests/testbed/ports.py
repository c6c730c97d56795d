"""Find free TCP ports on 127.0.0.1 and wait for servers to listen on them."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable

HOST = "127.0.0.1"


def free_ports(count: int, host: str = HOST) -> list[int]:
    """Return `count` distinct TCP ports that nothing listens on right now.

    All sockets are held open until every port is chosen: asked one at a time, the kernel may
    hand out the same port twice. The ports are only free at the moment of asking: another
    process may take one before our server binds it, so callers retry their start-up with
    fresh ports when the bind fails.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def free_port(host: str = HOST) -> int:
    """Return one TCP port that nothing listens on right now (see free_ports)."""
    return free_ports(1, host)[0]


def accepts(host: str, port: int, timeout: float = 1.0, *, banner: bytes = b"") -> bool:
    """Tell whether a TCP connection to host:port succeeds now (and greets with banner)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return not banner or banner in sock.recv(1024)
    except OSError:
        return False


def wait_for_port(
    host: str,
    port: int,
    timeout: float,
    *,
    alive: Callable[[], bool] = lambda: True,
    what: str = "server",
    banner: bytes = b"",
) -> None:
    """Wait until host:port accepts connections; raise TimeoutError or RuntimeError otherwise.

    ``alive`` is polled too, so that a server that died during start-up is reported at once
    instead of after the whole timeout. ``banner``, if given, must be in the greeting: then a
    stranger that took our port is not mistaken for our server.
    """
    deadline = time.monotonic() + timeout
    while True:
        if accepts(host, port, banner=banner):
            return
        if not alive():
            raise RuntimeError(f"{what} exited before listening on {host}:{port}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not listening on {host}:{port} after {timeout:.0f} s")
        time.sleep(0.05)
