"""The mailbox position is recorded every few messages, and never lags what was done."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from testbed.site import INFO_REQUEST, Scenario

from mailflow import runner as runner_module
from mailflow.dbschema import InboundRow, MailboxStateRow


def _positions(scenario: Scenario) -> list[int]:
    with scenario.runtime.store.transaction() as session:
        return list(session.scalars(select(MailboxStateRow.last_uid)))


def _handled(scenario: Scenario) -> int:
    with scenario.runtime.store.transaction() as session:
        return int(session.scalar(select(func.count(InboundRow.id))) or 0)


def test_position_follows_every_handled_message_even_when_a_pass_fails(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "POSITION_EVERY", 2)
    for n in range(5):
        scenario.site.send("analista", f"Solicitud {n}", INFO_REQUEST)
    service = scenario.runtime.service
    handle = service.handle
    calls = 0

    def failing_fourth(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 4:  # the database goes away in the middle of the backlog
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))
        return handle(*args, **kwargs)

    monkeypatch.setattr(service, "handle", failing_fourth)
    with pytest.raises(OperationalError):
        scenario.run()
    # Three messages done: recorded at the second by the interval, at the third on the way out.
    assert _handled(scenario) == 3
    assert _positions(scenario) == [3]

    monkeypatch.setattr(service, "handle", handle)
    scenario.run()
    assert _handled(scenario) == 5
    assert _positions(scenario) == [5]
