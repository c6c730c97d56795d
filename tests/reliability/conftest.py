"""Shared by the reliability suite: the size knob and real daemons that are always reaped.

`make test` runs these tests at small sizes; `make chaos` sets MAILFLOW_CHAOS=1 for the full
ones (at least 50 kill -9 per store, more work per daemon). Tests read the sizes with
:func:`full_size`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from testbed.daemon import Daemon


def full_size() -> bool:
    """Tell whether to run the full (slow) sizes: `make chaos` sets MAILFLOW_CHAOS=1."""
    return os.environ.get("MAILFLOW_CHAOS", "") not in ("", "0")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[Path, datetime], Daemon]]:
    """Start `mailflow run` processes on a config at a clock; every one is killed after."""
    started: list[Daemon] = []

    def start(config: Path, now: datetime) -> Daemon:
        daemon = Daemon(config, now, tmp_path / f"daemon-{len(started)}.log")
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()
