"""Run a throwaway Dovecot (IMAP with IDLE, LMTP over TCP) on 127.0.0.1 for tests.

Who can log in and receive mail: every address in a registered domain. The passdb is a
passwd-file per domain (``domains/<domain>``), looked up by domain (``username_format=%Ld``),
so ``anyone@example.org`` logs in with the shared password (``Dovecot.password``, "secret" by
default) and LMTP accepts mail for any local part there, with no per-user setup. Addresses in
other domains are unknown users (no such file): LMTP answers 550 for them, as a real server
would. ``add_domain()`` registers another domain while Dovecot runs, which gives each test
empty mailboxes of its own. One file per domain, not one file for all, because Dovecot checks
a passwd-file for changes at most once a second: a new file is seen at once.

Everything (config, base_dir, state, logs, maildirs) lives in one scratch directory; nothing
touches /etc/dovecot or /var/run/dovecot, and a system Dovecot, if any, is irrelevant.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from . import proc
from .ports import HOST, free_ports, wait_for_port
from .scratch import remove_scratch, scratch_dir, tail

DEFAULT_DOMAINS = ("example.org", "example.com")
DEFAULT_PASSWORD = "secret"


@dataclass(frozen=True)
class TlsFiles:
    """PEM certificate chain and key for Dovecot's IMAPS listener and STARTTLS."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ImapAccount:
    """Where and as whom to log in over IMAP."""

    host: str
    port: int
    username: str
    password: str


class DovecotError(RuntimeError):
    """Dovecot failed to start or to stop cleanly; the message carries the log tail."""


