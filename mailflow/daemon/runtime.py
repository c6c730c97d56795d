"""The one composition root: build what each command needs, and only that.

Every command of ``mailflow`` (``run``, ``run --once`` and a SIGHUP reload included) gets its
adapters here; :mod:`mailflow.cli` turns arguments into one call of this module and prints
the answer. What a command may touch is its :class:`~mailflow.daemon.needs.Needs`: a
read-only command gets the configuration without mail secrets, the core, the store as it
is and the archive (:func:`reader`), never an IMAP or SMTP object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mailflow import __version__
from mailflow.app.build import Core, build_core, procedures_of
from mailflow.app.conversation import cancel_by_operator
from mailflow.app.effects import Handled
from mailflow.app.outbound import Composer
from mailflow.app.outbox import FlushReport, Outbox
from mailflow.app.service import Incoming, Service
from mailflow.app.views import request_json, request_summary
from mailflow.config import Settings, load_settings
from mailflow.core.model import Procedure
from mailflow.core.people import NO_REQUEST, holders_of
from mailflow.daemon.catchup import Clock, PassReport, Wiring
from mailflow.daemon.needs import Needs
from mailflow.daemon.presence import Presence
from mailflow.daemon.runner import Runner, offset_clock
from mailflow.errors import MailflowError
from mailflow.jobs.held import HeldOpenings
from mailflow.jobs.scheduler import Scheduler
from mailflow.mail.render import Renderer
from mailflow.mail.spool import RawMail, Spooled, digest_of, read_file
from mailflow.ops.checks import Checked, check_everything, check_imap, check_smtp
from mailflow.ops.health import Heartbeat, Limits, Report, check, status_name, wall_clock
from mailflow.ops.metrics import MetricsServer, StoreCollector
from mailflow.ops.sd_notify import Notifier
from mailflow.reports.evidence import export_request
from mailflow.reports.poai import PersonReport
from mailflow.reports.poai_files import load_products, write_report
from mailflow.store.archive import Archive, Verification
from mailflow.store.backup import backup
from mailflow.store.catalog import evidence_gaps, indexed_digests
from mailflow.store.listing import (
    attachment_rows,
    refusal_rows,
    requests_newest_first,
)
from mailflow.store.record import history_of, request_named
from mailflow.store.repository import (
    Store,
    current_revision,
    get_mailbox_state,
    store_problem,
    upgrade,
)
from mailflow.transport.imap import ImapSource
from mailflow.transport.oauth2 import TokenSource
from mailflow.transport.smtp import SmtpSender

log = logging.getLogger("mailflow")

# The longest wait of the daemon's loop without a pass, in seconds.
WAIT_SECONDS = 60.0


def load(path: Path, env: Mapping[str, str], needs: Needs) -> Settings:
    """Read the configuration a command needs: the mail secrets only when it needs them."""
    return load_settings(path, env, secrets=needs.secrets)


# -- what the read-only commands get ------------------------------------------------------


class Requests:
    """Read-only queries behind `mailflow requests`."""

    def __init__(self, store: Store, core: Core, settings: Settings) -> None:
        self.store, self.core, self.settings = store, core, settings

    def summaries(self, status: str | None = None) -> list[dict[str, Any]]:
        """Return every request (optionally of one status), newest first."""
        with self.store.transaction() as session:
            return [request_summary(row) for row in requests_newest_first(session, status)]

    def show(self, code: str, now: datetime) -> dict[str, Any] | None:
        """Return the full JSON of one request, or None when the code is unknown."""
        with self.store.transaction() as session:
            row = request_named(session, code.upper())
            if row is None:
                return None
            return request_json(
                row,
                history=history_of(session, row.id),
                refused=refusal_rows(session, row.id),
                attachments=attachment_rows(session, row.id),
                directory=self.core.directory,
                now=now,
                zone=self.settings.zone,
            )


@dataclass
class Reader:
    """What a read-only command gets: settings without secrets, the core, store and archive."""

    settings: Settings
    core: Core
    store: Store
    archive: Archive
    requests: Requests

    def evidence(self, code: str, out: Path, now: datetime) -> int:
        """Write the evidence ZIP of one request; return how many files it holds."""
        settings = self.settings
        with self.store.transaction() as session:
            return export_request(
                session,
                self.archive,
                code,
                out,
                procedure_of=self.core.workflow.procedure,
                org_name=settings.organization.name,
                zone=settings.zone,
                templates_dir=settings.paths.report_templates_dir,
                now=now,
            )

    def poai(self, year: int, person: str | None, out: Path, now: datetime) -> list[PersonReport]:
        """Write the POAI report of ``year`` into ``out``; return one report per person."""
        with self.store.transaction() as session:
            products = load_products(session, year, self.settings.zone)
        return write_report(
            products, self.archive, self.settings, year=year, person=person, out=out, now=now
        )

    def verify_archive(self) -> tuple[Verification, list[str]]:
        """Re-hash every archived file against the digests the store refers to.

        Also return, per request, what its evidence lacks (its opening mail or a file).
        """
        with self.store.transaction() as session:
            wanted = indexed_digests(session)
            gaps = evidence_gaps(session)
        return self.archive.verify(wanted), gaps

    def close(self) -> None:
        """Close the store's connections."""
        self.store.close()


