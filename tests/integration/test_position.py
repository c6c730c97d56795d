"""The mailbox position is recorded with each group's commit, and never lags what was done."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from testbed.faults import FailOnCall, connection_lost
from testbed.site import INFO_REQUEST, Scenario

from mailflow.daemon import catchup
from mailflow.store.schema import InboundRow, MailboxStateRow


def _positions(scenario: Scenario) -> list[int]:
    with scenario.runtime.store.transaction() as session:
        return list(session.scalars(select(MailboxStateRow.last_uid)))


def _handled(scenario: Scenario) -> int:
    with scenario.runtime.store.transaction() as session:
        return int(session.scalar(select(func.count(InboundRow.id))) or 0)


def test_position_follows_every_committed_group_even_when_a_pass_fails(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Groups of two: [1, 2] [3, 4] [5]. Messages used to be committed one by one (and the
    # position every few); now a group and its position are one commit.
    monkeypatch.setattr(catchup, "GROUP_MESSAGES", 2)
    for n in range(5):
        scenario.site.send("analista", f"Solicitud {n}", INFO_REQUEST)
    service = scenario.runtime.service
    # The database goes away in the middle of the second group.
    handle_in = FailOnCall(monkeypatch, service, "handle_in", 4, connection_lost("COMMIT"))
    with pytest.raises(OperationalError):
        scenario.run()
    # The first group is committed with its position; the second rolled back, whole.
    assert _handled(scenario) == 2
    assert _positions(scenario) == [2]

    monkeypatch.setattr(service, "handle_in", handle_in.original)
    scenario.run()
    assert _handled(scenario) == 5
    assert _positions(scenario) == [5]
