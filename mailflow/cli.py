"""Command line: arguments → one call into :mod:`mailflow.daemon.runtime` → Spanish output.

This is the only module that reads the environment and the real clock; everything it
calls gets them as arguments. It builds no adapter: :data:`COMMANDS` says what each
command needs (:class:`~mailflow.daemon.needs.Needs`), and the runtime builds that and
nothing more. The runtime is imported only when a command runs (it loads every adapter),
so ``--help`` stays fast. Flags and JSON keys are English and stable; everything else a
person reads is Spanish.

To add a command: write ``_handler(inv) -> int`` and add one :class:`Command` row; a
command that only reads takes ``Needs.READ`` and never sees a mail secret.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from mailflow import __version__
from mailflow.config import Settings, config_path
from mailflow.daemon.needs import Needs
from mailflow.errors import ConfigError, MailflowError
from mailflow.ops.logs import setup_logging

log = logging.getLogger("mailflow")

EPILOG = """\
Configuración: --config RUTA, si no $MAILFLOW_CONFIG, si no config/mailflow.toml.
Empiece con `mailflow check-config`: lista todos los problemas del archivo a la vez.
Los comandos de consulta (procedures, requests list/show, explain, evidence, report,
archive verify, status) no necesitan los secretos del correo.
Documentación: README.md y docs/ (docs/design.md: procedimientos, protocolo, comandos)."""


# -- arguments in Spanish -----------------------------------------------------------------

# argparse's own messages, as it formats them, and how a person reads them here.
_ARGPARSE_MESSAGES = (
    (r"the following arguments are required: (.*)", r"faltan argumentos obligatorios: \1"),
    (r"argument (.*?): invalid choice: (.*) \(choose from (.*)\)", r"\1: \2 no existe; use \3"),
    (r"unrecognized arguments: (.*)", r"argumentos no reconocidos: \1"),
    (r"argument (.*?): expected one argument", r"\1 necesita un valor"),
    (r"argument (.*?): expected at least one argument", r"\1 necesita al menos un valor"),
    (r"argument (.*?): invalid \w+ value: (.*)", r"\1: \2 no es un valor válido"),
    (r"ambiguous option: (.*) could match (.*)", r"opción ambigua: \1 puede ser \2"),
)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Print "uso:" instead of "usage:"."""

    def add_usage(
        self,
        usage: str | None,
        actions: Any,
        groups: Any,
        prefix: str | None = None,
    ) -> None:
        super().add_usage(usage, actions, groups, "uso: " if prefix is None else prefix)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose help and errors are Spanish."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["add_help"] = False
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)
        # argparse names its two groups in English and offers no option to rename them.
        self._positionals.title = "argumentos"
        self._optionals.title = "opciones"
        self.add_argument("-h", "--help", action="help", help="muestra esta ayuda y termina")

    def error(self, message: str) -> NoReturn:
        """Print the usage and the error in Spanish; exit 2 as argparse does."""
        for english, spanish in _ARGPARSE_MESSAGES:
            message = re.sub(english, spanish, message)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


# -- what every command receives ----------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """What every command receives: parsed options, environment and the moment to act at."""

    args: argparse.Namespace
    env: Mapping[str, str]
    now_text: str | None
    command: Command

    @property
    def path(self) -> Path:
        """Return the config file named by the options."""
        return config_path(self.args.config, self.env)

    def settings(self) -> Settings:
        """Load the configuration as the command needs it (mail secrets only when it does)."""
        from mailflow.daemon.runtime import load

        return load(self.path, self.env, self.command.needs)

    def now(self, zone: ZoneInfo) -> datetime:
        """Return --now (naive values are local time of ``zone``) or the real clock."""
        if self.now_text is None:
            return datetime.now(zone)
        value = datetime.fromisoformat(self.now_text)
        return value.replace(tzinfo=zone) if value.tzinfo is None else value


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
    print()


# -- the commands -------------------------------------------------------------------------


def _check_config(inv: Invocation) -> int:
    from mailflow.app.views import plural
    from mailflow.daemon.runtime import check_config

    path = inv.path
    checked = check_config(path, inv.env, live=inv.args.live)
    for line in checked.found:
        print(line)
    for warning in checked.warnings:
        print(f"aviso: {warning}", file=sys.stderr)
    if checked.problems:
        what = plural(len(checked.problems), "problema", "problemas")
        print(f"{path}: {what}:", file=sys.stderr)
        for problem in checked.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"{path}: la configuración es válida")
    return 0