@contextmanager
def reader(settings: Settings) -> Iterator[Reader]:
    """Open the store as it is, for reading (never created nor migrated); close it after."""
    problem = store_problem(settings.store.url)
    if problem is not None:
        raise MailflowError(problem)
    core = build_core(settings)
    store = Store.from_url(settings.store.url)
    opened = Reader(
        settings, core, store, Archive(settings.store.archive_dir), Requests(store, core, settings)
    )
    try:
        yield opened
    finally:
        opened.close()


def procedures(settings: Settings) -> dict[str, Procedure]:
    """Return the loaded procedures (no store needed); raise ConfigError on bad files."""
    return procedures_of(settings)


def health(settings: Settings, now: datetime, limits: Limits) -> Report:
    """Judge the daemon of this config's mailbox from the store, never creating it."""
    imap = settings.imap
    name = status_name(imap.username, imap.host, imap.folder)
    problem = store_problem(settings.store.url)
    if problem is not None:
        return Report(None, {}, 0, None, [problem])
    store = Store.from_url(settings.store.url)
    try:
        return check(store, name, wall=wall_clock(), now=now, limits=limits)
    finally:
        store.close()


def check_config(path: Path, env: Mapping[str, str], *, live: bool) -> Checked:
    """Find every problem of the config file; ``live`` also tries its IMAP and SMTP servers."""
    checked = Checked(problems=check_everything(path, env))
    if not live or checked.problems:
        return checked
    settings = load(path, env, Needs.CHECK)
    tokens = TokenSource(settings.oauth2) if settings.oauth2 is not None else None
    check_imap(settings, ImapSource(settings.imap, tokens=tokens), checked)
    check_smtp(SmtpSender(settings.smtp, tokens=tokens), checked)
    return checked


# -- the store's maintenance --------------------------------------------------------------


def upgrade_store(settings: Settings) -> str | None:
    """Apply pending migrations; return the revision the store is at."""
    upgrade(settings.store.url)
    return current_revision(settings.store.url)


def backup_store(settings: Settings, out: Path) -> str:
    """Copy the store into ``out`` while the daemon may run; return what was written."""
    return backup(settings.store.url, out)


# -- the daemon and what sends mail -------------------------------------------------------


@dataclass
class Runtime:
    """Every adapter of a running mailflow, built from the settings (secrets included)."""

    settings: Settings
    core: Core
    store: Store
    service: Service
    outbox: Outbox
    requests: Requests
    scheduler: Scheduler | None = None
    tokens: TokenSource | None = None  # XOAUTH2 access tokens, shared by IMAP and SMTP

    def wiring(self, previous: TokenSource | None = None) -> Wiring:
        """Return what one runner drives: the service, the store, a new IMAP source, ...

        ``previous``: the token source of the runtime this one replaces (a reload), whose
        rotated refresh token must survive.
        """
        if self.tokens is not None and previous is not None:
            self.tokens.carry_over(previous)
        return Wiring(
            service=self.service,
            store=self.store,
            source=ImapSource(self.settings.imap, tokens=self.tokens),
            outbox=self.outbox,
            scheduler=self.scheduler,
            processed_folder=self.settings.imap.processed_folder,
            report_gaps=self.settings.imap.report_gaps,
        )

    def runner(self, clock: Clock, **options: Any) -> Runner:
        """Return the IMAP loop over this runtime's service and outbox.

        ``options`` go to :class:`Runner` as they are (``notifier``, ``heartbeat``, ...).
        """
        return Runner(self.wiring(), clock, presence=Presence(self.outbox.holder), **options)

    def first_run(self) -> bool:
        """Tell whether no pass has ever read this config's mailbox."""
        with self.store.transaction() as session:
            return get_mailbox_state(session, self.settings.imap.folder) is None

    def replay(self, raw: RawMail, now: datetime) -> Handled:
        """Process one message from a file; the same bytes are processed only once."""
        uid = int(digest_of(raw)[:15], 16)
        return self.service.handle(Incoming("replay", 0, uid, raw), now)

    def close(self) -> None:
        """Close the store's connections."""
        self.store.close()


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
    held = HeldOpenings(settings, core, store, composer, archive)
    scheduler = Scheduler(settings, core, store, composer, held)
    requests = Requests(store, core, settings)
    return Runtime(settings, core, store, service, outbox, requests, scheduler, tokens)


