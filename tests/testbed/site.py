"""A whole institution on the test bed: its config, its people, and how they reply.

`Site` writes a mailflow config that points at the test Dovecot and SMTP relay, with
every role held by an address in the test's own mail domain, and lets a test act as a
person: send a request, read their inbox, and answer a mail the way a real client does
(Gmail, Outlook, Thunderbird, iPhone), quoting the original below the new text.
"""

from __future__ import annotations

import email.policy
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mailflow.config import load_settings
from mailflow.daemon.runtime import Runtime, build_runtime
from testbed.dovecot import Dovecot
from testbed.mail import build_message, inbox, send_as, wait_for_mail
from testbed.smtp import SmtpRelay

SECRET = "test-secret-for-reply-tokens"
TZ = ZoneInfo("America/La_Paz")
START = datetime(2026, 12, 1, 9, 30, tzinfo=TZ)  # a Tuesday, 09:30 in La Paz

PEOPLE = {
    "directora": "direccion_ejecutiva",
    "jefe.ugs": "jefatura_ugs",
    "promocion": "profesional_promocion",
    "disenio": "equipo_diseno",
    "community": "administrador_rrss",
}
COMMITTEE = ("jefe.uaf", "jefe.ual", "jefe.uti")

# A complete, valid request of the informacion_especifica procedure, as a unit writes it.
INFO_REQUEST = """Buenos días,

Tipo: Publicación de información específica
Título: Feria de servicios digitales 2026
Objetivo: Difundir la feria de servicios digitales de la Agencia.
Resumen: La feria se realizará en el atrio de la Agencia con stands de cada unidad.
Publicar desde: 10/12/2026
Publicar hasta: 20 de diciembre de 2026
Unidad: UTI

Saludos,
Analista UTI
"""

# (who acts, their answer, client style) for INFO_REQUEST's procedure, informacion_especifica,
# stages 2 to 9: the answers real people give, quoted as their mail clients quote.
INFO_STEPS = [
    ("directora", "APRUEBO", "gmail"),
    ("jefe.ugs", "DERIVO al profesional.", "outlook"),
    (
        "promocion",
        "ENTREGO la propuesta.\nCronograma: material 04/12/2026; publicación 10/12/2026",
        "thunderbird",
    ),
    ("analista", "Aprobado.", "iphone"),
    ("disenio", "ENTREGO el material final.", "gmail"),
    ("analista", "APRUEBO", "outlook"),
    ("jefe.ugs", "DERIVO", "gmail"),
    ("community", "PUBLICADO https://www.facebook.com/ejemplo/posts/123", "gmail"),
]


class Site:
    """The fictional institution of a test, with real mailboxes."""

    def __init__(
        self, dovecot: Dovecot, relay: SmtpRelay, domain: str, db_url: str, root: Path
    ) -> None:
        self.dovecot = dovecot
        self.relay = relay
        self.domain = domain
        self.db_url = db_url
        self.root = root
        self.config_path = root / "mailflow.toml"
        self.config_path.write_text(self.config_text(), encoding="utf-8")

    def addr(self, local: str) -> str:
        """Return the address of a person (by local part) in this site's domain."""
        return f"{local}@{self.domain}"

    @property
    def shared(self) -> str:
        """Return the shared mailbox the daemon reads."""
        return self.addr("rrss")

    def config_text(self) -> str:
        """Return a complete config for this site (security "none": plain test servers)."""
        roles = "\n".join(
            f'[roles.{role}]\nmembers = ["{self.addr(local)}"]\n'
            + ('superior = "direccion_ejecutiva"\n' if role != "direccion_ejecutiva" else "")
            for local, role in PEOPLE.items()
        )
        committee = ", ".join(f'"{self.addr(m)}"' for m in COMMITTEE)
        return f"""
[organization]
name = "Agencia de Ejemplo"
domain = "{self.domain}"
code_prefix = "RRSS"

[imap]
host = "{self.dovecot.host}"
port = {self.dovecot.imap_port}
security = "none"
username = "{self.shared}"
password = "{self.dovecot.password}"
timeout_seconds = 20

[smtp]
host = "{self.relay.host}"
port = {self.relay.port}
security = "none"
from_address = "{self.shared}"
from_name = "Redes Sociales"

[store]
url = "{self.db_url}"
archive_dir = "archive"

[security]
secret = "{SECRET}"
# Other tests open direct posts in one pass; tests/reliability/test_spoofing.py sets it.
confirm_openings = false

{roles}
[roles.comite_rrss]
members = [{committee}]
superior = "direccion_ejecutiva"
quorum = "majority"

[units.uti]
name = "Unidad de Tecnologías de la Información"
head = "{self.addr("jefe.uti")}"
members = ["{self.addr("analista")}"]

[units.ual]
name = "Unidad de Asesoría Legal"
head = "{self.addr("jefe.ual")}"
members = ["{self.addr("abogada")}"]
"""

    # -- acting as people ----------------------------------------------------------------

    def send(
        self, sender: str, subject: str, body: str, *, attachments: tuple = (), **headers: str
    ) -> EmailMessage:
        """Send a new mail from ``sender`` (a local part) to the shared mailbox."""
        return send_as(
            self.relay,
            self.addr(sender),
            [self.shared],
            subject,
            body,
            headers=headers or None,
            attachments=attachments,
        )

    def inbox(self, person: str) -> list[EmailMessage]:
        """Return what a person has received so far."""
        return inbox(self.dovecot, self.addr(person))

    def wait_for(
        self, person: str, predicate: Callable[[EmailMessage], bool], timeout: float = 15.0
    ) -> EmailMessage:
        """Wait for the newest mail matching ``predicate`` in a person's inbox."""
        return wait_for_mail(self.dovecot, self.addr(person), predicate, timeout)[-1]

    def reply(
        self,
        person: str,
        original: EmailMessage,
        new_text: str,
        *,
        style: str = "gmail",
        attachments: tuple = (),
        sender: str | None = None,
    ) -> EmailMessage:
        """Answer ``original`` as ``person`` would from a real client, quoting it."""
        to = str(original.get("Reply-To") or original["From"])
        body = new_text + "\n\n" + QUOTERS[style](original)
        message = build_message(
            self.addr(sender or person),
            [parseaddr(to)[1]],
            "RE: " + str(original["Subject"]),
            body,
            attachments=attachments,
            headers={
                "In-Reply-To": str(original["Message-ID"]),
                "References": f"{original.get('References', '')} {original['Message-ID']}".strip(),
                "Message-ID": make_msgid(domain=self.domain),
            },
        )
        raw = message.as_bytes(policy=email.policy.SMTP)
        return send_as(self.relay, self.addr(sender or person), [parseaddr(to)[1]], raw=raw)


