"""Run a throwaway PostgreSQL cluster (initdb + pg_ctl) on 127.0.0.1 for tests.

The cluster lives in a scratch directory owned by the `postgres` OS user when we are root
(the server refuses to run as root), trusts every local TCP connection, and is tuned for
speed over durability (fsync off). ``create_database()`` hands each test a fresh database.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

from . import proc
from .ports import HOST, free_port
from .scratch import remove_scratch, scratch_dir, tail

SUPERUSER = "postgres"
# Unprivileged OS account the server runs as when we are root (created by Debian's package).
OS_USER = "postgres"


class PostgresError(RuntimeError):
    """PostgreSQL failed to start or to stop cleanly; the message carries the log tail."""


def pg_bindir() -> Path:
    """Return the bin directory of the newest PostgreSQL server installed."""
    candidates = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        version = initdb.parent.parent.name
        if version.isdigit():
            candidates.append((int(version), initdb.parent))
    if not candidates:
        raise PostgresError(
            "no /usr/lib/postgresql/*/bin/initdb: run scripts/ensure-test-packages.sh as root"
        )
    return max(candidates)[1]


class Postgres:
    """Own one PostgreSQL cluster: initdb, start, hand out databases, stop, delete."""

    def __init__(self, *, startup_timeout: int = 120) -> None:
        self.host = HOST
        self.port = 0
        self.user = SUPERUSER
        self.startup_timeout = startup_timeout
        self.bindir = pg_bindir()
        self.root = scratch_dir("mailflow-pg-")
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self._as_root = os.geteuid() == 0
        self._started = False
        self._family: list[proc.ProcId] = []
        self._counter = itertools.count(1)

    # -- databases ------------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        """Return the SQLAlchemy URL of dbname (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, hint: str = "test") -> str:
        """Create a new empty database, named after hint, and return its SQLAlchemy URL."""
        slug = re.sub(r"[^a-z0-9]+", "_", hint.lower()).strip("_")[:40] or "test"
        name = f"t{next(self._counter)}_{slug}"
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whatever a test left connected to it."""
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _admin(self, statement: sql.Composed) -> None:
        """Run one statement on the maintenance database, outside a transaction."""
        conninfo = f"host={self.host} port={self.port} user={self.user} dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=30) as conn:
            conn.execute(statement)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Initialise the cluster and start it on a free port, retrying if the port is taken."""
        if self._started:
            raise PostgresError("already started")
        self._run(
            "initdb",
            f"--pgdata={self.data_dir}",
            f"--username={SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            # Durability is pointless for a cluster deleted at the end of the run.
            "--no-sync",
        )
        last_error: PostgresError | None = None
        for _attempt in range(3):
            self.port = free_port()
            try:
                self._pg_ctl_start()
            except PostgresError as error:
                last_error = error
                if "already in use" not in tail(self.log_path):
                    break
                continue
            self._started = True
            return
        assert last_error is not None
        raise last_error

    def _pg_ctl_start(self) -> None:
        """Run `pg_ctl start -w`, which returns once the server accepts connections."""
        options = " ".join(
            [
                f"-p {self.port}",
                f"-c listen_addresses={self.host}",
                f"-c unix_socket_directories={self.root}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        try:
            self._run(
                "pg_ctl",
                "start",
                "--wait",
                f"--timeout={self.startup_timeout}",
                f"--pgdata={self.data_dir}",
                f"--log={self.log_path}",
                f"--options={options}",
            )
        except PostgresError as error:
            # A server half-up after a timeout must not outlive us.
            self._stop_server()
            raise PostgresError(
                f"{error}\n--- {self.log_path} ---\n{tail(self.log_path)}"
            ) from None

    def stop(self) -> None:
        """Stop the server, check none of its processes survive, delete the cluster."""
        try:
            self._stop_server()
        finally:
            remove_scratch(self.root)

    def _stop_server(self) -> None:
        """Run `pg_ctl stop -m fast` and wait for the postmaster and its backends to exit."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        family = proc.family(pid)
        self._started = False
        try:
            self._run("pg_ctl", "stop", "--wait", "--mode=fast", f"--pgdata={self.data_dir}")
        except PostgresError:
            proc.kill_all(family)
            raise
        left = proc.wait_gone(family, timeout=30)
        if left:
            proc.kill_all(left)
            raise PostgresError(f"postgres processes survived pg_ctl stop (killed): {left}")
        self._family = family

    def restart(self) -> None:
        """`pg_ctl stop -m fast`, then start again on the same port and data directory.

        Every client connection is dropped; clients see refused connections meanwhile.
        """
        self._stop_server()
        self._pg_ctl_start()
        self._started = True

    def postmaster_pid(self) -> int | None:
        """Return the pid in postmaster.pid if that process is alive."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        return pid if proc.proc_id(pid) else None

    @property
    def processes(self) -> list[proc.ProcId]:
        """Return the live postmaster and backends (or, once stopped, those it had)."""
        pid = self.postmaster_pid()
        return proc.family(pid) if pid is not None else list(self._family)

    def _run(self, tool: str, *args: str) -> None:
        """Run a PostgreSQL tool, as the postgres OS user when we are root."""
        command = [str(self.bindir / tool), *args]
        if self._as_root:
            # The server refuses to run as root. Everything under root/ is created by the
            # postgres user itself; it only needs to own the directory.
            shutil.chown(self.root, OS_USER, OS_USER)
            command = ["runuser", "-u", OS_USER, "--", *command]
        result = subprocess.run(
            command,
            cwd=self.root,  # the postgres user may not be allowed into our cwd
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=self.startup_timeout + 60,
        )
        if result.returncode != 0:
            raise PostgresError(f"{tool} {args[0]} failed:\n{result.stdout}{result.stderr}")

    def __enter__(self) -> Postgres:
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
