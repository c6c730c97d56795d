"""End to end against the real test bed: requests and replies travel as real mail.

Each person's reply is sent through the SMTP relay to the address in the mail they
received (the signed plus-address), lands in the shared Dovecot mailbox, is fetched over
IMAP by a `run --once` pass, and the next person's mail is read from their own mailbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from testbed.dovecot import Dovecot
from testbed.site import Site
from testbed.smtp import SmtpRelay

from mailflow.config import load_settings
from mailflow.runtime import Runtime, build_runtime

TZ = ZoneInfo("America/La_Paz")
START = datetime(2026, 12, 1, 9, 30, tzinfo=TZ)  # a Tuesday

REQUEST_BODY = """Buenos días,

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

    def show(self, code: str) -> dict:
        data = self.runtime.requests.show(code, self.now)
        assert data is not None
        return data

    def close(self) -> None:
        self.runtime.store.close()


@pytest.fixture
def scenario(
    dovecot: Dovecot, relay: SmtpRelay, maildomain: str, db_url: str, tmp_path: Path
) -> Iterator[Scenario]:
    site = Site(dovecot, relay, maildomain, db_url, tmp_path)
    scenario = Scenario(site)
    yield scenario
    scenario.close()


def code_of(message: EmailMessage) -> str:
    subject = str(message["Subject"])
    return subject[subject.index("[") + 1 : subject.index("]")]


def about(code: str, word: str) -> object:
    return lambda m: code in str(m["Subject"]) and word in str(m["Subject"])


def test_informacion_especifica_runs_through_all_nine_stages(scenario: Scenario) -> None:
    site = scenario.site
    site.send("analista", "Solicitud de publicación: feria", REQUEST_BODY)
    scenario.run()

    ack = site.wait_for("analista", lambda m: "Solicitud recibida" in str(m["Subject"]))
    code = code_of(ack)
    assert ack["Auto-Submitted"] == "auto-generated"
    steps = [
        # (who acts, the word their mail's subject holds, their answer, client style)
        ("directora", "Acción requerida", "APRUEBO", "gmail"),
        ("jefe.ugs", "Acción requerida", "DERIVO al profesional.", "outlook"),
        (
            "promocion",
            "Acción requerida",
            "ENTREGO la propuesta.\nCronograma: material 04/12/2026; publicación 10/12/2026",
            "thunderbird",
        ),
        ("analista", "Acción requerida", "Aprobado.", "iphone"),
        ("disenio", "Acción requerida", "ENTREGO el material final.", "gmail"),
        ("analista", "Acción requerida", "APRUEBO", "outlook"),
        ("jefe.ugs", "Acción requerida", "DERIVO", "gmail"),
        (
            "community",
            "Acción requerida",
            "PUBLICADO https://www.facebook.com/ejemplo/posts/123",
            "gmail",
        ),
    ]
    for number, (person, word, answer, style) in enumerate(steps, start=2):
        mail = site.wait_for(person, about(code, word))
        assert scenario.show(code)["stage"]["number"] == number
        site.reply(person, mail, answer, style=style)
        scenario.run()

    published = site.wait_for("analista", about(code, "Publicación confirmada"))
    assert (
        "https://www.facebook.com/ejemplo/posts/123" in published.get_body(("plain",)).get_content()
    )
    state = scenario.show(code)
    assert state["status"] == "publicado"
    assert state["publication"]["urls"] == ["https://www.facebook.com/ejemplo/posts/123"]
    actions = [h["action"] for h in state["history"]]
    assert actions == [
        "ENTREGO",
        "APRUEBO",
        "DERIVO",
        "ENTREGO",
        "APRUEBO",
        "ENTREGO",
        "APRUEBO",
        "DERIVO",
        "PUBLICADO",
    ]
    assert state["refused"] == []
