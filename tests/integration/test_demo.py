"""`make demo` end to end: scripts/demo.py plays its request to `publicado` and exits 0.

The demo starts its own Dovecot, SMTP relay and daemon process, so this test uses no
fixture; it runs the script as `make demo` does and reads what it prints.
"""

from __future__ import annotations

import importlib.util
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
    assert "Estado: publicada" in out
    assert "daemon detenido con SIGTERM (estado 0)" in out


def test_demo_help_names_its_options() -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO), "--help"], capture_output=True, text=True, check=True
    )
    assert "--keep" in done.stdout
    assert "--quiet" in done.stdout


def test_keep_says_what_was_kept_and_what_to_do_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("demo", DEMO)
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "demo", demo)  # its dataclasses look themselves up there
    spec.loader.exec_module(demo)
    hint = demo.kept_hint(tmp_path, None, "RRSS-2026-0001")
    mailflow = Path(sys.executable).parent / "mailflow"
    assert f"configuración     {tmp_path / 'mailflow.toml'}" in hint
    assert f"log del daemon    {tmp_path / 'daemon.log'}" in hint
    assert f"{mailflow} --config {tmp_path / 'mailflow.toml'} requests show RRSS-2026-0001" in hint
    assert f"evidence RRSS-2026-0001 --out {tmp_path / 'evidencia.zip'}" in hint
    assert f"Para borrarlos: rm -rf {tmp_path}" in hint
