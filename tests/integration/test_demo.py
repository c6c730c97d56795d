"""`make demo` end to end: scripts/demo.py plays its request to `publicado` and exits 0.

The demo starts its own Dovecot, SMTP relay and daemon process, so this test uses no
fixture; it runs the script as `make demo` does and reads what it prints.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.servers

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


def test_demo_plays_a_request_through_nine_stages_to_publicado() -> None:
    process = subprocess.Popen(
        [sys.executable, str(DEMO), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the demo then stops its daemon and servers before exiting.
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        pytest.fail(f"the demo took over 180 s\n{out}\n{err}")
    assert process.returncode == 0, f"{out}\n{err}"
    for stage in range(1, 10):
        assert f"── Etapa {stage} ·" in out, out
    assert "estado: publicado" in out
    assert "daemon detenido con SIGTERM (estado 0)" in out


def test_demo_help_names_its_options() -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO), "--help"], capture_output=True, text=True, check=True
    )
    assert "--keep" in done.stdout
    assert "--quiet" in done.stdout
