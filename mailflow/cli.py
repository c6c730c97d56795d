"""Command line: parse arguments, build the real adapters, run one command.

This is the only module that reads the environment and the real clock; everything it
calls gets them as arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from mailflow import __version__
from mailflow.config import Settings, config_path, load_settings
from mailflow.errors import ConfigError, MailflowError
from mailflow.ops.logs import setup_logging

if TYPE_CHECKING:
    from mailflow.daemon.runner import Runner
    from mailflow.daemon.runtime import Runtime

log = logging.getLogger("mailflow")

EPILOG = """\
Configuration: --config PATH, else $MAILFLOW_CONFIG, else config/mailflow.toml.
Start with `mailflow check-config`; it lists every problem of the file at once.
Documentation: README.md in the source tree."""


@dataclass(frozen=True)
class Invocation:
    """What every command receives: parsed options, environment and the moment to act at."""

    args: argparse.Namespace
    env: Mapping[str, str]
    now_text: str | None

    def settings(self) -> Settings:
        """Load and validate the configuration named by the options."""
        return load_settings(config_path(self.args.config, self.env), self.env)

    def now(self, zone: ZoneInfo) -> datetime:
        """Return --now (naive values are local time of ``zone``) or the real clock."""
        if self.now_text is None:
            return datetime.now(zone)
        value = datetime.fromisoformat(self.now_text)
        return value.replace(tzinfo=zone) if value.tzinfo is None else value


Command = Callable[[Invocation], int]


def _check_config(inv: Invocation) -> int:
    from mailflow.ops.checks import check_everything

    path = config_path(inv.args.config, inv.env)
    problems = check_everything(path, inv.env)
    if problems:
        print(f"{path}: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"{path}: configuration is valid")
    return 0


def _procedures(inv: Invocation) -> int:
    from mailflow.app.build import procedures_of
    from mailflow.core.procedures import procedures_as_json

    data = procedures_as_json(procedures_of(inv.settings()))
    if inv.args.json:
        json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return 0
    for proc in data:
        print(f"{proc['id']}: {proc['name']} ({len(proc['stages'])} etapas)")
        for stage in proc["stages"]:
            roles = " / ".join(stage.get("roles", [stage["role"]]))
            print(f"  {stage['number']:>2}. {stage['name']}")
            print(f"      rol: {roles}; plazo: {stage['deadline']}")
            print(f"      acciones: {', '.join(stage['actions'])}")
    return 0


def _db_upgrade(inv: Invocation) -> int:
    from mailflow.store.repository import current_revision, upgrade

    settings = inv.settings()
    upgrade(settings.store.url)
    print(f"database at revision {current_revision(settings.store.url)}")
    return 0


def _runtime(inv: Invocation) -> Runtime:
    from mailflow.daemon.runtime import build_runtime

    return build_runtime(inv.settings())


def _run(inv: Invocation) -> int:
    from mailflow.daemon.runner import offset_clock
    from mailflow.daemon.runtime import build_runtime

    settings = inv.settings()
    _apply_logging(inv, settings)  # before build_runtime, whose adapters log already
    rt = build_runtime(settings)
    zone = rt.settings.zone
    start = inv.now(zone) if inv.now_text else None
    if inv.args.once:
        fixed = inv.now(zone)
        runner = rt.runner(lambda: fixed)
        report = runner.run_once()
        summary = ", ".join(f"{k}={v}" for k, v in sorted(report.outcomes.items())) or "none"
        box = report.outbox
        print(
            f"handled {report.handled} message(s) ({summary}); "
            f"outbox: sent {box.sent}, deferred {box.deferred}, failed {box.failed}"
        )
        return 0
    from mailflow.ops.health import Heartbeat, status_name
    from mailflow.ops.sd_notify import Notifier

    notifier = Notifier(inv.env)
    wait = 60.0
    imap = rt.settings.imap
    heartbeat = Heartbeat(rt.store, status_name(imap.username, imap.host, imap.folder), wait)
    runner = rt.runner(offset_clock(start), notifier=notifier, heartbeat=heartbeat)
    runner.wait_seconds = wait
    current = [rt]

    def reload(runner: Runner) -> None:
        new = _reloaded_runtime(inv)
        if new is None:
            return
        _apply_logging(inv, new.settings)
        new.install_into(runner)
        heartbeat.store = new.store
        current[0].store.close()
        current[0] = new
        log.info("configuration reloaded from %s", new.settings.source)

    runner.on_reload = reload
    runner.install_signal_handlers()
    metrics = None
    if settings.metrics.enabled:
        from mailflow.ops.metrics import MetricsServer, StoreCollector

        collector = StoreCollector(lambda: runner.store, heartbeat.name, runner.clock)
        try:
            metrics = MetricsServer(settings.metrics.listen, collector)
        except OSError as exc:
            raise MailflowError(
                f"metrics.listen {settings.metrics.listen}: cannot listen ({exc.strerror})"
            ) from None
    log.info("mailflow %s watching %s", __version__, rt.settings.imap.folder)
    try:
        runner.run_forever()
    finally:
        notifier.close()
        if metrics is not None:
            metrics.stop()
    return 0


def _apply_logging(inv: Invocation, settings: Settings) -> None:
    """Apply [logging] level and format to the daemon (-v and --log-json win)."""
    level = logging.DEBUG if inv.args.verbose else getattr(logging, settings.logging.level)
    json_lines = inv.args.log_json or settings.logging.format == "json"
    setup_logging(level, inv.env, json_lines=json_lines)


def _reloaded_runtime(inv: Invocation) -> Runtime | None:
    """Build a runtime from the config file as it is now; None (logged) when it is unusable."""
    from mailflow.daemon.runtime import build_runtime
    from mailflow.ops.checks import check_everything

    path = config_path(inv.args.config, inv.env)
    problems = check_everything(path, inv.env)
    if problems:
        log.error(
            "reload refused, still running the previous configuration: %s: %s",
            path,
            "; ".join(problems),
        )
        return None
    try:
        return build_runtime(inv.settings())
    except Exception as exc:  # the running daemon must survive any broken new config
        log.error("reload failed, still running the previous configuration: %s", exc)
        return None


def _status(inv: Invocation) -> int:
    from mailflow.ops.health import Limits, Report, check, describe, status_name, wall_clock
    from mailflow.store.repository import Store

    settings = inv.settings()
    # No build_runtime: status must not migrate the store nor need the daemon's rights.
    problem = _store_problem(settings.store.url)
    store = Store.from_url(settings.store.url)
    try:
        imap = settings.imap
        report = (
            Report(None, {}, 0, None, [problem])
            if problem
            else check(
                store,
                status_name(imap.username, imap.host, imap.folder),
                wall=wall_clock(),
                now=inv.now(settings.zone),
                limits=Limits(
                    stale_factor=inv.args.stale_factor,
                    imap_down_seconds=inv.args.max_imap_down,
                    outbox_age_seconds=inv.args.max_outbox_age,
                ),
            )
        )
    finally:
        store.close()
    if inv.args.json:
        json.dump(report.as_json(), sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        print("\n".join(describe(report)))
    return 0 if report.healthy else 1


def _store_problem(url: str) -> str | None:
    """Return why the store cannot be read by `status` (never creating a SQLite file)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from mailflow.store.repository import current_revision, head_revision

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        return f"the store {parsed.database} does not exist: the daemon has never started"
    try:
        revision = current_revision(url)
    except SQLAlchemyError as exc:
        return f"the store cannot be read: {exc}".splitlines()[0]
    if revision != head_revision():
        return (
            f"the store is at migration {revision}, this mailflow expects {head_revision()}: "
            "start the daemon (or run `mailflow db upgrade`)"
        )
    return None


