"""`mailflow db backup`: a consistent SQLite copy taken while another process writes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from testbed.site import Scenario

from mailflow.store.backup import BackupError, backup

only_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
WRITER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, a TEXT, b TEXT)")
print("ready", flush=True)
for i in range(int(sys.argv[2])):
    with db:  # a and b are written together or not at all
        db.execute("INSERT INTO filler (a, b) VALUES (?, ?)", (str(i) * 50, str(i) * 50))
"""


@only_sqlite
def test_backup_taken_while_another_process_writes_is_a_valid_consistent_db(
    scenario: Scenario, tmp_path: Path
) -> None:
    url = scenario.runtime.settings.store.url
    database = url.removeprefix("sqlite:///")
    total = 5000
    outs = [tmp_path / f"backup-{n}.db" for n in range(3)]
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, database, str(total)], stdout=subprocess.PIPE, text=True
    ) as writer:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        try:
            for out in outs:  # while the writer commits, thousands of times
                line = backup(url, out)
                assert str(out) in line
        finally:
            assert writer.wait(120) == 0
    counts = []
    for out in outs:
        copy = sqlite3.connect(out)
        try:
            assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            # The schema came along (alembic's revision too) and no row is half-written.
            assert copy.execute("SELECT version_num FROM alembic_version").fetchone()
            assert copy.execute("SELECT count(*) FROM filler WHERE a != b").fetchone() == (0,)
            counts.append(copy.execute("SELECT count(*) FROM filler").fetchone()[0])
        finally:
            copy.close()
    assert counts == sorted(counts)
    assert counts[0] < total  # taken while the writer was at work
    assert not list(tmp_path.glob("*.partial"))


@only_sqlite
def test_backup_by_the_command_line_never_overwrites(scenario: Scenario, tmp_path: Path) -> None:
    out = tmp_path / "copy.db"
    result = scenario.cli("db", "backup", "--out", str(out), timeout=60)
    assert result.returncode == 0, result.stderr
    assert out.is_file()
    with sqlite3.connect(out) as copy:
        assert copy.execute("SELECT count(*) FROM daemon_status").fetchone() == (0,)
    again = scenario.cli("db", "backup", "--out", str(out), timeout=60)
    assert again.returncode == 1
    assert "ya existe" in again.stderr


def test_a_missing_sqlite_store_is_not_created_by_a_backup(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no existe"):
        backup(f"sqlite:///{tmp_path / 'none.db'}", tmp_path / "out.db")
    assert not (tmp_path / "none.db").exists()
    assert not (tmp_path / "out.db").exists()


def test_postgresql_backup_says_how_or_runs_pg_dump(tmp_path: Path) -> None:
    # An unreachable server: either pg_dump is on PATH and fails, saying so, or the
    # message names pg_dump and the URL to give it (never the password).
    url = "postgresql+psycopg://mf:s3cret@127.0.0.1:1/mf"
    with pytest.raises(BackupError) as caught:
        backup(url, tmp_path / "mf.dump")
    message = str(caught.value)
    assert "pg_dump" in message
    assert "s3cret" not in message


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_backup_with_pg_dump(scenario: Scenario, tmp_path: Path) -> None:
    import shutil

    # Debian's postgresql (scripts/ensure-test-packages.sh) brings it: never skipped.
    assert shutil.which("pg_dump"), "run scripts/ensure-test-packages.sh"
    out = tmp_path / "mf.dump"
    line = backup(scenario.runtime.settings.store.url, out)
    assert "pg_restore" in line
    assert out.read_bytes().startswith(b"PGDMP")
