"""`mailflow run` as a real subprocess on a site's config, its log in a file.

For tests that kill, restart and count daemons: start, wait for a log line, SIGTERM,
SIGKILL. Every process started is killed (and reaped) by ``kill()``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

MAILFLOW = Path(sys.executable).parent / "mailflow"


class Daemon:
    """One `mailflow --config … --now … run` process."""

    def __init__(self, config: Path, now: datetime, log_path: Path) -> None:
        self.log_path = log_path
        self.started = time.monotonic()
        with log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [str(MAILFLOW), "--config", str(config), "--now", now.isoformat(), "run"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_log(self, text: str, timeout: float = 30.0, count: int = 1) -> None:
        """Wait until ``text`` appears ``count`` times in the log (fail if the daemon died)."""
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            if not self.alive or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} x{count} in the daemon log:\n{self.log()}")
            time.sleep(0.02)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM the daemon and return its exit status."""
        return self.stop(timeout)[0]

    def stop(self, timeout: float = 5.0) -> tuple[int, float]:
        """SIGTERM the daemon; return its exit status and how long it took to exit."""
        started = time.monotonic()
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            message = f"still running {timeout} s after SIGTERM:\n{self.log()}"
            raise AssertionError(message) from None
        return status, time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL the daemon (kill -9: no handler, no cleanup) and reap it."""
        if self.alive:
            self.process.kill()
        self.process.wait(30)
