"""Assemble the real adapters around the core: the one place the daemon is wired together."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from mailflow.app.build import Core, build_core
from mailflow.app.effects import Handled
from mailflow.app.outbound import Composer
from mailflow.app.outbox import Outbox
from mailflow.app.service import Incoming, Service
from mailflow.app.views import request_json, request_summary
from mailflow.config import Settings
from mailflow.core.people import NO_REQUEST, holders_of
from mailflow.daemon.presence import Presence
from mailflow.daemon.runner import Clock, Runner
from mailflow.jobs.scheduler import Scheduler
from mailflow.mail.render import Renderer
from mailflow.mail.spool import RawMail, digest_of
from mailflow.store.archive import Archive
from mailflow.store.repository import Store, upgrade
from mailflow.store.schema import AttachmentRow, HistoryRow, RefusalRow, RequestRow
from mailflow.transport.imap import ImapSource
from mailflow.transport.oauth2 import TokenSource
from mailflow.transport.smtp import SmtpSender


class Requests:
    """Read-only queries behind `mailflow requests`."""

    def __init__(self, store: Store, core: Core, settings: Settings) -> None:
        self.store, self.core, self.settings = store, core, settings

    def summaries(self, status: str | None = None) -> list[dict[str, Any]]:
        """Return every request (optionally of one status), newest first."""
        query = select(RequestRow).order_by(RequestRow.id.desc())
        if status:
            query = query.where(RequestRow.status == status)
        with self.store.transaction() as session:
            return [request_summary(row) for row in session.scalars(query)]

    def show(self, code: str, now: datetime) -> dict[str, Any] | None:
        """Return the full JSON of one request, or None when the code is unknown."""
        with self.store.transaction() as session:
            row = session.scalar(select(RequestRow).where(RequestRow.code == code.upper()))
            if row is None:
                return None

            def of(table: Any) -> list[Any]:
                return list(
                    session.scalars(
                        select(table).where(table.request_id == row.id).order_by(table.id)
                    )
                )

            return request_json(
                row,
                history=of(HistoryRow),
                refused=of(RefusalRow),
                attachments=of(AttachmentRow),
                directory=self.core.directory,
                now=now,
                zone=self.settings.zone,
            )


@dataclass
class Runtime:
    """Every adapter of a running mailflow, built from the settings."""

    settings: Settings
    core: Core
    store: Store
    service: Service
    outbox: Outbox
    requests: Requests
    scheduler: Scheduler | None = None
    tokens: TokenSource | None = None  # XOAUTH2 access tokens, shared by IMAP and SMTP

    def runner(self, clock: Clock, **options: Any) -> Runner:
        """Return the IMAP loop over this runtime's service and outbox.

        ``options`` go to :class:`Runner` as they are (``notifier``, ``heartbeat``, ...).
        """
        source = ImapSource(self.settings.imap, tokens=self.tokens)
        return Runner(
            self.service,
            self.store,
            source,
            self.outbox,
            clock,
            processed_folder=self.settings.imap.processed_folder,
            scheduler=self.scheduler,
            presence=Presence(self.outbox.holder),
            **options,
        )

    def install_into(self, runner: Runner) -> None:
        """Make a running loop use this runtime (a SIGHUP reload); it logs in again."""
        runner.source.close()
        previous = runner.source.tokens
        if self.tokens is not None and previous is not None:
            self.tokens.carry_over(previous)  # a rotated refresh token survives the reload
        runner.source = ImapSource(self.settings.imap, tokens=self.tokens)
        self.outbox.alive = runner.outbox.alive  # the watchdog ping during a long flush
        # One holder for the daemon's whole life: the claims it makes stay its own.
        self.outbox.holder = runner.outbox.holder
        self.outbox.holder.store = self.store
        runner.service, runner.store, runner.outbox = self.service, self.store, self.outbox
        runner.scheduler = self.scheduler
        runner.processed_folder = self.settings.imap.processed_folder

    def replay(self, raw: RawMail, now: datetime) -> Handled:
        """Process one message from a file; the same bytes are processed only once."""
        uid = int(digest_of(raw)[:15], 16)
        return self.service.handle(Incoming("replay", 0, uid, raw), now)


def build_runtime(settings: Settings) -> Runtime:
    """Migrate the database and build every adapter; raise ConfigError on bad procedures."""
    upgrade(settings.store.url)
    core = build_core(settings)
    store = Store.from_url(settings.store.url)
    archive = Archive(settings.store.archive_dir)
    composer = Composer(settings, Renderer(settings.paths.templates_dir), archive)
    service = Service(settings, core, store, composer, archive)
    tokens = TokenSource(settings.oauth2) if settings.oauth2 is not None else None
    sender = SmtpSender(settings.smtp, tokens=tokens, connections=settings.smtp.connections)

    def report_to(now: datetime) -> tuple[str, ...]:
        today = core.calendar.local(now).date()
        return holders_of(core.directory, ("jefatura_ugs",), NO_REQUEST, today)

    outbox = Outbox(store, sender.send_many_sync, composer, settings.smtp.from_address, report_to)
    scheduler = Scheduler(settings, core, store, composer)
    requests = Requests(store, core, settings)
    return Runtime(settings, core, store, service, outbox, requests, scheduler, tokens)
