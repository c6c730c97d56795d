"""Play one request through all nine stages of `informacion_especifica` by real mail.

`make demo` runs this. It starts a throwaway Dovecot (IMAP + LMTP) and an SMTP relay on
127.0.0.1 (the test bed of tests/testbed/), writes a config for a fictional institution,
starts the real daemon (`mailflow run`, IMAP IDLE) as a subprocess, and then acts as the
people: each one waits for the daemon's mail in their own inbox and answers it the way
their mail client would. Every mail that travels is printed; at the end the request must
be `publicado`. Everything is stopped and removed afterwards, even on Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from testbed.dovecot import Dovecot  # noqa: E402
from testbed.mail import imap, parse  # noqa: E402
from testbed.scratch import KEEP_ENV, tail  # noqa: E402
from testbed.site import TZ, Site, code_of  # noqa: E402
from testbed.smtp import SmtpRelay  # noqa: E402

DOMAIN = "demo.ejemplo.gob.bo"
PROCEDURE = "informacion_especifica"
POST_URL = "https://www.facebook.com/ejemplo/posts/123"
Matcher = Callable[[EmailMessage], bool]
STEP_TIMEOUT = 30.0  # seconds for one step's mail to arrive; about 1 s is normal
POLL = 0.05
SETTLE = 0.5  # quiet time on the relay that ends a step's burst of mail
HISTORY = ["ENTREGO", "APRUEBO", "DERIVO", "ENTREGO", "APRUEBO", "ENTREGO", "APRUEBO",
           "DERIVO", "PUBLICADO"]  # fmt: skip


class DemoError(Exception):
    """The demo saw something other than the expected story; the message says what."""


@dataclass(frozen=True)
class Step:
    """One stage: who acts, what they write, and whose new mail shows the daemon moved on."""

    stage: int
    title: str
    actor: str  # local part; stage 1 sends a new request, the others reply
    answer: str
    style: str  # how the actor's mail client quotes (see testbed.site.QUOTERS)
    next_person: str  # who must then receive the next stage's "Acción requerida"


def story(today: dt.date) -> list[Step]:
    """Return the nine steps of the demo, with dates counted from today."""

    def day(n: int) -> str:
        return (today + dt.timedelta(days=n)).strftime("%d/%m/%Y")

    request = (
        "Buenos días,\n\nTipo: Publicación de información específica\n"
        "Título: Feria de servicios digitales\n"
        "Objetivo: Difundir la feria de servicios digitales de la Agencia.\n"
        "Resumen: La feria se realizará en el atrio de la Agencia con stands de cada unidad.\n"
        f"Publicar desde: {day(14)}\nPublicar hasta: {day(24)}\nUnidad: UTI\n\n"
        "Saludos,\nAnalista UTI\n"
    )
    return [
        Step(1, "La unidad solicitante envía el requerimiento", "analista", request, "",
             "directora"),
        Step(2, "Dirección Ejecutiva aprueba y deriva a la UGS", "directora", "APRUEBO",
             "gmail", "jefe.ugs"),
        Step(3, "Jefatura UGS deriva al profesional", "jefe.ugs", "DERIVO al profesional.",
             "outlook", "promocion"),
        Step(4, "El profesional entrega la propuesta y el cronograma", "promocion",
             f"ENTREGO la propuesta.\nCronograma: material {day(7)}; publicación {day(14)}",
             "thunderbird", "analista"),
        Step(5, "La unidad solicitante autoriza la elaboración", "analista", "Aprobado.",
             "iphone", "disenio"),
        Step(6, "El equipo de diseño entrega el material", "disenio",
             "ENTREGO el material final.", "gmail", "analista"),
        Step(7, "La unidad solicitante aprueba el material", "analista", "APRUEBO",
             "outlook", "jefe.ugs"),
        Step(8, "Jefatura UGS deriva al administrador de redes", "jefe.ugs", "DERIVO",
             "gmail", "community"),
        # The last mail is the requester's confirmation, with the post's address.
        Step(9, "El administrador publica", "community", f"PUBLICADO {POST_URL}",
             "thunderbird", "analista"),
    ]  # fmt: skip


def awaited(step: Step, code: str, stage_names: dict[int, str]) -> Matcher:
    """Return the test for the mail that shows the daemon handled ``step``.

    It is the next stage's "Acción requerida", addressed (To, not Cc: the head of the UGS
    is copied on some stages) to the next person; after the last stage, the confirmation.
    """
    address = f"{step.next_person}@{DOMAIN}"
    name = stage_names.get(step.stage + 1)

    def match(message: EmailMessage) -> bool:
        subject, to = str(message["Subject"]), str(message["To"]).lower()
        if code not in subject or address not in to:
            return False
        if name is None:
            return "Publicación confirmada" in subject and POST_URL in text_of(message)
        return "Acción requerida" in subject and name in subject

    return match


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    return part.get_content() if part is not None else ""


class Printer:
    """Print what a person would see; quiet mode keeps only headings and results."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def say(self, text: str = "", *, always: bool = False) -> None:
        if always or not self.quiet:
            print(text, flush=True)

    def heading(self, step: Step) -> None:
        self.say(f"\n── Etapa {step.stage} · {step.title} ──", always=True)

    def mails(self, messages: list[EmailMessage]) -> None:
        """Print each mail once: the daemon sends one copy per recipient, all alike."""
        if self.quiet:
            return
        looks = [_looks(m) for m in messages]
        copies = Counter(looks)
        for look in dict.fromkeys(looks):  # in order of sending, each look once
            sender, to, cc, subject, *lines = look
            print(f"  De:     {sender}")
            print(f"  Para:   {to}")
            if cc != "None":
                print(f"  Cc:     {cc}")
            print(f"  Asunto: {subject}")
            for line in lines:
                print(f"  │ {line}")
            if copies[look] > 1:
                print(f"  ({copies[look]} copias, una por destinatario)")
            print(flush=True)


