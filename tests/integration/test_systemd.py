"""`mailflow run` started the way systemd starts it, against the real test bed.

The test plays systemd: it binds the notify socket (abstract, as systemd's is), sets
NOTIFY_SOCKET, WATCHDOG_USEC and CREDENTIALS_DIRECTORY (the IMAP password is a credential,
not in the config), then reads READY/WATCHDOG/RELOADING/STOPPING datagrams while it mails
the daemon and signals it. The unit file itself is checked by `systemd-analyze verify`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from testbed.site import INFO_REQUEST, START, Scenario, about

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "mailflow.service"
MAILFLOW = Path(sys.executable).parent / "mailflow"
only_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


class FakeSystemd:
    """The notify socket systemd would give, collecting every datagram sent to it."""

    def __init__(self) -> None:
        self.name = f"@mailflow-test-{os.getpid()}-{time.monotonic_ns()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._done = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append(data.decode())

    def fields(self) -> list[str]:
        """Return every KEY=value line received so far, in order."""
        with self._lock:
            return [line for m in self.messages for line in m.splitlines()]

    def wait_for(self, field: str, count: int = 1, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.fields().count(field) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {field!r} x{count} from the daemon: {self.fields()}")
            time.sleep(0.05)

    def close(self) -> None:
        self._done = True
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def fake_systemd() -> Iterator[FakeSystemd]:
    server = FakeSystemd()
    yield server
    server.close()


def _as_a_service(scenario: Scenario, password: str) -> tuple[Path, dict[str, str]]:
    """Rewrite the site's config to read the IMAP password from a systemd credential."""
    site = scenario.site
    credentials = site.root / "credentials"
    credentials.mkdir(exist_ok=True)
    (credentials / "imap").write_text(password + "\n", encoding="utf-8")
    text = site.config_path.read_text(encoding="utf-8").replace(
        f'password = "{site.dovecot.password}"', 'password_credential = "imap"', 1
    )
    assert 'password_credential = "imap"' in text
    site.config_path.write_text(text, encoding="utf-8")
    env = {
        **os.environ,
        "CREDENTIALS_DIRECTORY": str(credentials),
        "WATCHDOG_USEC": "3000000",
        "WATCHDOG_PID": "",  # systemd sets it to the main pid; empty means "yours"
    }
    env.pop("JOURNAL_STREAM", None)
    return site.config_path, env