class Scenario:
    """A site plus a clock that moves forward one hour per daemon pass."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.now = START
        self.runtime: Runtime = build_runtime(load_settings(site.config_path, {}))

    def run(self) -> None:
        """Make one `run --once` pass at the scenario's clock, then move the clock on."""
        fixed = self.now
        self.runtime.runner(lambda: fixed).run_once()
        self.now += timedelta(hours=1)

    def queue_mails(self, count: int) -> list[str]:
        """Queue ``count`` pending mails, one per reader, each with its own Message-ID.

        They go out with the next flush, as mail the daemon had queued itself; return the
        readers' addresses.
        """
        rt = self.runtime
        readers = [self.site.addr(f"lector{n}") for n in range(count)]
        context = {"problems": ["prueba"], "original_subject": "x", "form": False, "request": None}
        with rt.store.transaction() as session:
            rows = rt.outbox.composer.rows(
                "delivery_failed", readers, [], context=context, code=None, stage=0,
                references=[], now=self.now, request_id=None,
            )  # fmt: skip
            assert len(rows) == count
            session.add_all(rows)
        return readers

    def reconfigure(self, extra: str) -> None:
        """Append TOML (a section the config lacks) and restart the daemon on the new config."""
        path = self.site.config_path
        path.write_text(path.read_text(encoding="utf-8") + "\n" + extra + "\n", encoding="utf-8")
        self.runtime.store.close()
        self.runtime = build_runtime(load_settings(path, {}))

    def show(self, code: str) -> dict[str, Any]:
        data = self.runtime.requests.show(code, self.now)
        assert data is not None
        return data

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the real `mailflow` command against this site's config."""
        script = Path(sys.executable).parent / "mailflow"
        return subprocess.run(
            [str(script), "--config", str(self.site.config_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def close(self) -> None:
        self.runtime.store.close()


def code_of(message: EmailMessage) -> str:
    """Return the request code in a mail's subject."""
    subject = str(message["Subject"])
    return subject[subject.index("[") + 1 : subject.index("]")]


def about(code: str, word: str) -> Callable[[EmailMessage], bool]:
    """Match the mails about request ``code`` whose subject holds ``word``."""
    return lambda m: code in str(m["Subject"]) and word in str(m["Subject"])


def _plain(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    return part.get_content() if part is not None else ""


def _gmail(message: EmailMessage) -> str:
    when = datetime.now().strftime("%d %b %Y a las %H:%M")
    name, addr = parseaddr(str(message["From"]))
    quoted = "\n".join("> " + line for line in _plain(message).splitlines())
    return f"El vie, {when}, {name} (<{addr}>) escribió:\n\n{quoted}\n"


def _outlook(message: EmailMessage) -> str:
    name, addr = parseaddr(str(message["From"]))
    return (
        "________________________________\n"
        f"De: {name} <{addr}>\n"
        f"Enviado: {format_datetime(datetime.now().astimezone())}\n"
        f"Para: {message['To']}\n"
        f"Asunto: {message['Subject']}\n\n" + _plain(message)
    )


def _iphone(message: EmailMessage) -> str:
    quoted = "\n".join("> " + line for line in _plain(message).splitlines())
    name, addr = parseaddr(str(message["From"]))
    attribution = f"> El 4 dic 2026, a las 9:00, {name} <{addr}> escribió:"
    return f"Enviado desde mi iPhone\n\n{attribution}\n>\n{quoted}\n"


def _thunderbird(message: EmailMessage) -> str:
    quoted = "\n".join("> " + line for line in _plain(message).splitlines())
    return f"El 4/12/26 a las 09:00, {message['From']} escribió:\n{quoted}\n"


QUOTERS: dict[str, Callable[[EmailMessage], str]] = {
    "gmail": _gmail,
    "outlook": _outlook,
    "iphone": _iphone,
    "thunderbird": _thunderbird,
}