def _looks(message: EmailMessage) -> tuple[str, ...]:
    """Return what a person sees of a mail: From, To, Cc, Subject and the first lines."""
    heads = (message["From"], message["To"], message["Cc"], message["Subject"])
    return (*map(str, heads), *first_lines(message))


def first_lines(message: EmailMessage, count: int = 4, width: int = 92) -> list[str]:
    """Return the first meaningful lines of the text part: no greeting, no quoted original."""
    lines: list[str] = []
    for raw in text_of(message).splitlines():
        line = raw.strip()
        if _starts_quote(line):
            break
        greeting = not lines and len(line.split()) <= 2 and line.endswith((":", ","))
        if not line or greeting:
            continue
        lines.append(line if len(line) <= width else line[: width - 1] + "…")
        if len(lines) == count:
            break
    return lines


def _starts_quote(line: str) -> bool:
    """Tell whether a line opens the quoted original of a reply (any client's style)."""
    return (
        line.startswith((">", "____", "Enviado desde mi"))
        or line.endswith("escribió:")
        or line == "--"
    )


class Inboxes:
    """Watch people's real mailboxes (IMAP) and the relay's log of every mail sent."""

    def __init__(self, site: Site, relay: SmtpRelay, daemon: Daemon) -> None:
        self.site, self.relay, self.daemon = site, relay, daemon
        self.last_uid: dict[str, int] = {}
        self.printed = 0

    def wait_new(self, person: str, match: Matcher) -> EmailMessage:
        """Wait for a mail not seen before in person's INBOX that matches; return it."""
        address = self.site.addr(person)
        deadline = time.monotonic() + STEP_TIMEOUT
        with imap(self.site.dovecot, address) as client:
            while True:
                self.daemon.check_alive()
                client.select_folder("INBOX", readonly=True)
                uids = [u for u in client.search("ALL") if u > self.last_uid.get(person, 0)]
                for uid, data in sorted(client.fetch(uids, ["BODY.PEEK[]"]).items()):
                    self.last_uid[person] = uid
                    message = parse(data[b"BODY[]"])
                    if match(message):
                        return message
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"no new mail for {address} after {STEP_TIMEOUT:.0f} s "
                        "(the daemon did not answer; see its log below)"
                    )
                time.sleep(POLL)

    def settle(self) -> list[EmailMessage]:
        """Wait until the relay is quiet, then return the mails sent since the last call."""
        count, quiet_since = len(self.relay.accepted), time.monotonic()
        while time.monotonic() - quiet_since < SETTLE:
            time.sleep(POLL)
            if (now := len(self.relay.accepted)) != count:
                count, quiet_since = now, time.monotonic()
        fresh = self.relay.accepted[self.printed :]
        self.printed += len(fresh)
        return [parse(m.raw) for m in fresh]


