"""Run mailflow's Alembic migrations on SQLite or PostgreSQL.

Alembic loads this file itself; :func:`mailflow.store.repository.alembic_config` supplies the
database URL as ``config.attributes["url"]``. Logging is left as the application set it
up (no ``fileConfig``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import URL, Connection, text

from mailflow.store.repository import make_engine
from mailflow.store.schema import Base

# Any constant shared by every mailflow process will do: this one spells "mailflow".
MIGRATION_LOCK_KEY = int.from_bytes(b"mailflow", "big")


def _url() -> str | URL:
    """Return the database URL given in code, or as ``sqlalchemy.url`` by other callers."""
    url: str | URL | None = context.config.attributes.get("url")
    url = url or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: use mailflow.store.repository.upgrade(url)")
    return url


def _set_sqlite_foreign_keys(connection: Connection, enabled: bool) -> None:
    """Switch SQLite foreign-key enforcement, which only works outside a transaction."""
    # Batch migrations copy a table, drop the original and rename the copy; with
    # enforcement on, dropping a referenced table fails (SQLite's ALTER TABLE recipe).
    driver_connection = connection.connection.driver_connection
    assert driver_connection is not None
    driver_connection.execute(f"PRAGMA foreign_keys = {'ON' if enabled else 'OFF'}")


def _migrate(connection: Connection) -> None:
    """Apply the pending migrations in one transaction, holding the migration lock."""
    is_sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: Alembic rebuilds the table instead.
        render_as_batch=is_sqlite,
        # The engine emits BEGIN itself on SQLite, so DDL is transactional there too.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Released at commit; a concurrent upgrade waits, then finds nothing to do.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        context.run_migrations()
        if is_sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"migration left rows violating foreign keys: {broken}")


def run_migrations_online() -> None:
    """Migrate the database through a connection of its own."""
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                _set_sqlite_foreign_keys(connection, enabled=False)
            try:
                _migrate(connection)
            finally:
                if connection.dialect.name == "sqlite":
                    _set_sqlite_foreign_keys(connection, enabled=True)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    """Print the migration SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
