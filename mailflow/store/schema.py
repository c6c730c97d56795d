"""Declare mailflow's tables as typed SQLAlchemy 2.x ORM classes.

This module is the schema and nothing else; engines, sessions, migrations and queries live
in :mod:`mailflow.store.repository`. Alembic revisions under ``mailflow/migrations/versions`` are
written by hand to match it, and a test compares the two.

Conventions, each with its reason:

- Enumerations (:class:`mailflow.core.model.Status` and the store's own below) are stored as
  their *values* (``"en_curso"``) in plain strings guarded by a CHECK constraint: never as
  native database enums (a new value would need DDL that SQLite lacks), never as names.
- Every timestamp is a :class:`UTCDateTime`: callers pass timezone-aware datetimes and get
  aware UTC back on both databases. Timestamps have no defaults because the clock is an
  argument (``--now``): a forgotten timestamp fails loudly instead of using the wall clock.
- Text that comes from untrusted mail (titles, reasons, senders of refused mail) is
  ``Text``, so an over-long value never fails a transaction on PostgreSQL; indexed
  identifiers are bounded ``String`` and must be validated by the parser first.
- JSON columns are not mutation-tracked: assign a new value, do not edit in place.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from mailflow.core.model import ProductType, Status

# Stable constraint names: Alembic needs them to alter constraints later, and SQLite
# batch migrations cannot drop an unnamed constraint.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ADDRESS = 320  # RFC 3696 errata: 64 local part + @ + 255 domain
MESSAGE_ID = 998  # RFC 5322 line limit; the parser must drop anything longer
SHA256_HEX = 64
HOLDER_ID = 32  # a uuid4 in hex


class InboundOutcome(enum.StrEnum):
    """Name what became of one inbound message in the ledger."""

    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    AUTO_REPLY = "auto_reply"
    FORMAT_ERROR = "format_error"
    UNAUTHORIZED = "unauthorized"
    UNKNOWN_SENDER = "unknown_sender"
    QUARANTINED = "quarantined"


class HeldState(enum.StrEnum):
    """Name where an opening held for its sender's CONFIRMO stands (the ledger row's ``held``)."""

    WAITING = "waiting"  # the confirmation mail went out; CONFIRMO may come
    NOT_ASKED = "not_asked"  # the daily cap kept the confirmation mail back
    EXPIRED = "expired"  # confirm_days passed: a late CONFIRMO is told so


class ArchiveKind(enum.StrEnum):
    """Name what an archived file is: a whole message, or one attachment of it."""

    EML = "eml"
    ATTACHMENT = "attachment"


class Direction(enum.StrEnum):
    """Name which way an archived message (or its attachment) travelled."""

    IN = "in"
    OUT = "out"


class OutboxStatus(enum.StrEnum):
    """Name the delivery states of an outgoing message."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


def _one_of(column: str, values: type[enum.StrEnum]) -> CheckConstraint:
    """Build a named CHECK constraint restricting ``column`` to the values of an enum."""
    listed = ", ".join(f"'{member.value}'" for member in values)
    return CheckConstraint(f"{column} IN ({listed})", name=f"{column}_valid")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Store aware datetimes as UTC; return them aware in UTC on every backend.

    PostgreSQL gets ``timestamptz``; SQLite has no time zones, so the UTC wall time is
    stored and the zone reattached on load. Naive datetimes are refused because their
    meaning (UTC? America/La_Paz?) cannot be known here.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        """Convert an aware datetime to UTC; refuse a naive one."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        """Return the stored instant as an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


# Python None must become SQL NULL in nullable JSON columns, not the JSON literal 'null',
# or "IS NULL" queries silently miss it.
NullableJSON = JSON(none_as_null=True)