class Daemon:
    """The real `mailflow run` as a subprocess, its log in a file."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config, self.log_path = config, log_path
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, *args: str) -> list[str]:
        mailflow = Path(sys.executable).parent / "mailflow"
        if not mailflow.exists():
            mailflow = REPO / ".venv" / "bin" / "mailflow"
        return [str(mailflow), "--config", str(self.config), *args]

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
        with self.log_path.open("wb") as log:
            # Own session: a Ctrl-C on the terminal reaches us, and we stop it with SIGTERM.
            self.process = subprocess.Popen(  # noqa: S603
                self.command("run"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + STEP_TIMEOUT
        while "watching" not in self.log_path.read_text(errors="replace"):
            self.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(f"the daemon did not start within {STEP_TIMEOUT:.0f} s")
            time.sleep(POLL)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def check_alive(self) -> None:
        if self.process is not None and (status := self.process.poll()) is not None:
            how = f"signal {signal.Signals(-status).name}" if status < 0 else f"status {status}"
            raise DemoError(f"the daemon exited unexpectedly ({how})")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the daemon and wait; return its status (None if it had to be killed)."""
        process, self.process = self.process, None
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return None

    def cli(self, *args: str) -> str:
        """Run a mailflow command against the demo's config; return its output."""
        done = subprocess.run(  # noqa: S603
            self.command(*args), capture_output=True, text=True, check=False, timeout=60
        )
        if done.returncode != 0:
            raise DemoError(f"`mailflow {' '.join(args)}` failed:\n{done.stderr}")
        return done.stdout

    def log_tail(self, lines: int = 30) -> str:
        return f"--- {self.log_path} ---\n{tail(self.log_path, lines)}"


def play(
    site: Site, inboxes: Inboxes, stage_names: dict[int, str], out: Printer
) -> tuple[str, list[float]]:
    """Act out every step; return the request's code and each step's latency in seconds.

    The latency runs from the moment the relay accepted a person's mail (it is then in the
    shared mailbox: the relay answers 250 after Dovecot stored it) to the moment the next
    person's mail is in their inbox: the daemon's whole turn, IDLE wake-up included.
    """
    received: dict[str, EmailMessage] = {}
    code, latencies = "", []
    for step in story(dt.datetime.now(TZ).date()):
        out.heading(step)
        if step.stage == 1:
            site.send(step.actor, "Solicitud de publicación: feria de servicios", step.answer)
        else:
            site.reply(step.actor, received[step.actor], step.answer, style=step.style)
        sent = time.monotonic()
        mail = inboxes.wait_new(step.next_person, awaited(step, code, stage_names))
        latencies.append(time.monotonic() - sent)
        received[step.next_person] = mail
        code = code or code_of(mail)
        out.mails(inboxes.settle())
        out.say(
            f"  ⏱ {latencies[-1]:.2f} s desde el envío hasta el correo en la bandeja de "
            f"{site.addr(step.next_person)}",
            always=True,
        )
    return code, latencies


def final_state(daemon: Daemon, code: str, out: Printer) -> None:
    """Print `mailflow requests show CODE` and check the request was published."""
    out.say(f"\n── Estado final: mailflow requests show {code} ──", always=True)
    out.say(daemon.cli("requests", "show", code).rstrip(), always=True)
    data = json.loads(daemon.cli("requests", "show", code, "--json"))
    actions = [h["action"] for h in data["history"]]
    if data["status"] != "publicado" or actions != HISTORY or data["refused"]:
        raise DemoError(
            f"{code}: expected status publicado with history {HISTORY} and no refusals; got "
            f"status {data['status']}, history {actions}, refused {data['refused']}"
        )
    if data["publication"]["urls"] != [POST_URL]:
        raise DemoError(f"{code}: publication URLs {data['publication']['urls']}")


@contextmanager
def servers(keep: bool) -> Iterator[tuple[Dovecot, SmtpRelay]]:
    """Run Dovecot and the relay on 127.0.0.1; stop them (and check) at the end."""
    if keep:
        os.environ[KEEP_ENV] = "1"  # the test bed keeps its directories when this is set
    with ExitStack() as stack:
        dovecot = stack.enter_context(Dovecot(domains=(DOMAIN,)))
        relay = stack.enter_context(SmtpRelay(dovecot.host, dovecot.lmtp_port))
        yield dovecot, relay


def run(args: argparse.Namespace, out: Printer) -> int:
    """Start everything, play the story, stop everything; return the exit status."""
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="mailflow-demo-"))
    daemon = Daemon(root / "mailflow.toml", root / "daemon.log")
    kept: list[Dovecot] = []
    code = ""
    try:
        with servers(args.keep) as (dovecot, relay):
            kept.append(dovecot)
            try:
                code, latencies = story_on(dovecot, relay, daemon, root, out)
            except Exception as error:
                # Before the servers stop: their logs go away with them.
                report_failure(error, daemon, dovecot)
                return 1
            finally:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a 2nd Ctrl-C must not stop cleanup
                daemon.stop()
    except Exception as error:  # the servers did not start or did not stop cleanly
        report_failure(error, daemon, None)
        return 1
    finally:
        if args.keep:
            print(kept_hint(root, kept[0] if kept else None, code))
        else:
            shutil.rmtree(root, ignore_errors=True)
    summary(latencies, time.monotonic() - started, out)
    return 0


