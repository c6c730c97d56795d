"""Test the parts of the store that need no database: URLs and the UTC timestamp type."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Dialect
from sqlalchemy.dialects import postgresql, sqlite

from mailflow.store.repository import head_revision, store_url
from mailflow.store.schema import UTCDateTime


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u:p%40ss@db.example.org/mailflow", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db.example.org/mailflow", "postgresql+psycopg"),
        ("sqlite:///store/mailflow.db", "sqlite"),
    ],
)
def test_store_urls_use_the_installed_drivers(given: str, driver: str) -> None:
    assert store_url(given).drivername == driver


def test_a_password_with_percent_escapes_survives() -> None:
    assert store_url("postgresql://u:p%40ss@db.example.org/m").password == "p@ss"


def test_other_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported store 'mysql'"):
        store_url("mysql://u@db.example.org/mailflow")


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "pg"])
def test_timestamps_are_stored_in_utc(dialect: Dialect) -> None:
    local = dt.datetime(2026, 12, 1, 9, 30, tzinfo=ZoneInfo("America/La_Paz"))

    stored = UTCDateTime().process_bind_param(local, dialect)

    assert stored == local
    assert stored is not None
    assert stored.tzinfo == dt.UTC


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        UTCDateTime().process_bind_param(dt.datetime(2026, 12, 1), sqlite.dialect())


def test_timestamps_read_back_naive_are_taken_as_utc() -> None:
    loaded = UTCDateTime().process_result_value(dt.datetime(2026, 12, 1, 13), sqlite.dialect())

    assert loaded == dt.datetime(2026, 12, 1, 13, tzinfo=dt.UTC)


def test_the_shipped_migrations_have_one_head() -> None:
    assert head_revision() == "0008"