def _start(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    now = (START + timedelta(hours=1)).isoformat()
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(MAILFLOW), "--config", str(config), "--now", now, "run"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


@only_sqlite
def test_daemon_speaks_sd_notify_reloads_on_sighup_and_stops_on_sigterm(
    scenario: Scenario, fake_systemd: FakeSystemd
) -> None:
    site = scenario.site
    config, env = _as_a_service(scenario, site.dovecot.password)
    env["NOTIFY_SOCKET"] = fake_systemd.name
    log = site.root / "daemon.log"
    daemon = _start(config, env, log)
    try:
        fake_systemd.wait_for("READY=1")
        # READY only after the first IMAP login (with the credential's password).
        ready_at = fake_systemd.fields().index("READY=1")
        assert "selected INBOX" in log.read_text(), log.read_text()
        assert not any(f.startswith("STOPPING") for f in fake_systemd.fields()[:ready_at])

        # The watchdog (3 s) is pinged again and again while the daemon idles in IMAP IDLE.
        fake_systemd.wait_for("WATCHDOG=1", count=6, timeout=15)

        # SIGHUP with a new Dirección Ejecutiva: the next request's stage-2 mail goes to her.
        text = config.read_text(encoding="utf-8")
        old, new = site.addr("directora"), site.addr("nueva.directora")
        config.write_text(text.replace(f'members = ["{old}"]', f'members = ["{new}"]', 1))
        daemon.send_signal(signal.SIGHUP)
        fake_systemd.wait_for("RELOADING=1")
        fake_systemd.wait_for("READY=1", count=2)
        site.send("analista", "Solicitud de publicación: feria", INFO_REQUEST)
        action = site.wait_for("nueva.directora", lambda m: "Acción requerida" in str(m["Subject"]))
        assert site.inbox("directora") == []

        # A broken config on SIGHUP is refused with the reason; the daemon goes on with the
        # configuration it has.
        config.write_text(text + "\n[organization\n", encoding="utf-8")
        daemon.send_signal(signal.SIGHUP)
        fake_systemd.wait_for("RELOADING=1", count=2)
        fake_systemd.wait_for("READY=1", count=3)
        assert daemon.poll() is None
        assert "reload refused" in log.read_text() and "no es TOML válido" in log.read_text()
        code = str(action["Subject"]).split("[")[1].split("]")[0]
        site.reply("nueva.directora", action, "APRUEBO")
        site.wait_for("jefe.ugs", about(code, "Acción requerida"))

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0, log.read_text()
        fake_systemd.wait_for("STOPPING=1")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
    output = log.read_text()
    assert "Traceback" not in output, output
    assert site.dovecot.password not in output
    # A reload logs in again cleanly: not taken for a flapping connection with a back-off.
    assert "lasted only" not in output and "retrying" not in output, output
    assert fake_systemd.fields().count("STOPPING=1") == 1


@only_sqlite
def test_no_ready_while_the_imap_login_fails(scenario: Scenario, fake_systemd: FakeSystemd) -> None:
    site = scenario.site
    config, env = _as_a_service(scenario, "not-the-password")
    env["NOTIFY_SOCKET"] = fake_systemd.name
    log = site.root / "daemon.log"
    daemon = _start(config, env, log)
    try:
        # A refused login is the operator's to fix: the daemon exits non-zero (systemd's
        # Restart=on-failure tries again later) and never says READY.
        status = daemon.wait(60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
    assert status == 1, log.read_text()
    assert "inicio de sesión rechazado" in log.read_text()
    assert "READY=1" not in fake_systemd.fields(), log.read_text()
    assert "not-the-password" not in log.read_text()


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # `make install-service PREFIX=...` installs the unit with /opt/mailflow replaced by
    # the prefix; here the prefix is this source tree, whose .venv/bin/mailflow exists.
    # Installed by scripts/ensure-test-packages.sh (Debian's systemd): never skipped.
    assert shutil.which("systemd-analyze"), "run scripts/ensure-test-packages.sh"
    prefix = Path(sys.executable).parents[2]
    installed = tmp_path / "mailflow.service"
    installed.write_text(UNIT.read_text().replace("/opt/mailflow", str(prefix)))
    result = _verify(installed)
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result

    # The check is real: a unit whose program is missing, or with a bad value, fails it.
    missing = tmp_path / "missing.service"
    missing.write_text(UNIT.read_text().replace("/opt/mailflow", str(tmp_path / "nowhere")))
    assert _verify(missing).returncode != 0
    typo = tmp_path / "typo.service"
    typo.write_text(installed.read_text().replace("WatchdogSec=120s", "WatchdogSec=2 minutes!"))
    assert _verify(typo).stderr != ""


def test_the_unit_is_a_notify_service_with_watchdog_and_hardening() -> None:
    lines = set(UNIT.read_text().splitlines())
    for wanted in (
        "Type=notify",
        "NotifyAccess=main",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "ReadWritePaths=/var/lib/mailflow",
        "EnvironmentFile=-/etc/default/mailflow",
    ):
        assert wanted in lines, wanted
    assert any(line.startswith("WatchdogSec=") for line in lines)
    assert any(line.startswith("LoadCredential=imap:") for line in lines)


# -- the notify protocol itself (no test bed) ---------------------------------------------


def test_without_notify_socket_nothing_is_sent_and_waits_keep_their_length() -> None:
    from mailflow.ops.sd_notify import Notifier

    notifier = Notifier({})
    assert not notifier.enabled
    notifier.ready("x")
    notifier.watchdog()
    notifier.stopping()
    assert notifier.ping_interval(60.0) == 60.0


def test_watchdog_pings_are_paced_and_waits_cut_to_a_third(fake_systemd: FakeSystemd) -> None:
    from mailflow.ops.sd_notify import Notifier

    clock = [100.0]
    env = {"NOTIFY_SOCKET": fake_systemd.name, "WATCHDOG_USEC": "4000000"}
    notifier = Notifier(env, monotonic=lambda: clock[0])
    assert notifier.ping_interval(60.0) == pytest.approx(4 / 3)
    notifier.watchdog()  # sent
    clock[0] += 0.5
    notifier.watchdog()  # too soon: a quarter of the interval has not passed
    clock[0] += 0.6
    notifier.watchdog()  # sent
    notifier.watchdog(force=True)  # sent
    notifier.stopping()
    notifier.stopping()  # once only
    fake_systemd.wait_for("STOPPING=1")
    notifier.close()
    assert fake_systemd.fields() == ["WATCHDOG=1"] * 3 + ["STOPPING=1", "STATUS=stopping"]


def test_a_watchdog_meant_for_another_process_is_ignored() -> None:
    from mailflow.ops.sd_notify import Notifier

    other = str(os.getpid() + 1)
    notifier = Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": other})
    assert notifier.watchdog_seconds is None
    assert notifier.ping_interval(60.0) == 60.0


def test_a_credential_outside_systemd_says_what_to_do(scenario_free_config: Path) -> None:
    from mailflow.config import load_settings
    from mailflow.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_settings(scenario_free_config, {})
    assert "imap.password_credential: necesita $CREDENTIALS_DIRECTORY" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_settings(scenario_free_config, {"CREDENTIALS_DIRECTORY": "/nonexistent"})
    assert (
        "imap.password_credential: /nonexistent/imap no se puede leer (no existe); revise "
        "LoadCredential=imap:" in str(caught.value)
    )


@pytest.fixture
def scenario_free_config(tmp_path: Path) -> Path:
    """The example config with the IMAP password as a systemd credential."""
    text = (ROOT / "config" / "mailflow.toml").read_text(encoding="utf-8")
    text = text.replace(
        'password_env = "MAILFLOW_IMAP_PASSWORD"', 'password_credential = "imap"', 1
    )
    path = tmp_path / "mailflow.toml"
    path.write_text(text, encoding="utf-8")
    return path
