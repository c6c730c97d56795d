"""Queries behind the conversation around a request: its thread, its history, held openings.

What :mod:`mailflow.app.conversation`, :mod:`mailflow.app.completion` and
:mod:`mailflow.jobs.held` ask the database, kept here so that the application code reads
as what it decides, not as SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from mailflow.core.conversation import Entry
from mailflow.store.schema import (
    ArchiveEntryRow,
    ArchiveKind,
    AttachmentRow,
    Direction,
    HeldState,
    HistoryRow,
    InboundOutcome,
    InboundRow,
    RequestRow,
)

# The ledger detail of an opening held until its sender answers CONFIRMO (see
# mailflow.app.service), for people reading the ledger; the state is InboundRow.held, and
# request_id is set when it is confirmed, so it opens once.
HELD = "held for CONFIRMO"
# Put before the detail when the confirmation expired: still held (a late CONFIRMO is told
# it expired), no longer waiting (neither reminded nor listed).
EXPIRED = f"{HELD}, expired:"


def history_entries(session: Session, request_id: int) -> tuple[Entry, ...]:
    """Return a request's history in order, as the conversation rules read it."""
    # Nothing pending changes the history: no flush (the ledger row is written once, later).
    with session.no_autoflush:
        rows = session.execute(
            select(HistoryRow.at, HistoryRow.actor, HistoryRow.action, HistoryRow.stage)
            .where(HistoryRow.request_id == request_id)
            .order_by(HistoryRow.id)
        ).all()
    return tuple(Entry(at, actor, action, stage) for at, actor, action, stage in rows)


def latest_note(session: Session, request_id: int, actor: str) -> HistoryRow | None:
    """Return the latest history entry of ``actor`` on the request (to spot a note twice)."""
    return session.scalar(
        select(HistoryRow)
        .where(HistoryRow.request_id == request_id, HistoryRow.actor == actor)
        .order_by(HistoryRow.id.desc())
        .limit(1)
    )



def publication_urls(session: Session, request_id: int) -> list[str]:
    """Return the links a request was published at (its PUBLICADO's)."""
    return [
        url
        for details in session.scalars(
            select(HistoryRow.details).where(HistoryRow.request_id == request_id)
        )
        if details
        for url in details.get("urls", [])
    ]


def request_in_thread(session: Session, message_ids: Sequence[str]) -> RequestRow | None:
    """Return (locked) the request a thread belongs to: its first mail, or a mail linked to it.

    Replies to the requester's own request mail (Gmail threads the sent mail, Outlook
    answers from Sent Items) carry no token of ours, only that Message-ID.
    """
    ids = [m[:998] for m in message_ids if m][-20:]
    if not ids:
        return None
    linked = select(InboundRow.request_id).where(
        InboundRow.message_id.in_(ids), InboundRow.request_id.is_not(None)
    )
    return session.scalar(
        select(RequestRow)
        .where(or_(RequestRow.thread_message_id.in_(ids), RequestRow.id.in_(linked)))
        .order_by(RequestRow.id.desc())
        .limit(1)
        .with_for_update()
    )


def completions_of(session: Session, root_id: int) -> list[InboundRow]:
    """Return the earlier replies that completed the incomplete request ``root_id``, in order."""
    return list(
        session.scalars(
            select(InboundRow).where(InboundRow.completes_id == root_id).order_by(InboundRow.id)
        )
    )


@dataclass(frozen=True)
class HeldOpening:
    """An opening waiting for its sender's CONFIRMO: its ledger row and who sent it."""

    inbound_id: int
    sha256: str
    sender: str
    received_at: datetime
    state: HeldState
    until: datetime | None
    procedure: str | None

    @property
    def asked(self) -> bool:
        """Tell whether the confirmation mail went out (the daily cap may have stopped it)."""
        return self.state is not HeldState.NOT_ASKED


def held_openings(session: Session) -> list[HeldOpening]:
    """Return every opening still held for CONFIRMO (confirmed ones excluded), oldest first."""
    rows = session.execute(
        select(
            InboundRow.id,
            InboundRow.sha256,
            ArchiveEntryRow.person,
            InboundRow.received_at,
            InboundRow.held,
            InboundRow.held_until,
            InboundRow.held_procedure,
        )
        .join(
            ArchiveEntryRow,
            (ArchiveEntryRow.inbound_id == InboundRow.id)
            & (ArchiveEntryRow.kind == ArchiveKind.EML)
            & (ArchiveEntryRow.direction == Direction.IN),
        )
        .where(
            InboundRow.outcome == InboundOutcome.PROCESSED,
            InboundRow.request_id.is_(None),
            InboundRow.held.in_((HeldState.WAITING, HeldState.NOT_ASKED)),
        )
        .order_by(InboundRow.id)
    ).all()
    return [
        HeldOpening(i, sha, person or "", at, HeldState(state or HeldState.WAITING), until, procedure)
        for i, sha, person, at, state, until, procedure in rows
    ]


def mark_expired(session: Session, inbound_id: int) -> bool:
    """Mark a held opening expired; False when it was confirmed (or expired) meanwhile."""
    row = session.get(InboundRow, inbound_id, with_for_update=True)
    if row is None or row.request_id is not None or row.held == HeldState.EXPIRED:
        return False
    row.held = HeldState.EXPIRED
    row.detail = f"{EXPIRED} {row.detail or ''}"[:2000]  # for whoever reads the ledger
    return True
