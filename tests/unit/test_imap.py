"""The IMAP adapter's pure parts: backoff, reconnect policy, response helpers."""

from __future__ import annotations

import pytest

from mailflow.transport.imap import (
    ImapAuthError,
    ImapSource,
    ImapUnavailableError,
    Reconnector,
    _announces_mail,
    _uid_set,
    backoff_delay,
)


@pytest.mark.parametrize(
    ("failures", "low", "high"),
    [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (7, 30.0, 60.0), (50, 30.0, 60.0)],
)
def test_backoff_doubles_up_to_the_cap_with_half_of_it_jittered(
    failures: int, low: float, high: float
) -> None:
    assert backoff_delay(failures, base=1, cap=60, rand=lambda: 0.0) == low
    assert backoff_delay(failures, base=1, cap=60, rand=lambda: 1.0) == high


class FakeSource:
    """Stand in for ImapSource: fail with the given errors, then connect."""

    where = "rrss@example.org@imap.example.org:993"

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.attempts = 0

    def connect(self) -> None:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)


class Clock:
    """A monotonic clock that only moves when sleep() is called or a test advances it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def reconnector(
    source: FakeSource, clock: Clock, *, max_attempts: int | None = None, stable_after: float = 60
) -> Reconnector:
    fake: ImapSource = source  # type: ignore[assignment]
    return Reconnector(
        fake,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        rand=lambda: 1.0,
        max_attempts=max_attempts,
        stable_after=stable_after,
    )


def unavailable() -> ImapUnavailableError:
    return ImapUnavailableError("IMAP rrss@example.org@imap.example.org:993: connect failed")


def test_reconnector_retries_unavailable_with_growing_pauses() -> None:
    clock = Clock()
    source = FakeSource(unavailable(), unavailable(), unavailable())

    reconnector(source, clock).connect()

    assert source.attempts == 4
    assert clock.pauses == [1.0, 2.0, 4.0]


def test_reconnector_gives_up_after_max_attempts() -> None:
    clock = Clock()
    source = FakeSource(*(unavailable() for _ in range(5)))

    with pytest.raises(ImapUnavailableError):
        reconnector(source, clock, max_attempts=3).connect()
    assert source.attempts == 3


def test_reconnector_never_retries_a_refused_login() -> None:
    clock = Clock()
    source = FakeSource(ImapAuthError("login refused"))

    with pytest.raises(ImapAuthError):
        reconnector(source, clock).connect()
    assert clock.pauses == []


def test_reconnector_stops_when_sleep_says_shutdown() -> None:
    source = FakeSource(unavailable(), unavailable())
    pauses: list[float] = []

    def shutdown_requested(seconds: float) -> bool:
        pauses.append(seconds)
        return True  # as threading.Event.wait does once the event is set

    fake: ImapSource = source  # type: ignore[assignment]
    with pytest.raises(ImapUnavailableError):
        Reconnector(fake, sleep=shutdown_requested, rand=lambda: 1.0).connect()
    assert source.attempts == 1
    assert len(pauses) == 1


def test_reconnector_keeps_backing_off_when_connections_die_young() -> None:
    clock = Clock()
    source = FakeSource()
    again = reconnector(source, clock, stable_after=60)

    again.connect()  # first connection: no pause
    clock.now += 5  # dropped after 5 s
    again.connect()
    clock.now += 5
    again.connect()
    clock.now += 600  # this one was stable
    again.connect()

    assert clock.pauses == [1.0, 2.0]
    assert source.attempts == 4


def test_announces_mail_only_for_exists_and_recent() -> None:
    assert _announces_mail([(b"OK", b"Still here"), (4, b"EXISTS")])
    assert _announces_mail([(4, b"RECENT")])
    assert not _announces_mail([(3, b"EXPUNGE"), (2, b"FETCH", (b"FLAGS", (b"\\Seen",)))])
    assert not _announces_mail([(b"OK", b"Still here")])


def test_uid_set_expands_ranges_in_either_order() -> None:
    assert _uid_set(b"3:5,9,12:11") == {3, 4, 5, 9, 11, 12}