def kept_hint(root: Path, dovecot: Dovecot | None, code: str) -> str:
    """Say where --keep left the demo's files and what to do with them."""
    mailflow = Path(sys.executable).parent / "mailflow"
    command = f"{mailflow} --config {root / 'mailflow.toml'}"
    lines = [
        "",
        "--keep: los servidores ya se detuvieron; se conservan los archivos de la demo:",
        f"  configuración     {root / 'mailflow.toml'}",
        f"  base de datos     {root / 'mailflow.db'}",
        f"  archivo de correo {root / 'archive'}  (cada correo y adjunto, por su SHA-256)",
        f"  log del daemon    {root / 'daemon.log'}",
    ]
    if dovecot is not None:
        lines.append(f"  buzones (Maildir) {dovecot.mail_root / DOMAIN}  (una carpeta por persona)")
    shown = code or "RRSS-2026-0001"
    lines += [
        "Para mirarlos (los comandos de consulta no necesitan los servidores ni secretos):",
        f"  {command} requests list",
        f"  {command} requests show {shown}",
        f"  {command} evidence {shown} --out {root / 'evidencia.zip'}",
        f"  less {root / 'daemon.log'}",
    ]
    if dovecot is not None:
        inbox = dovecot.maildir(f"jefe.ugs@{DOMAIN}") / "new"
        lines.append(f"  ls {inbox}    (lo que recibió la Jefatura UGS, un archivo por correo)")
    folders = " ".join(str(p) for p in (root, dovecot.root if dovecot else None) if p)
    lines.append(f"Para borrarlos: rm -rf {folders}")
    return "\n".join(lines)


def story_on(
    dovecot: Dovecot, relay: SmtpRelay, daemon: Daemon, root: Path, out: Printer
) -> tuple[str, list[float]]:
    """Start the daemon on the running servers, play the story, stop the daemon."""
    site = Site(dovecot, relay, DOMAIN, f"sqlite:///{root / 'mailflow.db'}", root)
    out.say(
        f"Dovecot: IMAP 127.0.0.1:{dovecot.imap_port}, LMTP :{dovecot.lmtp_port} "
        f"({dovecot.root}); SMTP 127.0.0.1:{relay.port}; buzón compartido {site.shared}"
    )
    procedures = json.loads(daemon.cli("procedures", "--json"))
    (info,) = [p for p in procedures if p["id"] == PROCEDURE]
    stage_names = {stage["number"]: stage["name"] for stage in info["stages"]}
    daemon.start()
    out.say(f"daemon: {' '.join(daemon.command('run'))} (pid {daemon.pid})")
    code, latencies = play(site, Inboxes(site, relay, daemon), stage_names, out)
    final_state(daemon, code, out)
    status = daemon.stop()
    if status != 0:
        raise DemoError(f"the daemon did not exit 0 on SIGTERM (status {status})")
    out.say("\ndaemon detenido con SIGTERM (estado 0)", always=True)
    return code, latencies


def report_failure(error: Exception, daemon: Daemon, dovecot: Dovecot | None) -> None:
    """Print what went wrong with the daemon's and Dovecot's log tails."""
    if isinstance(error, DemoError):
        print(f"\nERROR: {error}", file=sys.stderr)
    else:
        print(f"\nERROR: {type(error).__name__}: {error}", file=sys.stderr)
        traceback.print_exception(error, file=sys.stderr)
    print(daemon.log_tail(), file=sys.stderr)
    if dovecot is not None:
        print(dovecot.log_tail(20), file=sys.stderr)


def summary(latencies: list[float], elapsed: float, out: Printer) -> None:
    out.say("\n── Resumen ──", always=True)
    steps = "  ".join(f"{n}: {s:.2f}" for n, s in enumerate(latencies, start=1))
    out.say(f"latencia por etapa (respuesta enviada → correo siguiente), s:  {steps}", always=True)
    mean = sum(latencies) / len(latencies)
    out.say(f"media {mean:.2f} s, máxima {max(latencies):.2f} s; demo completa en "
            f"{elapsed:.1f} s. Estado final: publicado", always=True)  # fmt: skip


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/demo.py",
        description=(
            "Start throwaway Dovecot and SMTP servers on 127.0.0.1 and the mailflow daemon, "
            "then play an `informacion_especifica` request through its nine stages by real "
            "mail, printing every mail and the final state. Everything is stopped at the end."
        ),
        epilog="Exit status: 0 when the request ends `publicado`, 1 otherwise.",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the config, database, daemon log and mailboxes afterwards (paths printed)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print only the stage headings and the results"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return 0 when the request was published, 1 otherwise."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args, Printer(args.quiet))
    except KeyboardInterrupt:
        print("\ninterrumpido: servidores y daemon detenidos", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
