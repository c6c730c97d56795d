"""Run the real mailflow command as a subprocess; time it and read its peak RSS."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.bed import REPO

PYTHON = REPO / ".venv" / "bin" / "python"
# mailflow's own entry point (what .venv/bin/mailflow runs) plus an exit hook that writes the
# process's peak RSS (VmHWM) to $BENCH_HWM. Not wait4's ru_maxrss: Linux counts in it the
# memory of the parent the child was forked from, i.e. the benchmark's own.
_LAUNCH = """
import atexit, os
def _hwm():
    path = os.environ.get("BENCH_HWM")
    if path:
        with open("/proc/self/status") as status, open(path, "w") as out:
            out.write(next(line for line in status if line.startswith("VmHWM:")))
atexit.register(_hwm)
from mailflow.cli import main
main()
"""
_SUMMARY = re.compile(
    r"(\d+) correos? leídos?.*salida: enviados (\d+), diferidos (\d+), fallidos (\d+)"
)


class DaemonError(RuntimeError):
    """mailflow exited badly or did not do what the benchmark expected."""


@dataclass(frozen=True)
class Exited:
    """How a mailflow process ended: status, wall time, peak RSS, output."""

    status: int
    seconds: float
    peak_rss_mb: float
    output: str

    def pass_counts(self) -> tuple[int, int]:
        """Return (messages handled, mails sent) from `run --once`'s summary line."""
        found = _SUMMARY.search(self.output)
        if found is None:
            raise DaemonError(f"no summary in the output of run --once:\n{self.output[-3000:]}")
        return int(found.group(1)), int(found.group(2))


def command(config: Path, *args: str) -> list[str]:
    """Return the argv of `mailflow --config CONFIG ARGS…` (with the peak-RSS hook)."""
    return [str(PYTHON), "-c", _LAUNCH, "--config", str(config), *args]


def _env(hwm: Path) -> dict[str, str]:
    hwm.unlink(missing_ok=True)
    return {**os.environ, "BENCH_HWM": str(hwm)}


def _peak_mb(hwm: Path) -> float:
    """Return the VmHWM the process wrote at exit, in MB (0 if it wrote none)."""
    try:
        return int(hwm.read_text().split()[1]) / 1024  # "VmHWM:  123456 kB"
    except (FileNotFoundError, IndexError, ValueError):
        return 0.0


def _wait(process: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def run(config: Path, log: Path, *args: str, timeout: float = 3600.0) -> Exited:
    """Run one mailflow command to its end; raise DaemonError if it fails."""
    hwm = log.with_suffix(".hwm")
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            command(config, *args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(hwm),
        )
    status = _wait(process, timeout)
    seconds = time.perf_counter() - started
    output = log.read_text(errors="replace")
    if status != 0:
        raise DaemonError(f"`mailflow {' '.join(args)}` exited {status}:\n{output[-3000:]}")
    return Exited(status, seconds, _peak_mb(hwm), output)


class Daemon:
    """`mailflow run` (IMAP IDLE) in the background, started and stopped by the benchmark."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self._hwm = log.with_suffix(".hwm")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the daemon and wait until it has caught up and waits in IDLE."""
        with self.log.open("wb") as out:
            self._process = subprocess.Popen(
                command(self.config, "run"),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=_env(self._hwm),
            )
        deadline = time.monotonic() + timeout
        while "watching" not in self.log.read_text(errors="replace"):
            self.check_alive()
            if time.monotonic() > deadline:
                raise DaemonError(f"the daemon did not start within {timeout:.0f} s")
            time.sleep(0.05)
        time.sleep(1.0)  # the first catch-up of an empty mailbox, then IDLE

    def check_alive(self) -> None:
        """Raise DaemonError if the daemon has exited."""
        if self._process is not None and self._process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise DaemonError(f"the daemon exited ({self._process.returncode}):\n{tail}")

    def stop(self) -> float:
        """SIGTERM the daemon, wait, and return its peak RSS in MB."""
        process, self._process = self._process, None
        if process is None:
            return 0.0
        process.send_signal(signal.SIGTERM)
        status = _wait(process, 30.0)
        if status != 0:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise DaemonError(f"the daemon exited {status} on SIGTERM:\n{tail}")
        return _peak_mb(self._hwm)
