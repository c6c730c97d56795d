"""Track the OS processes a test server forked, so that stopping it can prove none survive.

Reads /proc (Linux only). A process is identified by (pid, start time) so that a recycled pid
is never mistaken for one of ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

ProcId = tuple[int, int]  # (pid, start time in clock ticks since boot)


def _stat(pid: int) -> tuple[int, int] | None:
    """Return (parent pid, start time) of pid, or None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    state, ppid, start = fields[0], int(fields[1]), int(fields[19])
    if state in {"Z", "X"}:
        return None
    return ppid, start


def proc_id(pid: int) -> ProcId | None:
    """Return the identity of a live process, or None if it is gone."""
    stat = _stat(pid)
    return None if stat is None else (pid, stat[1])


def family(pid: int) -> list[ProcId]:
    """Return pid and all its live descendants."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is not None:
            children.setdefault(stat[0], []).append(int(entry))
            starts[int(entry)] = stat[1]
    if pid not in starts:
        return []
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append((current, starts[current]))
        todo.extend(children.get(current, []))
    return found


def survivors(procs: list[ProcId]) -> list[ProcId]:
    """Return those of procs that are still alive (same pid, same start time)."""
    return [p for p in procs if proc_id(p[0]) == p]


def wait_gone(procs: list[ProcId], timeout: float) -> list[ProcId]:
    """Wait until procs are gone; return the ones still alive after timeout."""
    deadline = time.monotonic() + timeout
    while (left := survivors(procs)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def kill_all(procs: list[ProcId]) -> None:
    """SIGKILL whatever of procs is still alive: the last resort of a failed stop."""
    for pid, _ in survivors(procs):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def finished_pid() -> int:
    """Return the pid of a process that ran and was reaped: a pid no process has (for now)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