class Base(DeclarativeBase):
    """Hold the metadata shared by all mailflow tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RequestRow(Base):
    """Store one publication request and where it stands in its procedure."""

    __tablename__ = "requests"
    __table_args__ = (
        _one_of("status", Status),
        Index("ix_requests_status_due_at", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    procedure: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    stage: Mapped[int] = mapped_column(Integer)
    # The roles acting at this stage (the chosen alternative: unit head or Comité).
    stage_roles: Mapped[list[str]] = mapped_column(JSON)
    stage_entered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Votes cast so far at a collegiate stage: [{"address", "action", "text"}].
    votes: Mapped[list[dict[str, Any]] | None] = mapped_column(NullableJSON)
    requester: Mapped[str] = mapped_column(String(ADDRESS))
    unit: Mapped[str | None] = mapped_column(String(64))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    protected: Mapped[bool] = mapped_column(default=False, server_default=false())
    cronograma: Mapped[list[dict[str, Any]] | None] = mapped_column(NullableJSON)
    publish_from: Mapped[dt.date | None] = mapped_column(Date)
    publish_until: Mapped[dt.date | None] = mapped_column(Date)
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    thread_message_id: Mapped[str | None] = mapped_column(String(MESSAGE_ID), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Optimistic concurrency: a stale UPDATE raises StaleDataError instead of
    # silently overwriting what another daemon (PostgreSQL) committed meanwhile.
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 (read by the mapper)


class HistoryRow(Base):
    """Record one accepted action or system event of a request (never a refusal)."""

    __tablename__ = "history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(ADDRESS))  # an address, or "sistema"
    action: Mapped[str] = mapped_column(String(32))
    stage: Mapped[int] = mapped_column(Integer)
    to_stage: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    # Structured extras the note cannot carry faithfully, e.g. {"urls": [...]} of PUBLICADO.
    details: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"), index=True)


class RefusalRow(Base):
    """Record one refused attempt to act, kept apart from the history."""

    __tablename__ = "refusals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    sender: Mapped[str] = mapped_column(Text)  # possibly spoofed or malformed: never bounded
    action: Mapped[str | None] = mapped_column(String(32))
    stage: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"), index=True)


class InboundRow(Base):
    """Record one message taken from a mailbox: the ledger that makes processing idempotent."""

    __tablename__ = "inbound"
    __table_args__ = (
        # UIDs are only unique within one UIDVALIDITY of one mailbox (RFC 3501 §2.3.1.1).
        UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_inbound_mailbox_uid"),
        _one_of("outcome", InboundOutcome),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(255))
    # UIDVALIDITY and UID are unsigned 32-bit: they overflow PostgreSQL's integer.
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str | None] = mapped_column(String(MESSAGE_ID), index=True)
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX), index=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"), index=True)
    # A reply that completes an incomplete request: the first mail of that request (whose
    # help mail it answers). The request opens from all of them together.
    completes_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"), index=True)
    # An opening held for its sender's CONFIRMO (HeldState; None for every other mail), until
    # when it can be confirmed and the procedure it asks for. Confirmed: request_id is set.
    held: Mapped[str | None] = mapped_column(String(16), index=True)
    held_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    held_procedure: Mapped[str | None] = mapped_column(String(64))


class OutboxRow(Base):
    """Hold one outgoing message, rendered once, until the SMTP server accepts it."""

    __tablename__ = "outbox"
    __table_args__ = (
        _one_of("status", OutboxStatus),
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Fixed at creation and reused on every retry, so a resend is recognisably the same mail.
    message_id: Mapped[str] = mapped_column(String(MESSAGE_ID), unique=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))  # the template name
    recipients: Mapped[list[str]] = mapped_column(JSON)  # envelope RCPT TO
    # The whole mail, or empty when it carries files: then it was streamed into the
    # archive, named by ``eml_sha256``, and is sent from there (never a 15 MB row).
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    eml_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX))
    # The SHA-256 of each file the mail carries (None: none), so ARCHIVOS knows who has what.
    files: Mapped[list[str] | None] = mapped_column(NullableJSON)
    status: Mapped[str] = mapped_column(
        String(16), default=OutboxStatus.PENDING.value, server_default=OutboxStatus.PENDING.value
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The daemon sending it right now (a DaemonRow.id), NULL when none is. The claim of a
    # daemon that is gone is released at once (mailflow.store.claims).
    claimed_by: Mapped[str | None] = mapped_column(String(HOLDER_ID), index=True)
    # How many times its claim was released because the daemon holding it was gone.
    releases: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Its archive index entry, saved with it (cascade): an outgoing mail is archived when
    # its row is created, before the commit that queues it.
    archive_entries: Mapped[list[ArchiveEntryRow]] = relationship(back_populates="outbox")


class ReminderRow(Base):
    """Mark one piece of time-driven work as done, keyed so it is never done twice."""

    __tablename__ = "reminders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # e.g. "reminder:RRSS-2026-0001:3:2026-12-01", "digest:2026-W49"
    key: Mapped[str] = mapped_column(String(255), unique=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"), index=True)
    stage: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    for_date: Mapped[dt.date | None] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class MailboxStateRow(Base):
    """Remember how far one IMAP mailbox has been read."""

    __tablename__ = "mailbox_state"

    mailbox: Mapped[str] = mapped_column(String(255), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)


class CodeSequenceRow(Base):
    """Count the request codes handed out per prefix and year."""

    __tablename__ = "code_sequences"

    prefix: Mapped[str] = mapped_column(String(16), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)


class AttachmentRow(Base):
    """Index one archived attachment; the bytes live in the archive under their SHA-256."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"), index=True)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"), index=True)
    filename: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX), index=True)
    # The stage the file was delivered at and who sent it: every mail lists both.
    stage: Mapped[int | None] = mapped_column(Integer)
    person: Mapped[str | None] = mapped_column(String(ADDRESS))
    # Shown inside the mail (inline, or with a Content-ID): a tiny one is a signature logo.
    inline: Mapped[bool] = mapped_column(default=False, server_default=false())


