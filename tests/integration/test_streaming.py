"""Large mails on the real test bed: fetched in pieces, split while read, never held whole.

The proof of streaming is tracemalloc's peak while one daemon pass (Dovecot fetch, spool,
archive, MIME split, intake, attachment archive, commit) handles a 30 MB attachment: it
stays far below the attachment's size. Not timed, and not RSS (noisy on a shared machine).
"""

from __future__ import annotations

import email.policy
import gc
import hashlib
import random
import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import select
from testbed.dovecot import Dovecot
from testbed.mail import append, build_message
from testbed.site import INFO_REQUEST, Scenario

import mailflow.app.service
from mailflow.config import Imap
from mailflow.mail.spool import LARGE_MESSAGE_BYTES, Spooled
from mailflow.store.archive import sha256_of
from mailflow.store.schema import AttachmentRow, InboundOutcome, InboundRow
from mailflow.transport.imap import ImapSource

MB = 1024 * 1024
# A warm pass over a 30 MB attachment peaks near 4 MB; the whole-message path held the
# message about 8 times (over 300 MB).
PEAK_BOUND = 8 * MB


def _imap(dovecot: Dovecot, address: str) -> Imap:
    account = dovecot.account(address)
    return Imap.model_validate(
        {
            "host": account.host,
            "port": account.port,
            "security": "none",
            "username": account.username,
            "password": account.password,
            "timeout_seconds": 5,
        }
    )


def _mail(scenario: Scenario, sender: str, attachment: bytes, name: str = "afiche.pdf") -> bytes:
    site = scenario.site
    message = build_message(
        site.addr(sender),
        [site.shared],
        "Solicitud de publicación: afiche",
        INFO_REQUEST,
        attachments=[(name, attachment, "application/pdf")],
    )
    return message.as_bytes(policy=email.policy.SMTP)


def test_a_30_mb_attachment_is_never_held_whole(scenario: Scenario) -> None:
    site = scenario.site
    # A first pass loads templates, compiles queries and fills caches: a few MB once.
    append(site.dovecot, site.shared, _mail(scenario, "analista", b"%PDF-1.4 tiny", "a.pdf"))
    scenario.run()
    data = random.Random(30).randbytes(30 * MB)
    raw = _mail(scenario, "analista", data)
    want_attachment = hashlib.sha256(data).hexdigest()
    want_message = hashlib.sha256(raw).hexdigest()
    append(site.dovecot, site.shared, raw)
    del data, raw
    gc.collect()

    tracemalloc.start()
    try:
        scenario.run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    with scenario.runtime.store.transaction() as session:
        ledger = session.scalars(select(InboundRow).order_by(InboundRow.uid.desc())).first()
        attachment = session.scalars(select(AttachmentRow).where(AttachmentRow.size > MB)).one()
        assert ledger is not None
        assert (ledger.outcome, ledger.sha256) == (InboundOutcome.PROCESSED, want_message)
        assert (attachment.size, attachment.sha256) == (30 * MB, want_attachment)
        assert attachment.filename == "afiche.pdf"
    archive = scenario.runtime.service.archive
    assert sha256_of(archive.path_of(want_message, ".eml")) == want_message
    assert sha256_of(archive.path_of(want_attachment, ".pdf")) == want_attachment
    assert not any(archive.scratch.iterdir())  # spool and part files are gone
    assert peak < PEAK_BOUND, f"peak {peak / MB:.1f} MB while handling a 30 MB attachment"


def test_large_mails_are_fetched_into_a_file_small_ones_as_bytes(
    dovecot: Dovecot, maildomain: str, tmp_path: Path
) -> None:
    address = f"rrss@{maildomain}"
    small = b"From: a@example.org\r\nSubject: uno\r\n\r\nhola\r\n"
    # Not a multiple of the piece size, so the last piece is a short one.
    large = b"From: a@example.org\r\nSubject: dos\r\n\r\n" + b"x" * 76 + b"\r\n"
    large = large * (3 * MB // len(large))
    assert len(large) > LARGE_MESSAGE_BYTES
    for raw in (small, large, small):
        append(dovecot, address, raw)
    spool = tmp_path / "spool"
    got = []
    kinds = []
    with ImapSource(_imap(dovecot, address)) as source:
        for fetched in source.fetch_after(0, spool_dir=spool):
            kinds.append(type(fetched.raw))
            if isinstance(fetched.raw, Spooled):
                assert fetched.raw.path.parent == spool
                got.append(fetched.raw.path.read_bytes())
                assert fetched.raw.sha256 == hashlib.sha256(large).hexdigest()
            else:
                got.append(fetched.raw)
    assert got == [small, large, small]
    assert kinds == [bytes, Spooled, bytes]
    assert not any(spool.iterdir())  # the file went once its message was handled


def test_a_mail_over_the_bound_is_answered_not_read(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real bound is 50 MiB; a 2 MB bound shows the same path without moving 50 MB.
    monkeypatch.setattr(mailflow.app.service, "MAX_MESSAGE_BYTES", 2 * MB)
    site = scenario.site
    blob = random.Random(3).randbytes(3 * MB)
    append(site.dovecot, site.shared, _mail(scenario, "analista", blob))
    append(site.dovecot, site.shared, _mail(scenario, "analista", blob[::-1]))
    scenario.run()
    answer = site.wait_for("analista", lambda m: "No pudimos procesar" in str(m["Subject"]))
    text = answer.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "límite es de 2 MB" in text
    with scenario.runtime.store.transaction() as session:
        rows = session.scalars(select(InboundRow).order_by(InboundRow.uid)).all()
        assert [r.outcome for r in rows] == [InboundOutcome.QUARANTINED] * 2
        assert all("supera el límite" in (r.detail or "") for r in rows)
        assert session.scalars(select(AttachmentRow)).all() == []
    # Once a day per sender: the second oversize mail got no second answer.
    helps = [m for m in site.inbox("analista") if "No pudimos procesar" in str(m["Subject"])]
    assert len(helps) == 1


def test_replay_of_a_large_file_spools_a_copy_and_keeps_the_file(
    scenario: Scenario, tmp_path: Path
) -> None:
    data = random.Random(5).randbytes(3 * MB)
    path = tmp_path / "grande.eml"
    path.write_bytes(_mail(scenario, "analista", data))
    result = scenario.cli("replay", str(path))
    assert result.returncode == 0, result.stderr
    assert ": procesado " in result.stdout
    assert path.exists()  # the spool is a copy: replay never deletes the operator's file
    with scenario.runtime.store.transaction() as session:
        attachment = session.scalars(select(AttachmentRow)).one()
        assert attachment.sha256 == hashlib.sha256(data).hexdigest()
    assert not any(scenario.runtime.service.archive.scratch.iterdir())