def _db_backup(inv: Invocation) -> int:
    from mailflow.store.backup import backup

    settings = inv.settings()
    print(backup(settings.store.url, Path(inv.args.out)))
    return 0


def _requests_list(inv: Invocation) -> int:
    rt = _runtime(inv)
    rows = rt.requests.summaries(status=inv.args.status)
    if inv.args.json:
        json.dump(rows, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return 0
    if not rows:
        print("no requests")
    for r in rows:
        where = f"{r['status']:<10} etapa {r['stage']:<2} {r['procedure']:<24}"
        print(f"{r['code']}  {where} {r['title']}")
    return 0


def _requests_show(inv: Invocation) -> int:
    rt = _runtime(inv)
    data = rt.requests.show(inv.args.code, inv.now(rt.settings.zone))
    if data is None:
        print(f"error: no request {inv.args.code}; see `mailflow requests list`", file=sys.stderr)
        return 1
    if inv.args.json:
        json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return 0
    stage = data["stage"]
    print(f"{data['code']} — {data['title']}")
    print(f"  procedimiento: {data['procedure']}   estado: {data['status']}")
    print(f"  etapa {stage['number']} ({', '.join(stage.get('roles', [stage['role']]))})")
    print(f"  a cargo de: {', '.join(stage['assignees']) or '-'}   plazo: {stage['due'] or '-'}")
    for h in data["history"]:
        print(f"  {_short(h['at'])}  {h['actor']:<32} {h['action']:<16} etapa {h['stage']}")
    for r in data["refused"]:
        print(f"  refused {_short(r['at'])}  {r['sender']}  {r['action']}: {r['reason']}")
    return 0


def _short(moment: str) -> str:
    """Return an ISO moment as local "2026-12-01 09:30" for people to read."""
    return datetime.fromisoformat(moment).strftime("%Y-%m-%d %H:%M")


def _replay(inv: Invocation) -> int:
    from mailflow.mail.spool import Spooled, read_file

    rt = _runtime(inv)
    now = inv.now(rt.settings.zone)
    for path in inv.args.files:
        raw = read_file(Path(path), rt.service.archive.scratch)
        try:
            handled = rt.replay(raw, now)
        finally:
            if isinstance(raw, Spooled):
                raw.discard()
        print(f"{path}: {handled.outcome} {handled.code or ''} {handled.detail}".rstrip())
    report = rt.outbox.flush(now)
    print(f"outbox: sent {report.sent}, deferred {report.deferred}, failed {report.failed}")
    return 0


def _evidence(inv: Invocation) -> int:
    from mailflow.reports.evidence import export_request

    rt = _runtime(inv)
    settings = rt.settings
    out = Path(inv.args.out)
    with rt.store.transaction() as session:
        files = export_request(
            session,
            rt.service.archive,
            inv.args.code,
            out,
            procedure_of=rt.core.workflow.procedure,
            org_name=settings.organization.name,
            zone=settings.zone,
            templates_dir=settings.paths.report_templates_dir,
            now=inv.now(settings.zone),
        )
    print(f"{out}: {files} archivos; compruébelos con `sha256sum -c MANIFEST.sha256`")
    return 0


def _report_poai(inv: Invocation) -> int:
    from mailflow.reports.poai_files import load_products, write_report

    rt = _runtime(inv)
    out = Path(inv.args.out)
    with rt.store.transaction() as session:
        products = load_products(session, inv.args.year, rt.settings.zone)
    reports = write_report(
        products,
        rt.service.archive,
        rt.settings,
        year=inv.args.year,
        person=inv.args.person,
        out=out,
        now=inv.now(rt.settings.zone),
    )
    for r in reports:
        print(f"{r.person}: {len(r.products)} productos, cumplimiento {r.weighted:.1%}")
    print(f"{out / 'index.html'}, {out / 'products.csv'}")
    return 0


def _archive_verify(inv: Invocation) -> int:
    from mailflow.store.catalog import evidence_gaps, indexed_digests

    rt = _runtime(inv)
    with rt.store.transaction() as session:
        wanted = indexed_digests(session)
        gaps = evidence_gaps(session)
    result = rt.service.archive.verify(wanted)
    for path in result.altered:
        print(f"ALTERADO {path}")
    for sha256 in result.missing:
        print(f"FALTA    {sha256}")
    for gap in gaps:  # a request whose evidence would leave out its opening mail or a file
        print(f"INCOMPLETA {gap}")
    print(
        f"{result.checked} archivos revisados: {len(result.altered)} alterados, "
        f"{len(result.missing)} faltantes, {result.unindexed} sin referencia en la base; "
        f"{len(gaps)} solicitudes con evidencia incompleta"
    )
    return 0 if result.ok and not gaps else 1


def _add_status(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="the daemon's health for monitoring: exit 0 healthy, 1 unhealthy",
        description="Report the daemon's heartbeat, IMAP state, last message, outbox, "
        "overdue stages and last digest. Unhealthy (exit 1): no heartbeat for "
        "STALE_FACTOR x the loop's wait, IMAP down longer than MAX_IMAP_DOWN, or a mail "
        "waiting to be sent longer than MAX_OUTBOX_AGE. See docs/deployment.md.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--stale-factor", type=float, default=3.0, metavar="N")
    p.add_argument("--max-imap-down", type=float, default=300.0, metavar="SECONDS")
    p.add_argument("--max-outbox-age", type=float, default=3600.0, metavar="SECONDS")
    p.set_defaults(func=_status)


def _add_backup(db: Any) -> None:
    q = db.add_parser(
        "backup",
        help="copy the SQLite store consistently, even while the daemon runs",
        description="SQLite: an online backup (sqlite3 backup API) into FILE. PostgreSQL: "
        "use pg_dump; this command says how.",
    )
    q.add_argument("--out", required=True, metavar="FILE", help="the backup file to write")
    q.set_defaults(func=_db_backup)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="mailflow",
        description=(
            "Run the social-network publication procedures of an institution over e-mail: "
            "read requests and replies from a shared mailbox, advance each request through "
            "its procedure, and mail the next responsible person."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mailflow {__version__}")
    parser.add_argument("--config", metavar="PATH", help="configuration file (TOML)")
    parser.add_argument(
        "--now",
        metavar="ISO-8601",
        help="act as if it were this moment (simulation, dry runs, tests); "
        "without an offset it is the institution's local time",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    parser.add_argument(
        "--log-json",
        action="store_true",
        help="log one JSON object per line (time, level, logger, message, request, "
        'message_id, outcome, ...); also [logging] format = "json"',
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "check-config",
        help="validate the configuration, procedures and templates; exit 1 listing every problem",
    )
    p.set_defaults(func=_check_config)

    p = sub.add_parser("procedures", help="list the loaded procedures and their stages")
    p.add_argument("--json", action="store_true", help="print JSON (see DESIGN.md §4)")
    p.set_defaults(func=_procedures)

    p = sub.add_parser(
        "run",
        help="the daemon: watch the mailbox (IMAP IDLE), process mail, send the outbox",
        description="Watch the shared mailbox and run the procedures until SIGTERM.",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="one full pass (fetch and process all new mail, flush the outbox), then exit",
    )
    p.set_defaults(func=_run)

    _add_status(sub)

    p = sub.add_parser("requests", help="list or show requests")
    rq = p.add_subparsers(dest="requests_command", metavar="ACTION", required=True)
    q = rq.add_parser("list", help="every request, newest first")
    q.add_argument("--json", action="store_true", help="print a JSON list")
    q.add_argument("--status", help="only this status (en_curso, publicado, rechazado, …)")
    q.set_defaults(func=_requests_list)
    q = rq.add_parser("show", help="one request with its stage, history and refusals")
    q.add_argument("code", metavar="CODE", help="e.g. RRSS-2026-0042")
    q.add_argument("--json", action="store_true", help="print JSON (see DESIGN.md §4)")
    q.set_defaults(func=_requests_show)

    p = sub.add_parser(
        "replay",
        help="process .eml files as if they had arrived in the mailbox (once each)",
    )
    p.add_argument("files", nargs="+", metavar="FILE.eml")
    p.set_defaults(func=_replay)

    p = sub.add_parser(
        "evidence",
        help="export every mail and file of one request, a timeline and SHA-256 sums (ZIP)",
    )
    p.add_argument("code", metavar="CODE", help="e.g. RRSS-2026-0042")
    p.add_argument("--out", required=True, metavar="FILE.zip", help="the ZIP to write")
    p.set_defaults(func=_evidence)

    p = sub.add_parser("report", help="evidence reports")
    rp = p.add_subparsers(dest="report_command", metavar="REPORT", required=True)
    q = rp.add_parser(
        "poai",
        help="products designed and disseminated per person, POAI function and month",
        description="Write DIR/index.html (printable) and DIR/products.csv for one year.",
    )
    q.add_argument("--year", type=int, required=True, metavar="YYYY")
    q.add_argument("--person", metavar="EMAIL", help="only this person (default: everyone)")
    q.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    q.set_defaults(func=_report_poai)

    p = sub.add_parser("archive", help="archive maintenance")
    ar = p.add_subparsers(dest="archive_command", metavar="ACTION", required=True)
    q = ar.add_parser(
        "verify",
        help="re-hash every archived file; exit 1 if any is altered or missing, or if a "
        "request's evidence lacks its opening mail or one of its files",
    )
    q.set_defaults(func=_archive_verify)

    p = sub.add_parser("db", help="database maintenance")
    db = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    q = db.add_parser("upgrade", help="apply pending migrations (also done at every start)")
    q.set_defaults(func=_db_upgrade)
    _add_backup(db)
    return parser


def _validate_now(parser: argparse.ArgumentParser, text: str | None) -> None:
    if text is None:
        return
    try:
        datetime.fromisoformat(text)
    except ValueError:
        parser.error(f"--now {text!r} is not an ISO-8601 moment, e.g. 2026-12-01T09:30")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line and exit with its status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _validate_now(parser, args.now)
    setup_logging(
        logging.DEBUG if args.verbose else logging.INFO, os.environ, json_lines=args.log_json
    )
    inv = Invocation(args=args, env=os.environ, now_text=args.now)
    try:
        status = args.func(inv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("Run `mailflow check-config` after fixing the file.", file=sys.stderr)
        status = 1
    except MailflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    except BrokenPipeError:
        # `mailflow procedures | head`: the reader left; that is not an error of ours.
        sys.stderr.close()
        status = 0
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    main()
