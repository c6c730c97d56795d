"""The daemon's loop in a test's own thread, on a clock the test moves by hand."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime

from mailflow.daemon.runner import Runner


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@contextlib.contextmanager
def running(runner: Runner) -> Iterator[threading.Thread]:
    """Run the loop in a thread; stop it (within one wait) when the block ends."""
    thread = threading.Thread(target=runner.run_forever, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        runner.stop()
        thread.join(30)
    assert not thread.is_alive(), "run_forever did not stop"