def _procedures(inv: Invocation) -> int:
    from mailflow.app.build import directory_of
    from mailflow.app.views import procedure_lines
    from mailflow.core.procedures import procedures_as_json
    from mailflow.daemon.runtime import procedures

    settings = inv.settings()
    loaded = procedures(settings)
    if inv.args.json:
        _print_json(procedures_as_json(loaded))
        return 0
    directory = directory_of(settings)
    print("\n\n".join("\n".join(procedure_lines(p, directory)) for p in loaded.values()))
    return 0


def _run(inv: Invocation) -> int:
    from mailflow.daemon import runtime

    settings = inv.settings()
    _apply_logging(inv, settings)  # before the runtime, whose adapters log already
    zone = settings.zone
    if inv.args.once:
        report, first = runtime.pass_once(settings, inv.now(zone))
        if first:
            print(FIRST_RUN)
        outcomes = sorted(report.outcomes.items())
        summary = ", ".join(f"{OUTCOMES.get(k, k)}: {v}" for k, v in outcomes) or "ninguno"
        handled = "correo leído" if report.handled == 1 else "correos leídos"
        print(f"{report.handled} {handled} ({summary}); {_outbox_words(report.outbox)}")
        return 0
    daemon = runtime.Daemon(
        inv.settings,
        runtime.reload_check(inv.path, inv.env),
        env=inv.env,
        start=inv.now(zone) if inv.now_text else None,
        loaded=settings,
        on_settings=lambda new: _apply_logging(inv, new),
    )
    if daemon.first_run:
        print(FIRST_RUN, flush=True)
    daemon.run()
    return 0


# Printed the first time a mailbox is read: what people sharing it must not do.
FIRST_RUN = """\
mailflow lee este buzón por primera vez. Avise a quienes lo comparten: no muevan ni borren
correos del buzón compartido (ni de su carpeta de entrada). Un correo que desaparece antes de
que mailflow lo lea nunca se procesa; mailflow lo cuenta, lo muestra en `mailflow status` y
lo informa una vez al día (docs/deployment.md, «Correos que desaparecen»)."""


# What became of a message (the ledger's outcome), in words.
OUTCOMES = {
    "processed": "procesado",
    "duplicate": "repetido",
    "seen": "ya visto",
    "auto_reply": "automático, archivado",
    "format_error": "no entendido, se respondió con ayuda",
    "unauthorized": "no autorizado",
    "unknown_sender": "remitente desconocido",
    "quarantined": "en cuarentena",
}


def _outbox_words(report: Any) -> str:
    return f"salida: enviados {report.sent}, diferidos {report.deferred}, fallidos {report.failed}"


def _apply_logging(inv: Invocation, settings: Settings) -> None:
    """Apply [logging] level and format to the daemon (-v and --log-json win)."""
    level = logging.DEBUG if inv.args.verbose else getattr(logging, settings.logging.level)
    json_lines = inv.args.log_json or settings.logging.format == "json"
    setup_logging(level, inv.env, json_lines=json_lines)


def _status(inv: Invocation) -> int:
    from mailflow.daemon.runtime import health
    from mailflow.ops.health import Limits, describe

    settings = inv.settings()
    limits = Limits(
        stale_factor=inv.args.stale_factor,
        imap_down_seconds=inv.args.max_imap_down,
        outbox_age_seconds=inv.args.max_outbox_age,
    )
    report = health(settings, inv.now(settings.zone), limits)
    if inv.args.json:
        _print_json(report.as_json())
    else:
        print("\n".join(describe(report)))
    return 0 if report.healthy else 1


def _requests_list(inv: Invocation) -> int:
    from mailflow.core.names import status_word
    from mailflow.daemon.runtime import reader

    settings = inv.settings()
    with reader(settings) as opened:
        rows = opened.requests.summaries(status=inv.args.status)
        names = {p.id: p.name for p in opened.core.procedures.values()}
    if inv.args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no hay solicitudes")
    for r in rows:
        status = status_word(r["status"])
        where = f"{status:<10} etapa {r['stage']:<2} {names.get(r['procedure'], r['procedure'])}"
        print(f"{r['code']}  {where}: {r['title']}")
    return 0


