"""The raw baseline of sending: aiosmtplib over one connection, nothing else."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import aiosmtplib
from sqlalchemy import select

from mailflow.store.archive import Archive
from mailflow.store.repository import make_engine
from mailflow.store.schema import OutboxRow

Mail = tuple[str, list[str], bytes]  # envelope sender, recipients, bytes


async def _send(host: str, port: int, mails: Sequence[Mail]) -> None:
    smtp = aiosmtplib.SMTP(hostname=host, port=port, timeout=60, local_hostname="bench.local")
    await smtp.connect()
    try:
        for sender, recipients, raw in mails:
            await smtp.sendmail(sender, recipients, raw)
    finally:
        await smtp.quit()


def send(host: str, port: int, mails: Sequence[Mail]) -> float:
    """Send every mail over one connection; return the seconds it took."""
    started = time.perf_counter()
    asyncio.run(_send(host, port, mails))
    return time.perf_counter() - started


def outbox_mails(url: str, sender: str, archive_dir: Path) -> list[Mail]:
    """Return the mails of a store's outbox (any status), oldest first.

    A mail that carries files is kept in the archive, not in its row: it is read from there.
    """
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(OutboxRow.recipients, OutboxRow.raw, OutboxRow.eml_sha256).order_by(
                    OutboxRow.id
                )
            ).all()
    finally:
        engine.dispose()
    archive = Archive(archive_dir)
    return [
        (sender, list(recipients), archive.path_of(sha, ".eml").read_bytes() if sha else bytes(raw))
        for recipients, raw, sha in rows
    ]
