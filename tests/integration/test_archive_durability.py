"""An inbound message's archive files are durable before the commit that refers to them."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session
from testbed.site import Scenario

from mailflow.store.repository import store_url
from mailflow.store.schema import InboundRow, OutboxRow


def test_archive_batch_settles_before_the_commit(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    site, runtime = scenario.site, scenario.runtime
    archive = runtime.service.archive
    mail = EmailMessage()
    mail["From"] = site.addr("analista")
    mail["To"] = site.shared
    mail["Subject"] = "Consulta"
    mail["Message-ID"] = make_msgid(domain=site.domain)
    mail.set_content("Hola, ¿cómo pido una publicación?")
    settled: list[tuple[int, int]] = []
    # A plain engine: a read that takes no write lock (mailflow's SQLite BEGINs IMMEDIATE).
    observer = create_engine(store_url(site.db_url))
    original = archive._settle_all

    def settle_all(pending: dict[Path, Path], root_fd: int | None) -> None:
        with observer.connect() as other:  # what another connection sees: nothing yet
            committed = other.scalar(select(func.count()).select_from(InboundRow))
        settled.append((len(pending), committed or 0))
        original(pending, root_fd)

    monkeypatch.setattr(archive, "_settle_all", settle_all)
    try:
        runtime.replay(mail.as_bytes(policy=SMTP), scenario.now)
        with Session(observer) as session:
            inbound = session.scalars(select(InboundRow)).one()
            sent = [
                (row, [entry.sha256 for entry in row.archive_entries])
                for row in session.scalars(select(OutboxRow))
            ]
    finally:
        observer.dispose()
    # One settle before its commit, holding every mail it queued and, since the inbound
    # message joined the batch (it used to be fsynced on its own first), the message too.
    assert settled == [(len(sent) + 1, 0)]
    assert sent, "the message queued no mail: the test proves less than it should"
    assert archive.locate(inbound.sha256) is not None
    for _row, digests in sent:
        assert digests and all(archive.locate(d) is not None for d in digests)
