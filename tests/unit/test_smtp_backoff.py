"""The outbox's retry policy (schedule, temporary or permanent), and the pure parts of the
SMTP adapter's types."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailflow.app.outbox import GIVE_UP_AFTER, Verdict, next_attempt_delay, retry_at
from mailflow.transport.smtp import Outgoing, Reply, SendResult, wire_size

FIRST = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)


def test_delay_doubles_from_one_minute_up_to_one_hour() -> None:
    minutes = [next_attempt_delay(n) / timedelta(minutes=1) for n in range(1, 10)]
    assert minutes == [1, 2, 4, 8, 16, 32, 60, 60, 60]


@given(st.integers(min_value=1, max_value=10**9))
def test_delay_is_never_shorter_than_before_nor_over_the_cap(attempts: int) -> None:
    delay = next_attempt_delay(attempts)
    assert timedelta(minutes=1) <= delay <= timedelta(hours=1)
    assert next_attempt_delay(attempts + 1) >= delay


@pytest.mark.parametrize("attempts", [0, -1])
def test_attempts_count_from_one(attempts: int) -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        next_attempt_delay(attempts)


def test_retry_at_adds_the_delay_to_now() -> None:
    now = FIRST + timedelta(minutes=3)
    assert retry_at(3, FIRST, now) == now + timedelta(minutes=4)


def test_gives_up_48_hours_after_the_first_failure_however_few_the_attempts() -> None:
    assert timedelta(hours=48) == GIVE_UP_AFTER
    assert retry_at(40, FIRST, FIRST + GIVE_UP_AFTER - timedelta(seconds=1)) is not None
    assert retry_at(40, FIRST, FIRST + GIVE_UP_AFTER) is None
    # A daemon stopped for two days gives up at once on its return: no fresh 48 hours.
    assert retry_at(1, FIRST, FIRST + timedelta(days=3)) is None


def test_give_up_limit_can_be_set() -> None:
    assert retry_at(1, FIRST, FIRST + timedelta(hours=2), give_up_after=timedelta(hours=1)) is None


def test_a_schedule_from_first_failure_to_giving_up() -> None:
    now, attempts = FIRST, 1
    while (then := retry_at(attempts, FIRST, now)) is not None:
        now, attempts = then, attempts + 1
    # Tries at 0, 1, 3, 7, 15, 31, 63 minutes, then hourly: 54 in all, the last one (set
    # before the limit) within the hour after it.
    assert attempts == 54
    assert FIRST + GIVE_UP_AFTER <= now < FIRST + GIVE_UP_AFTER + timedelta(hours=1)


def test_result_is_done_when_nothing_is_temporary() -> None:
    later, never = Reply(451, "451 4.3.0 later"), Reply(550, "550 no")
    partial = Verdict.of(SendResult(7, ("a@x.bo",), {"b@x.bo": later, "c@x.bo": never}))
    assert not partial.done
    assert partial.retry_recipients == ("b@x.bo",)
    finished = Verdict.of(SendResult(7, ("a@x.bo",), {"c@x.bo": never}))
    assert finished.done and finished.retry_recipients == ()


@pytest.mark.parametrize(
    ("code", "temporary"), [(421, True), (451, True), (-1, True), (550, False), (554, False)]
)
def test_a_5xx_is_permanent_anything_else_temporary(code: int, temporary: bool) -> None:
    verdict = Verdict.of(SendResult(1, (), {"a@x.bo": Reply(code, f"{code} x")}))
    assert (verdict.temporary, verdict.permanent) == (
        ({"a@x.bo": f"{code} x"}, {}) if temporary else ({}, {"a@x.bo": f"{code} x"})
    )


def test_outgoing_needs_a_recipient() -> None:
    with pytest.raises(ValueError, match="no recipients"):
        Outgoing(1, "rrss@x.bo", (), b"Subject: x\r\n\r\nx\r\n")


@pytest.mark.parametrize(
    "raw",
    [b"", b"a\r\nb\r\n", b"a\nb\n", b"a\rb", b"\r\r\n\n\r", b"x\n\r\n\r\ry"]
    + [bytes(random.Random(i).choices(b"ab\r\n", k=40)) for i in range(200)],
)
def test_wire_size_counts_line_ends_as_crlf(raw: bytes) -> None:
    assert wire_size(raw) == len(re.sub(rb"\r\n|\n|\r(?!\n)", b"\r\n", raw))