@contextmanager
def one_shot(settings: Settings) -> Iterator[Runtime]:
    """Build the runtime of one command that sends mail, and end it cleanly.

    Its outbox registered a claim holder when it flushed: the holder leaves (its row is
    deleted, its claims released) before the store closes, so no other daemon ever sees
    a finished command as a daemon that is gone.
    """
    rt = build_runtime(settings)
    try:
        yield rt
    finally:
        try:
            rt.outbox.holder.leave()
        finally:
            rt.close()


def pass_once(settings: Settings, now: datetime) -> tuple[PassReport, bool]:
    """Make one full pass at ``now``; return its report and whether it was the first ever."""
    with one_shot(settings) as rt:
        first = rt.first_run()
        return rt.runner(lambda: now).run_once(), first


def replay_files(
    settings: Settings,
    files: list[str],
    now: datetime,
    each: Callable[[str, Handled], None],
) -> FlushReport:
    """Process each .eml file as if it had arrived (``each`` is told), then flush the outbox."""
    with one_shot(settings) as rt:
        for path in files:
            raw = read_file(Path(path), rt.service.archive.scratch)
            try:
                each(path, rt.replay(raw, now))
            finally:
                if isinstance(raw, Spooled):
                    raw.discard()
        return rt.outbox.flush(now)


def cancel_request(
    settings: Settings, code: str, reason: str, now: datetime
) -> tuple[str, FlushReport]:
    """Withdraw request ``code`` as the operator, tell everyone, and flush the outbox."""
    with one_shot(settings) as rt:
        cancelled = cancel_by_operator(
            rt.service.store, rt.service.tools, code.upper(), reason, now
        )
        return cancelled, rt.outbox.flush(now)


class Daemon:
    """The lifecycle of `mailflow run`: runtime, runner, heartbeat, metrics, reloads.

    ``settings`` reads the config file as it is now (on each SIGHUP; at start too unless
    ``loaded`` is given); ``check`` lists its problems before a reload takes it.
    """

    def __init__(
        self,
        settings: Callable[[], Settings],
        check: Callable[[], list[str]],
        *,
        env: Mapping[str, str],
        start: datetime | None,
        loaded: Settings | None = None,
        on_settings: Callable[[Settings], None] = lambda _s: None,
    ) -> None:
        self._settings, self._check, self._on_settings = settings, check, on_settings
        first = loaded if loaded is not None else settings()
        on_settings(first)  # before build_runtime, whose adapters log already
        self.runtime = build_runtime(first)
        self.first_run = self.runtime.first_run()
        self.notifier = Notifier(env)
        imap = first.imap
        name = status_name(imap.username, imap.host, imap.folder)
        self.heartbeat = Heartbeat(self.runtime.store, name, WAIT_SECONDS)
        self.runner = self.runtime.runner(
            offset_clock(start), notifier=self.notifier, heartbeat=self.heartbeat
        )
        self.runner.wait_seconds = WAIT_SECONDS
        self.runner.on_reload = self._reload

    def run(self) -> None:
        """Watch the mailbox until SIGTERM; serve metrics when the config asks for them."""
        self.runner.install_signal_handlers()
        metrics = self._metrics()
        log.info("mailflow %s watching %s", __version__, self.runtime.settings.imap.folder)
        try:
            self.runner.run_forever()
        finally:
            self.notifier.close()
            if metrics is not None:
                metrics.stop()
            self.runtime.close()

    def _metrics(self) -> MetricsServer | None:
        settings = self.runtime.settings
        if not settings.metrics.enabled:
            return None
        runner = self.runner
        collector = StoreCollector(lambda: runner.store, self.heartbeat.name, runner.clock)
        try:
            return MetricsServer(settings.metrics.listen, collector)
        except OSError as exc:
            raise MailflowError(
                f"metrics.listen {settings.metrics.listen}: no se puede escuchar ({exc.strerror})"
            ) from None

    def _reload(self, runner: Runner) -> None:
        """Apply SIGHUP: a new runtime from the file as it is now, or keep the old one."""
        new = self._reloaded()
        if new is None:
            return
        self._on_settings(new.settings)
        runner.rewire(new.wiring(previous=runner.source.tokens))
        self.heartbeat.store = new.store
        self.runtime.close()
        self.runtime = new
        log.info("configuration reloaded from %s", new.settings.source)

    def _reloaded(self) -> Runtime | None:
        """Build a runtime from the config file as it is now; None (logged) when unusable."""
        problems = self._check()
        if problems:
            log.error(
                "reload refused, still running the previous configuration: %s",
                "; ".join(problems),
            )
            return None
        try:
            return build_runtime(self._settings())
        except Exception as exc:  # the running daemon must survive any broken new config
            log.error("reload failed, still running the previous configuration: %s", exc)
            return None


def reload_check(path: Path, env: Mapping[str, str]) -> Callable[[], list[str]]:
    """Return the check a reload runs first: every problem of the file, as check-config."""

    def problems() -> list[str]:
        found = check_everything(path, env)
        return [f"{path}: {p}" for p in found] if found else []

    return problems