def _requests_show(inv: Invocation) -> int:
    from mailflow.app.views import request_lines
    from mailflow.daemon.runtime import reader

    settings = inv.settings()
    with reader(settings) as opened:
        data = opened.requests.show(inv.args.code, inv.now(settings.zone))
        core = opened.core
    if data is None:
        print(
            f"error: no existe la solicitud {inv.args.code}; vea `mailflow requests list`",
            file=sys.stderr,
        )
        return 1
    if inv.args.json:
        _print_json(data)
        return 0
    procedure = core.procedures.get(data["procedure"])
    print("\n".join(request_lines(data, procedure, core.directory, settings.zone)))
    return 0


def _requests_cancel(inv: Invocation) -> int:
    from mailflow.daemon.runtime import cancel_request

    settings = inv.settings()
    code, report = cancel_request(settings, inv.args.code, inv.args.reason, inv.now(settings.zone))
    print(f"{code}: anulada por el operador; se avisó al solicitante y a quien tenía la etapa")
    print(_outbox_words(report))
    return 0


def _replay(inv: Invocation) -> int:
    from mailflow.daemon.runtime import replay_files

    settings = inv.settings()

    def told(path: str, handled: Any) -> None:
        # The outcome in words; its technical detail is in the log line of the message.
        outcome = OUTCOMES.get(handled.outcome, handled.outcome)
        print(f"{path}: {outcome} {handled.code or ''}".rstrip())

    report = replay_files(settings, inv.args.files, inv.now(settings.zone), told)
    print(_outbox_words(report))
    return 0


def _explain(inv: Invocation) -> int:
    from mailflow.app.explain import as_text, explain, load_context

    context = load_context(inv.path, inv.env)
    today = inv.now(ZoneInfo(context.timezone)).date()
    status = 0
    for name in inv.args.files:
        try:
            raw = Path(name).read_bytes()
        except OSError as exc:
            print(f"error: {name}: no se puede leer ({exc.strerror})", file=sys.stderr)
            status = 1
            continue
        explanation = explain(name, raw, context, today)
        if inv.args.json:
            print(json.dumps(explanation.as_json(), ensure_ascii=False))
        else:
            print(as_text(explanation))
    return status


def _evidence(inv: Invocation) -> int:
    from mailflow.daemon.runtime import reader

    settings = inv.settings()
    out = Path(inv.args.out)
    with reader(settings) as opened:
        code = inv.args.code.upper()
        files = opened.evidence(code, out, inv.now(settings.zone))
    print(f"{out}: {files} archivos. Para comprobar que ninguno cambió:")
    print(f"  unzip {out} && cd {code} && sha256sum -c MANIFEST.sha256")
    return 0


def _report_poai(inv: Invocation) -> int:
    from mailflow.daemon.runtime import reader

    settings = inv.settings()
    out = Path(inv.args.out)
    with reader(settings) as opened:
        reports = opened.poai(inv.args.year, inv.args.person, out, inv.now(settings.zone))
    for r in reports:
        count = len(r.products)
        print(f"{r.person}: {count} {'producto' if count == 1 else 'productos'}, "
              f"cumplimiento {r.weighted:.1%}")  # fmt: skip
    print(f"{out / 'index.html'}, {out / 'products.csv'}")
    return 0


def _archive_verify(inv: Invocation) -> int:
    from mailflow.daemon.runtime import reader

    with reader(inv.settings()) as opened:
        result, gaps = opened.verify_archive()
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


def _db_upgrade(inv: Invocation) -> int:
    from mailflow.daemon.runtime import upgrade_store

    print(f"base de datos en la migración {upgrade_store(inv.settings())}")
    return 0


def _db_backup(inv: Invocation) -> int:
    from mailflow.daemon.runtime import backup_store

    print(backup_store(inv.settings(), Path(inv.args.out)))
    return 0


# -- the table of commands ----------------------------------------------------------------


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="imprime JSON (docs/design.md §7)")


def _no_arguments(_p: argparse.ArgumentParser) -> None:
    return None


def _check_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--live",
        action="store_true",
        help="además, conecta a IMAP y SMTP, dice qué encontró y revisa "
        "[security] trusted_authserv_id en los últimos correos del buzón",
    )


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--once",
        action="store_true",
        help="una pasada completa (leer y procesar el correo nuevo, tareas programadas, "
        "enviar la salida) y termina",
    )