def _binary(name: str) -> str:
    """Return the path of a Dovecot binary, or fail with how to install it."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise DovecotError(f"`{name}` not found: run scripts/ensure-test-packages.sh as root")
    return found


def _users() -> tuple[str, str, str]:
    """Return (mail user, login user, internal user) for this run.

    As root, use the accounts the Debian package creates. Otherwise Dovecot cannot switch
    users, so everything runs as us (unprivileged mode, less tested).
    """
    if os.geteuid() == 0:
        return "dovecot", "dovenull", "dovecot"
    me = pwd.getpwuid(os.geteuid()).pw_name
    return me, me, me


class Dovecot:
    """Own one Dovecot instance: generate its config, start it, stop it, leave nothing behind."""

    def __init__(
        self,
        *,
        domains: tuple[str, ...] = DEFAULT_DOMAINS,
        password: str = DEFAULT_PASSWORD,
        tls: TlsFiles | None = None,
        oauth2_tokeninfo_url: str | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.host = HOST
        self.password = password
        self.tls = tls
        self.oauth2_tokeninfo_url = oauth2_tokeninfo_url
        self.startup_timeout = startup_timeout
        self.root = scratch_dir("mailflow-dovecot-")
        self.conf_path = self.root / "dovecot.conf"
        self.domains_dir = self.root / "domains"
        self.domains_dir.mkdir(mode=0o755)
        self.log_path = self.root / "dovecot.log"
        self.stderr_path = self.root / "dovecot.stderr"
        self.mail_root = self.root / "mail"
        self.imap_port = 0
        self.imaps_port: int | None = None
        self.lmtp_port = 0
        self._domains: list[str] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._family: list[proc.ProcId] = []
        for domain in domains:
            self.add_domain(domain)

    # -- accounts -------------------------------------------------------------------------

    @property
    def domains(self) -> tuple[str, ...]:
        """Return the domains whose every address can log in and receive mail."""
        return tuple(self._domains)

    def add_domain(self, domain: str) -> None:
        """Let every address in domain log in (with the shared password) and receive mail."""
        domain = domain.lower()
        if domain in self._domains:
            return
        if "/" in domain or domain.startswith("."):
            raise ValueError(f"not a domain: {domain!r}")
        self._domains.append(domain)
        # Write and rename, so that Dovecot never reads a half-written file.
        tmp = self.domains_dir / f".{domain}.tmp"
        tmp.write_text(f"{domain}:{{PLAIN}}{self.password}\n")
        tmp.chmod(0o644)
        tmp.replace(self.domains_dir / domain)

    def account(self, address: str) -> ImapAccount:
        """Return the IMAP login for address (which must be in a registered domain)."""
        domain = address.rpartition("@")[2].lower()
        if domain not in self._domains:
            raise ValueError(f"{address}: domain not registered with this Dovecot")
        return ImapAccount(self.host, self.imap_port, address, self.password)

    def maildir(self, address: str) -> Path:
        """Return the Maildir of address on disk (for post-mortems, not for assertions)."""
        local, _, domain = address.lower().rpartition("@")
        return self.mail_root / domain / local / "Maildir"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start Dovecot on free ports and wait until IMAP and LMTP accept connections.

        A free port may be taken by someone else between asking and binding: then try again
        with fresh ports, a few times.
        """
        if self._process is not None:
            raise DovecotError("already started")
        mail_user, _, _ = _users()
        self.mail_root.mkdir(exist_ok=True)
        shutil.chown(self.mail_root, mail_user, mail_user)
        last_error: Exception | None = None
        for _attempt in range(3):
            self.imap_port, self.lmtp_port, imaps_port = free_ports(3)
            self.imaps_port = imaps_port if self.tls else None
            self.conf_path.write_text(self._config())
            try:
                self._launch()
                return
            except DovecotError as error:
                last_error = error
                if "Address already in use" not in str(error):
                    break
        assert last_error is not None
        raise last_error

    def _launch(self) -> None:
        """Run `dovecot -F` once and wait for its listeners; raise with the log tail."""
        for path in (self.log_path, self.stderr_path):
            path.unlink(missing_ok=True)
        dovecot = _binary("dovecot")
        # `-n` parses and validates the config without starting: clearer errors than a
        # master that exits at once.
        check = subprocess.run(
            [dovecot, "-n", "-c", str(self.conf_path)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise DovecotError(f"invalid {self.conf_path}:\n{check.stderr}")
        with self.stderr_path.open("wb") as stderr:
            self._process = subprocess.Popen(
                [dovecot, "-F", "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=subprocess.STDOUT,
            )
        process = self._process
        try:
            # IMAP and LMTP greet with "Dovecot ... ready."; IMAPS first wants a TLS handshake.
            listeners = [(self.imap_port, "IMAP", b"Dovecot"), (self.lmtp_port, "LMTP", b"Dovecot")]
            if self.imaps_port:
                listeners.append((self.imaps_port, "IMAPS", b""))
            for port, what, banner in listeners:
                wait_for_port(
                    self.host,
                    port,
                    self.startup_timeout,
                    alive=lambda: process.poll() is None,
                    what=f"dovecot {what}",
                    banner=banner,
                )
        except (RuntimeError, TimeoutError) as error:
            self._terminate()
            raise DovecotError(f"{error}\n{self.log_tail()}") from None

    def stop(self) -> None:
        """Stop Dovecot and check that none of its processes survive; then delete its files."""
        try:
            self._terminate()
        finally:
            remove_scratch(self.root)

    def _terminate(self) -> None:
        """SIGTERM the master, wait for it and its children; SIGKILL and raise if they linger."""
        process, self._process = self._process, None
        if process is None:
            return
        # Snapshot the children now: once the master is gone they are no longer its children.
        family = proc.family(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        left = proc.wait_gone(family, timeout=15)
        if left:
            proc.kill_all(left)
            raise DovecotError(f"dovecot processes survived SIGTERM (killed): {left}")
        self._family = family

    def restart(self, grace: float = 2.0) -> None:
        """Stop every Dovecot process and start it again on the same ports and mailboxes.

        As `systemctl restart` does: SIGTERM, then SIGKILL for whatever is left after
        ``grace`` seconds (an imap process still flushing a large FETCH to a slow client).
        Clients see their connections drop, then a refused port, then a fresh server.
        """
        process, self._process = self._process, None
        if process is not None:
            family = proc.family(process.pid)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            proc.kill_all(proc.wait_gone(family, timeout=grace))
            process.wait(timeout=30)
            if left := proc.wait_gone(family, timeout=15):
                raise DovecotError(f"dovecot processes survived SIGKILL: {left}")
        self._launch()

    @property
    def running(self) -> bool:
        """Tell whether the master process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def processes(self) -> list[proc.ProcId]:
        """Return the live master and its children (or, once stopped, those it had)."""
        if self._process is not None:
            return proc.family(self._process.pid)
        return list(self._family)

    def log_tail(self, lines: int = 40) -> str:
        """Return the end of Dovecot's log and of its stderr, for error messages."""
        return (
            f"--- {self.log_path} ---\n{tail(self.log_path, lines)}\n"
            f"--- {self.stderr_path} ---\n{tail(self.stderr_path, lines)}"
        )

    def __enter__(self) -> Dovecot:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- configuration --------------------------------------------------------------------

    def _config(self) -> str:
        """Render dovecot.conf for the current ports, paths and TLS choice."""
        mail_user, login_user, internal_user = _users()
        root = self.root
        return "\n".join(
            [
                f"# Generated by tests/testbed/dovecot.py at {time.strftime('%F %T')}",
                f"base_dir = {root}/run",
                f"state_dir = {root}/state",
                f"log_path = {self.log_path}",
                f"info_log_path = {self.log_path}",
                f"debug_log_path = {self.log_path}",
                "protocols = imap lmtp",
                f"listen = {self.host}",
                # Tests log in with PLAIN over plain TCP on 127.0.0.1.
                "disable_plaintext_auth = no",
                f"auth_mechanisms = plain login{' xoauth2 oauthbearer' if self._oauth2 else ''}",
                "auth_verbose = yes",
                # Tests that try a wrong password must not slow down the tests after them:
                # no delay on failure (and no auth penalty, see _service_config).
                "auth_failure_delay = 0",
                f"default_login_user = {login_user}",
                f"default_internal_user = {internal_user}",
                f"default_internal_group = {internal_user}",
                f"mail_uid = {mail_user}",
                f"mail_gid = {mail_user}",
                # System accounts such as `dovecot` have uids below the default limit of 500.
                "first_valid_uid = 1",
                "first_valid_gid = 1",
                "mail_location = maildir:~/Maildir",
                "namespace inbox {\n  inbox = yes\n}",
                # IDLE learns of new mail through inotify; should that be unavailable, the
                # fallback poll must still be quick enough for tests.
                "mailbox_idle_check_interval = 1 secs",
                "passdb {\n  driver = passwd-file\n  mechanisms = plain login none\n"
                f"  args = scheme=PLAIN username_format=%Ld {self.domains_dir}/%Ld\n}}",
                *self._oauth2_config(),
                # allow_all_users = no (the default): a userdb lookup, as LMTP does for each
                # RCPT, first asks the passdb whether the user exists, i.e. its domain file.
                "userdb {\n  driver = static\n"
                f"  args = uid={mail_user} gid={mail_user} home={self.mail_root}/%Ld/%Ln\n}}",
                *self._ssl_config(),
                *self._service_config(),
                "",
            ]
        )

    @property
    def _oauth2(self) -> bool:
        return self.oauth2_tokeninfo_url is not None

    def _oauth2_config(self) -> list[str]:
        """Return the XOAUTH2/OAUTHBEARER passdb: tokens are checked at the token info URL.

        The token info answer's ``email`` must equal the login name. The user must still be
        in a registered domain (the userdb finds its home there).
        """
        if not self._oauth2:
            return []
        args = self.root / "dovecot-oauth2.conf.ext"
        args.write_text(
            f"tokeninfo_url = {self.oauth2_tokeninfo_url}\n"
            f"introspection_url = {self.oauth2_tokeninfo_url}\n"
            "introspection_mode = get\n"
            "username_attribute = email\n"
        )
        args.chmod(0o644)
        mechanisms = "xoauth2 oauthbearer"
        return [f"passdb {{\n  driver = oauth2\n  mechanisms = {mechanisms}\n  args = {args}\n}}"]

    def _ssl_config(self) -> list[str]:
        """Return the TLS settings: off, or the given certificate (IMAPS and STARTTLS)."""
        if self.tls is None:
            return ["ssl = no"]
        return ["ssl = yes", f"ssl_cert = <{self.tls.cert}", f"ssl_key = <{self.tls.key}"]

    def _service_config(self) -> list[str]:
        """Return the listeners: IMAP (and IMAPS with TLS) and LMTP, all on our free ports."""
        imaps = f"  inet_listener imaps {{\n    port = {self.imaps_port or 0}\n  }}\n"
        return [
            "service imap-login {\n"
            f"  inet_listener imap {{\n    port = {self.imap_port}\n  }}\n{imaps}}}",
            # Only our TCP listener: the default unix socket would sit in base_dir anyway.
            "service lmtp {\n"
            f"  inet_listener lmtp {{\n    address = {self.host}\n    port = {self.lmtp_port}\n"
            "  }\n}",
            # Without this socket auth cannot reach anvil and skips its "auth penalty", which
            # delays every login from an IP (up to 15 s) after a failed one: fine for a real
            # server, but it would make a test that tries a wrong password slow down the next.
            "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}",
            # No POP3, no doveadm/submission listeners on TCP: nothing else to collide with.
        ]
