"""Claims and their holders on real SQLite and PostgreSQL: who is gone, what is released.

Every test runs once per database. A holder "here" is this test process; a holder whose
process is gone is described by a pid no process has; one on another machine by a machine
key that is not ours, so only its heartbeat (moved back by hand) can tell.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from testbed.proc import finished_pid, proc_id
from testbed.site import INFO_REQUEST, Scenario
from testbed.smtp import SmtpRelay

from mailflow.daemon import catchup
from mailflow.store.claims import (
    GONE_AFTER,
    STOP_SENDING_AFTER,
    Holder,
    Process,
    holders,
    release,
    store_time,
)
from mailflow.store.repository import Store
from mailflow.store.schema import DaemonRow, OutboxRow, OutboxStatus

HERE = Process.this()


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _gone_process() -> Process:
    return replace(HERE, pid=finished_pid(), start="0")


def _elsewhere() -> Process:
    return replace(HERE, host="otro-servidor", machine="otro-servidor 0 0 pid:[1]")


def _claim(store: Store, holder: Holder, count: int) -> list[int]:
    """Queue ``count`` pending mails claimed by ``holder``; return their ids."""
    with store.transaction() as session:
        claimant = holder.enter(session)
        now = store_time(session)
        rows = [
            OutboxRow(
                message_id=f"<claim-{claimant}-{n}@example.org>",
                kind="prueba",
                recipients=[f"lector{n}@example.org"],
                raw=b"Subject: x\r\n\r\nx\r\n",
                next_attempt_at=now,
                created_at=now,
                claimed_by=claimant,
            )
            for n in range(count)
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def _claims(store: Store) -> dict[int, tuple[str | None, int]]:
    with store.transaction() as session:
        rows = session.scalars(select(OutboxRow))
        return {row.id: (row.claimed_by, row.releases) for row in rows}


def _registered(store: Store) -> set[str]:
    with store.transaction() as session:
        return set(session.scalars(select(DaemonRow.id)))


def _age_heartbeat(store: Store, holder: Holder, seconds: float) -> None:
    with store.transaction() as session:
        session.execute(
            update(DaemonRow)
            .where(DaemonRow.id == holder.id)
            .values(heartbeat_at=store_time(session) - timedelta(seconds=seconds))
        )


def _take_over(store: Store, holder: Holder) -> list[int]:
    with store.transaction() as session:
        holder.enter(session)
        return holder.take_over(session)


def test_a_holder_whose_process_ended_is_released_at_once(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    dead = Holder(store, process=_gone_process())
    ids = _claim(store, dead, 3)
    live = Holder(store)

    with caplog.at_level(logging.WARNING, "mailflow.store.claims"):
        released = _take_over(store, live)

    assert sorted(released) == sorted(ids)
    assert _claims(store) == dict.fromkeys(ids, (None, 1))
    assert _registered(store) == {live.id}  # the gone one is forgotten
    assert f"released 3 mail(s) claimed by daemon {dead.id}" in caplog.text
    assert "su proceso ya no está en marcha" in caplog.text
    assert _take_over(store, live) == []  # nothing is released twice


def test_a_reused_pid_belongs_to_another_process(store: Store) -> None:
    assert HERE.start is not None
    old = Holder(store, process=replace(HERE, start=str(int(HERE.start) - 1)))
    same = Holder(store, process=HERE)  # this very process under a second holder: running
    old_ids, same_ids = _claim(store, old, 2), _claim(store, same, 2)

    assert sorted(_take_over(store, Holder(store))) == sorted(old_ids)
    assert {_claims(store)[i][0] for i in same_ids} == {same.id}


def test_on_another_machine_only_the_heartbeat_tells(store: Store) -> None:
    other = Holder(store, process=replace(_elsewhere(), pid=finished_pid()))
    ids = _claim(store, other, 2)
    live = Holder(store)

    assert _take_over(store, live) == []  # its pid means nothing here
    _age_heartbeat(store, other, GONE_AFTER.total_seconds() - 2)
    assert _take_over(store, live) == []
    _age_heartbeat(store, other, GONE_AFTER.total_seconds() + 1)
    assert sorted(_take_over(store, live)) == sorted(ids)


def test_a_holder_renewed_after_it_was_judged_keeps_its_claims(store: Store) -> None:
    other = Holder(store, process=_elsewhere())
    ids = _claim(store, other, 2)
    _age_heartbeat(store, other, GONE_AFTER.total_seconds() + 5)
    with store.transaction() as session:
        judged = [h for h in holders(session, HERE) if h.gone]
    assert [h.id for h in judged] == [other.id]

    with store.transaction() as session:
        other.enter(session)  # its beat comes in between
    with store.transaction() as session:
        assert release(session, judged) == []

    assert {_claims(store)[i] for i in ids} == {(other.id, 0)}
    assert other.id in _registered(store)


def test_a_holder_taken_for_gone_registers_again_and_stops_sending(store: Store) -> None:
    slow = Holder(store, process=_elsewhere())
    ids = _claim(store, slow, 2)
    first = slow.id
    assert first is not None and slow.holding(first)
    _age_heartbeat(store, slow, GONE_AFTER.total_seconds() + 5)  # as if frozen for 35 s
    assert sorted(_take_over(store, Holder(store))) == sorted(ids)

    with store.transaction() as session:
        again = slow.enter(session)  # it wakes up: its row is gone

    assert again != first
    assert not slow.holding(first)  # what it claimed under the old id is not its own
    assert slow.holding(again)
    assert first not in _registered(store) and again in _registered(store)


def test_a_holder_that_cannot_renew_stops_sending_before_it_may_be_taken_for_gone(
    store: Store,
) -> None:
    clock = Clock()
    holder = Holder(store, clock=clock)
    with store.transaction() as session:
        claimant = holder.enter(session)
    assert STOP_SENDING_AFTER <= GONE_AFTER / 2

    clock.now += STOP_SENDING_AFTER.total_seconds() - 0.5
    assert holder.holding(claimant)
    clock.now += 1.0
    assert not holder.holding(claimant)
    with store.transaction() as session:
        assert holder.enter(session) == claimant  # renewed: its own again
    assert holder.holding(claimant)


def test_a_renewal_that_rolls_back_does_not_count(store: Store) -> None:
    clock = Clock()
    holder = Holder(store, clock=clock)
    with store.transaction() as session:
        claimant = holder.enter(session)
    clock.now += STOP_SENDING_AFTER.total_seconds() + 1
    with pytest.raises(RuntimeError), store.transaction() as session:
        holder.enter(session)
        raise RuntimeError("the transaction failed")
    assert not holder.holding(claimant)


def test_claims_of_a_holder_with_no_row_are_released(store: Store) -> None:
    ghost = Holder(store, process=_elsewhere())
    ids = _claim(store, ghost, 2)
    with store.transaction() as session:
        session.execute(DaemonRow.__table__.delete().where(DaemonRow.id == ghost.id))

    assert sorted(_take_over(store, Holder(store))) == sorted(ids)


def test_a_clean_stop_gives_back_its_claims_and_its_row(store: Store) -> None:
    holder = Holder(store)
    ids = _claim(store, holder, 2)

    holder.leave()

    assert _claims(store) == dict.fromkeys(ids, (None, 0))  # given back, not released
    assert _registered(store) == set()


def test_a_backlog_does_not_hold_up_mail_a_gone_daemon_had_claimed(
    scenario: Scenario, relay: SmtpRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon busy with a backlog sends what another one left between two groups."""
    site, rt = scenario.site, scenario.runtime
    monkeypatch.setattr(catchup, "GROUP_MESSAGES", 3)
    for n in range(12):
        site.send("analista", f"Solicitud {n}", INFO_REQUEST.replace("2026", f"2026 ({n})", 1))
    other = subprocess.Popen(["sleep", "60"])  # the other daemon's process, alive for now
    try:
        seen = proc_id(other.pid)
        assert seen is not None
        holder = Holder(rt.store, process=replace(HERE, pid=other.pid, start=str(seen[1])))
        readers = scenario.queue_mails(4)
        with rt.store.transaction() as session:
            claimant = holder.enter(session)
            session.execute(update(OutboxRow).values(claimed_by=claimant))
        handle_in = rt.service.handle_in
        sent_before: list[int] = []  # our mails at the relay as each message is handled

        def handle_then_kill(*args: Any, **kwargs: Any) -> Any:
            sent_before.append(sum(1 for m in relay.accepted if m.mail_from == site.shared))
            done = handle_in(*args, **kwargs)
            if other.poll() is None:  # the other daemon dies during our first group
                other.kill()
                other.wait()
            return done

        monkeypatch.setattr(rt.service, "handle_in", handle_then_kill)
        runner = rt.runner(lambda: scenario.now)
        assert runner.presence is not None
        runner.presence.beat_every = 0.05
        runner.run_once()
    finally:
        other.kill()
        other.wait()

    order = [m.rcpt_tos[0] for m in relay.accepted if m.mail_from == site.shared]
    assert sorted(order[:4]) == sorted(readers)
    # Sent while the backlog was still being handled, not with its answers at the end.
    assert sent_before[0] == 0 and sent_before[-1] == 4, sent_before
    assert len(order) == 4 + 2 * 12  # each request: its acknowledgement and action mail
    with rt.store.transaction() as session:
        assert set(session.scalars(select(OutboxRow.status))) == {OutboxStatus.SENT}