def _status_arguments(p: argparse.ArgumentParser) -> None:
    _json_flag(p)
    p.add_argument("--stale-factor", type=float, default=3.0, metavar="N")
    p.add_argument("--max-imap-down", type=float, default=300.0, metavar="SEGUNDOS")
    p.add_argument("--max-outbox-age", type=float, default=3600.0, metavar="SEGUNDOS")


def _list_arguments(p: argparse.ArgumentParser) -> None:
    _json_flag(p)
    p.add_argument("--status", help="solo este estado (en_curso, publicado, rechazado, …)")


def _code_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("code", metavar="CÓDIGO", help="p. ej. RRSS-2026-0042")


def _show_arguments(p: argparse.ArgumentParser) -> None:
    _code_argument(p)
    _json_flag(p)


def _cancel_arguments(p: argparse.ArgumentParser) -> None:
    _code_argument(p)
    p.add_argument(
        "--reason", required=True, metavar="MOTIVO", help="el motivo, que se comunica a todos"
    )


def _replay_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="ARCHIVO.eml")


def _explain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="ARCHIVO.eml")
    p.add_argument("--json", action="store_true", help="un objeto JSON por correo y por línea")


def _evidence_arguments(p: argparse.ArgumentParser) -> None:
    _code_argument(p)
    p.add_argument("--out", required=True, metavar="ARCHIVO.zip", help="el ZIP a escribir")


def _poai_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--year", type=int, required=True, metavar="AAAA")
    p.add_argument("--person", metavar="CORREO", help="solo esta persona (si no, todas)")
    p.add_argument("--out", required=True, metavar="CARPETA", help="carpeta donde escribir")


def _backup_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="ARCHIVO", help="la copia a escribir")


@dataclass(frozen=True)
class Command:
    """One command: its words, what it may load, its handler and its help."""

    words: str
    needs: Needs
    run: Callable[[Invocation], int]
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    description: str | None = None


# The words of the commands with subcommands, and their help.
GROUPS = {
    "requests": "consultar o anular solicitudes",
    "report": "informes de evidencia",
    "archive": "mantenimiento del archivo",
    "db": "mantenimiento de la base de datos",
}