class ArchiveEntryRow(Base):
    """Index one file of the archive: which request, person, moment and kind it belongs to.

    The bytes live in the archive under their SHA-256 (:mod:`mailflow.store.archive`); the same
    file may be indexed more than once (one attachment sent twice, one mail to a request
    and in a report). ``person`` is the sender of inbound mail and the recipient of ours.
    """

    __tablename__ = "archive_entries"
    __table_args__ = (
        _one_of("kind", ArchiveKind),
        _one_of("direction", Direction),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX), index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    direction: Mapped[str] = mapped_column(String(3))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"), index=True)
    person: Mapped[str | None] = mapped_column(String(ADDRESS), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    filename: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"), index=True)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"), index=True)

    outbox: Mapped[OutboxRow | None] = relationship(back_populates="archive_entries")


class ProductRow(Base):
    """Record one published product (manual §10): the POAI's unit of evidence.

    ``screenshots`` lists the archived captures as ``{"sha256", "filename"}``; ``designer``
    is who produced the material (the design stage's ENTREGO, a ``Diseño:`` line, or the
    publisher of a direct publication), ``publisher`` who sent the PUBLICADO.
    """

    __tablename__ = "products"
    __table_args__ = (
        _one_of("type", ProductType),
        Index("ix_products_published_at", "published_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    history_id: Mapped[int | None] = mapped_column(ForeignKey("history.id"))
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"))
    type: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    urls: Mapped[list[str]] = mapped_column(JSON)
    screenshots: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    designer: Mapped[str | None] = mapped_column(String(ADDRESS), index=True)
    designed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The ENTREGO mail behind ``designer`` (None when the publisher designed it).
    design_inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"))
    publisher: Mapped[str] = mapped_column(String(ADDRESS), index=True)
    published_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class DaemonStatusRow(Base):
    """Record what a running daemon is doing, for `mailflow status` in another process.

    One row per mailbox watched (``user@host/folder``), written by the daemon's loop with
    the wall clock (never ``--now``): several daemons on one PostgreSQL store share it.
    """

    __tablename__ = "daemon_status"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # The longest wait of the loop: a heartbeat older than a few of these means stuck.
    wait_seconds: Mapped[int] = mapped_column(Integer)
    imap_connected: Mapped[bool] = mapped_column(default=False, server_default=false())
    imap_since: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # connected or not since
    last_wake_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_message_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_message_id: Mapped[str | None] = mapped_column(String(MESSAGE_ID))
    last_outcome: Mapped[str | None] = mapped_column(String(32))
    last_request: Mapped[str | None] = mapped_column(String(32))
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class MailboxGapRow(Base):
    """Record a UID that disappeared from the mailbox before mailflow fetched it.

    Someone moved or deleted the message (people work in shared mailboxes): it was never
    processed. `mailflow status` lists these, the metrics count them, and the scheduler
    reports them once a day (``reported_at``).
    """

    __tablename__ = "mailbox_gaps"
    __table_args__ = (
        UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_mailbox_gaps_mailbox_uid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    noticed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    reported_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)


class DaemonRow(Base):
    """Name one running mailflow process that may hold claims, with its heartbeat.

    Registered when the process starts, its heartbeat renewed every few seconds with the
    store's clock, deleted at a clean stop; the row of a process that is gone is deleted by
    the daemon that releases its claims (:mod:`mailflow.store.claims`). Several daemons on
    one PostgreSQL store each have their own.
    """

    __tablename__ = "daemons"

    id: Mapped[str] = mapped_column(String(HOLDER_ID), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    # Where ``pid`` means this very process: host, machine id, boot and PID namespace.
    machine: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    # When the kernel started ``pid`` (ticks since boot): a reused pid has another one.
    process_start: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
