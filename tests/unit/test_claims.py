"""Telling whether a holder's process still runs: pid, start time and machine (Linux /proc)."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from testbed.proc import finished_pid, proc_id

from mailflow.store.claims import Process

HERE = Process.this()


def test_this_process_runs_and_knows_its_start() -> None:
    assert HERE.pid == os.getpid()
    assert HERE.start is not None
    assert proc_id(os.getpid()) == (os.getpid(), int(HERE.start))
    assert HERE.running(HERE) is True
    assert Process.this().machine == HERE.machine  # every process here agrees on it


def test_a_pid_no_process_has_is_not_running() -> None:
    assert replace(HERE, pid=finished_pid(), start="0").running(HERE) is False


def test_a_reused_pid_is_not_the_process_that_had_it() -> None:
    assert HERE.start is not None
    assert replace(HERE, start=str(int(HERE.start) - 1)).running(HERE) is False


def test_a_dead_child_not_yet_reaped_is_not_running() -> None:
    child = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while proc_id(child.pid) is not None:  # None once it is a zombie
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert Path(f"/proc/{child.pid}").exists()  # still there, unreaped
        assert replace(HERE, pid=child.pid, start=None).running(HERE) is False
    finally:
        child.wait()


def test_a_process_elsewhere_cannot_be_judged_from_here() -> None:
    elsewhere = replace(HERE, host="otro", machine="otro 0 0 pid:[1]", pid=finished_pid())
    assert elsewhere.running(HERE) is None


def test_an_odd_program_name_does_not_confuse_the_start_time(tmp_path: Path) -> None:
    odd = tmp_path / "a) b (c"  # proc(5): the name may hold spaces and parentheses
    odd.symlink_to("/bin/sleep")
    child = subprocess.Popen([str(odd), "30"])
    try:
        deadline = time.monotonic() + 10
        while (seen := proc_id(child.pid)) is None or "(c" not in _comm(child.pid):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        running = replace(HERE, pid=child.pid, start=str(seen[1]))
        assert running.running(HERE) is True
        assert replace(running, start=str(seen[1] + 1)).running(HERE) is False
    finally:
        child.kill()
        child.wait()


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text()