COMMANDS: tuple[Command, ...] = (
    Command(
        "check-config",
        Needs.CHECK,
        _check_config,
        "valida configuración, procedimientos y plantillas; sale con 1 y lista cada problema",
        _check_config_arguments,
    ),
    Command(
        "procedures",
        Needs.READ,
        _procedures,
        "los procedimientos cargados y sus etapas",
        _json_flag,
    ),
    Command(
        "run",
        Needs.MAIL,
        _run,
        "el daemon: vigila el buzón (IMAP IDLE), procesa el correo, envía la salida",
        _run_arguments,
        "Vigila el buzón compartido y lleva los procedimientos hasta recibir SIGTERM.",
    ),
    Command(
        "status",
        Needs.READ,
        _status,
        "la salud del daemon para el monitoreo: sale con 0 si está sano, 1 si no",
        _status_arguments,
        "Informa del latido del daemon, el estado de IMAP, el último mensaje, la salida, "
        "las etapas vencidas, el último resumen y los correos que desaparecieron del buzón. "
        "No está sano (sale con 1) cuando no hay latido desde STALE_FACTOR veces la espera "
        "del bucle, IMAP lleva caído más de MAX_IMAP_DOWN segundos o un correo espera salir "
        "más de MAX_OUTBOX_AGE segundos. Vea docs/deployment.md.",
    ),
    Command(
        "requests list",
        Needs.READ,
        _requests_list,
        "todas las solicitudes, la más reciente primero",
        _list_arguments,
    ),
    Command(
        "requests show",
        Needs.READ,
        _requests_show,
        "una solicitud con su etapa, historial e intentos rechazados",
        _show_arguments,
    ),
    Command(
        "requests cancel",
        Needs.MAIL,
        _requests_cancel,
        "anula una solicitud en curso como operador (se avisa al solicitante)",
        _cancel_arguments,
        "Anula la solicitud CÓDIGO (estado cancelado), registrado como el operador, y avisa "
        "al solicitante y a quien tiene la etapa, como un ANULO por correo.",
    ),
    Command(
        "replay",
        Needs.MAIL,
        _replay,
        "procesa archivos .eml como si hubieran llegado al buzón (una vez cada uno)",
        _replay_arguments,
    ),
    Command(
        "explain",
        Needs.READ,
        _explain,
        "explica cómo se lee cada correo guardado (.eml), sin cambiar ni enviar nada",
        _explain_arguments,
        "Dice de cada correo su tipo (request, reply, note, automatic, bulk, encrypted, "
        "unreadable); de una solicitud, su procedimiento, campos y problemas; de una "
        "respuesta, la solicitud y cómo se encontró, el texto nuevo, la acción, su argumento "
        "y enlaces, o el motivo cuando no hay acción. No cambia nada, no envía nada y no "
        "necesita los secretos de correo: sin ellos, el token se informa como no verificado.",
    ),
    Command(
        "evidence",
        Needs.READ,
        _evidence,
        "exporta cada correo y archivo de una solicitud, su cronología y sumas SHA-256 (ZIP)",
        _evidence_arguments,
    ),
    Command(
        "report poai",
        Needs.READ,
        _report_poai,
        "productos diseñados y difundidos por persona, función del POAI y mes",
        _poai_arguments,
        "Escribe CARPETA/index.html (imprimible) y CARPETA/products.csv de un año.",
    ),
    Command(
        "archive verify",
        Needs.READ,
        _archive_verify,
        "vuelve a calcular el SHA-256 de cada archivo; sale con 1 si falta o cambió alguno, "
        "o si la evidencia de una solicitud no tiene su correo de apertura o uno de sus archivos",
    ),
    Command(
        "db upgrade",
        Needs.STORE,
        _db_upgrade,
        "aplica las migraciones pendientes (también se hace en cada arranque)",
    ),
    Command(
        "db backup",
        Needs.STORE,
        _db_backup,
        "copia coherente de la base SQLite, aun con el daemon en marcha",
        _backup_arguments,
        "SQLite: una copia en caliente (API de backup de sqlite3) en ARCHIVO. PostgreSQL: "
        "use pg_dump; este comando dice cómo.",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every command of :data:`COMMANDS`."""
    parser = _Parser(
        prog="mailflow",
        description=(
            "Lleva los procedimientos de publicación en redes sociales de una institución por "
            "correo electrónico: lee solicitudes y respuestas de un buzón compartido, avanza "
            "cada solicitud por su procedimiento y escribe a la siguiente persona responsable."
        ),
        epilog=EPILOG,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"mailflow {__version__}",
        help="muestra la versión y termina",
    )
    parser.add_argument("--config", metavar="RUTA", help="archivo de configuración (TOML)")
    parser.add_argument(
        "--now",
        metavar="ISO-8601",
        help="actúa como si fuera este momento (simulación, pruebas); sin zona horaria es "
        "la hora local de la institución",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="registra más detalles")
    parser.add_argument(
        "--log-json",
        action="store_true",
        help="registro en JSON, un objeto por línea (time, level, logger, message, request, "
        'message_id, outcome, …); también [logging] format = "json"',
    )
    top = parser.add_subparsers(dest="command", metavar="COMANDO", required=True)
    groups: dict[str, Any] = {}
    for command in COMMANDS:
        head, _, tail = command.words.partition(" ")
        where = top
        if tail:
            if head not in groups:
                group = top.add_parser(head, help=GROUPS[head], description=GROUPS[head])
                groups[head] = group.add_subparsers(
                    dest=f"{head}_command", metavar="ACCIÓN", required=True
                )
            where = groups[head]
        p = where.add_parser(
            tail or head, help=command.help, description=command.description or command.help
        )
        command.arguments(p)
        p.set_defaults(command_spec=command)
    return parser


def _validate_now(parser: argparse.ArgumentParser, text: str | None) -> None:
    if text is None:
        return
    try:
        datetime.fromisoformat(text)
    except ValueError:
        parser.error(f"--now {text!r} no es un momento ISO-8601, p. ej. 2026-12-01T09:30")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line and exit with its status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _validate_now(parser, args.now)
    setup_logging(
        logging.DEBUG if args.verbose else logging.INFO, os.environ, json_lines=args.log_json
    )
    command: Command = args.command_spec
    inv = Invocation(args=args, env=os.environ, now_text=args.now, command=command)
    try:
        status = command.run(inv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if command.needs is Needs.MAIL:
            print(
                f"`mailflow {command.words}` necesita los secretos del correo (contraseñas de "
                "IMAP y SMTP, clave de los tokens); los comandos de consulta no.",
                file=sys.stderr,
            )
        print("Corrija el archivo y compruébelo con `mailflow check-config`.", file=sys.stderr)
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
