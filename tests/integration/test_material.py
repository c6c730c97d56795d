"""Files travel with the request: every person who acts gets the material, by real mail.

Each of the three long procedures is played through by real mail (Dovecot, the relay,
SQLite and PostgreSQL), with files delivered where the manual has them: the requester's
photos, the professional's proposal and cronograma, the design team's artwork. At every
stage the mail of the person who must act is opened in their own mailbox and its
attachments read: they must be the request's files so far, the newest stage's first.
Copies list the files without carrying them, and every mail shows the whole request.
"""

from __future__ import annotations

import contextlib
import email.policy
import gc
import hashlib
import mailbox
import random
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select
from testbed.browser import ink, laid_out, render
from testbed.mail import build_message, parse, send_as, wait_for_mail
from testbed.ports import HOST, accepts, free_port
from testbed.site import INFO_REQUEST, TZ, Scenario, about, code_of

from mailflow.store.schema import AttachmentRow, OutboxRow

File = tuple[str, bytes, str]


def blob(name: str, size: int, kind: str) -> File:
    """Return a file as a mail client attaches it (random bytes: every file is distinct)."""
    return (name, random.Random(name).randbytes(size), kind)


def jpeg(name: str, size: int = 120_000) -> File:
    return blob(name, size, "image/jpeg")


def png(name: str, size: int = 90_000) -> File:
    return blob(name, size, "image/png")


def pdf(name: str, size: int = 60_000) -> File:
    return blob(name, size, "application/pdf")


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def carried(mail: EmailMessage) -> list[str]:
    """Return the names of the files a mail carries, in order."""
    return [str(part.get_filename()) for part in mail.iter_attachments()]


def plain(mail: EmailMessage) -> str:
    body = mail.get_body(("plain",))
    assert body is not None
    return " ".join(str(body.get_content()).split())


def html(mail: EmailMessage) -> str:
    body = mail.get_body(("html",))
    assert body is not None
    return str(body.get_content())


@dataclass
class Player:
    """Plays a request through its stages, remembering which mails each person already read."""

    scenario: Scenario
    code: str = ""
    read: dict[tuple[str, str], int] = field(default_factory=dict)
    carried: list[tuple[str, str, list[str]]] = field(default_factory=list)

    def open(self, person: str, body: str, files: Sequence[File] = (), raw: bytes = b"") -> None:
        site = self.scenario.site
        if raw:
            send_as(site.relay, site.addr(person), [site.shared], raw=raw)
        else:
            site.send(person, "Solicitud de publicación", body, attachments=tuple(files))
        self.scenario.run()
        self.code = code_of(self.next(person, "Solicitud recibida"))

    def next(self, person: str, word: str) -> EmailMessage:
        """Return the next mail about the request whose subject holds ``word``."""
        key = (person, word)
        self.read[key] = self.read.get(key, 0) + 1
        site = self.scenario.site
        found = wait_for_mail(
            site.dovecot, site.addr(person), about(self.code, word), 15, count=self.read[key]
        )
        return found[self.read[key] - 1]

    def act(
        self,
        person: str,
        answer: str,
        files: Sequence[File] = (),
        *,
        word: str = "Acción requerida",
        style: str = "gmail",
    ) -> EmailMessage:
        """Answer the person's next mail; record what that mail carried."""
        mail = self.next(person, word)
        self.carried.append((person, word, carried(mail)))
        self.scenario.site.reply(person, mail, answer, attachments=tuple(files), style=style)
        self.scenario.run()
        return mail


def names(*files: File) -> list[str]:
    return [f[0] for f in files]


# -- información específica: the unit's photos, the proposal, the artwork ---------------

PHOTOS = (jpeg("foto-atrio.jpg"), jpeg("foto-stands.jpg"))
PROPOSAL = pdf("propuesta-contenido.pdf")
ART = (png("arte-final.png"), png("arte-historia-instagram.png"))
SHOT = png("captura-facebook.png", 30_000)
LOGO = b"\x89PNG\r\n\x1a\n" + bytes(2000)  # a 2 KB signature logo, shown inline


def opening_with_logo(scenario: Scenario) -> bytes:
    """The unit's request with its photos and an inline signature logo (as Outlook sends)."""
    site = scenario.site
    message = build_message(
        site.addr("analista"), [site.shared], "Solicitud de publicación: feria", INFO_REQUEST
    )
    for name, data, kind in PHOTOS:
        main, _, sub = kind.partition("/")
        message.add_attachment(data, maintype=main, subtype=sub, filename=name)
    message.add_attachment(
        LOGO, maintype="image", subtype="png", filename="image001.png", disposition="inline",
        cid="<image001.png@01DB4A>",
    )  # fmt: skip
    return message.as_bytes(policy=email.policy.SMTP)


def test_informacion_especifica_carries_the_material_to_every_stage(scenario: Scenario) -> None:
    site = scenario.site
    play = Player(scenario)
    play.open("analista", "", raw=opening_with_logo(scenario))
    ack = play.scenario.site.wait_for("analista", about(play.code, "Solicitud recibida"))
    assert carried(ack) == []  # the requester has their own files; they are listed
    assert "foto-atrio.jpg — imagen JPEG" in plain(ack)

    first = play.act("directora", "APRUEBO", style="gmail")
    text = plain(first)
    # The whole request, each part under its own label, in both parts of the mail.
    for shown in (
        "Objetivo: Difundir la feria de servicios digitales de la Agencia.",
        "Resumen: La feria se realizará en el atrio de la Agencia con stands de cada unidad.",
        "Publicar: desde el jueves 10 de diciembre de 2026 hasta el domingo 20 de diciembre",
        "Información protegida por norma: no",
        f"Solicitante: {site.addr('analista')}",
        "Unidad: Unidad de Tecnologías de la Información",
    ):
        assert shown in text, shown
    page = " ".join(html(first).split())
    for shown in ("Objetivo</td>", "Difundir la feria", "Resumen</td>", "stands de cada unidad"):
        assert shown in page, shown
    assert "Comentario de la etapa anterior" not in text  # the Resumen is labelled as such
    assert "image001.png" not in text and "image001.png" not in page  # a logo, not material
    assert f"foto-atrio.jpg — imagen JPEG, 117 KB de {site.addr('analista')}, etapa 1" in text

    play.act("jefe.ugs", "DERIVO al profesional.", style="outlook")
    play.act(
        "promocion",
        "ENTREGO la propuesta.\nCronograma: material 04/12/2026; publicación 10/12/2026",
        [PROPOSAL],
        style="thunderbird",
    )
    review = play.act("analista", "Aprobado.", style="iphone")
    assert "Lo que escribió " + site.addr("promocion") + " al responder ENTREGO:" in plain(review)
    copy = play.next("jefe.ugs", "Para su conocimiento")  # "mediante la jefatura de la UGS"
    assert carried(copy) == []
    assert "propuesta-contenido.pdf — documento PDF" in plain(copy)
    assert "responda a este correo con la palabra ARCHIVOS" in plain(copy)
    play.act("disenio", "ENTREGO el material final.", ART)
    play.act("analista", "APRUEBO", style="outlook")
    play.act("jefe.ugs", "DERIVO")
    last = play.act("community", "PUBLICADO https://www.facebook.com/ejemplo/posts/123", [SHOT])
    assert "arte-final.png — imagen PNG" in plain(last) and "adjunto" in plain(last)
    assert scenario.show(play.code)["status"] == "publicado"

    everything = names(*ART, PROPOSAL, *PHOTOS)
    assert play.carried == [
        ("directora", "Acción requerida", names(*PHOTOS)),
        ("jefe.ugs", "Acción requerida", names(*PHOTOS)),
        ("promocion", "Acción requerida", names(*PHOTOS)),
        ("analista", "Acción requerida", names(PROPOSAL, *PHOTOS)),
        ("disenio", "Acción requerida", names(PROPOSAL, *PHOTOS)),
        ("analista", "Acción requerida", everything),
        ("jefe.ugs", "Acción requerida", everything),
        ("community", "Acción requerida", everything),
    ]
    # The bytes that arrive are the bytes that were sent.
    final = [p.get_content() for p in last.iter_attachments()]
    assert final == [f[1] for f in (*ART, PROPOSAL, *PHOTOS)]
    # When the window ends, the administrator's notice carries the published material too.
    scenario.now = datetime(2026, 12, 21, 10, 0, tzinfo=TZ)
    scenario.run()
    notice = play.next("community", "Fin del período de publicación")
    assert carried(notice) == names(SHOT, *ART, PROPOSAL, *PHOTOS)
    with scenario.runtime.store.transaction() as session:
        logo = session.query(AttachmentRow).filter_by(filename="image001.png").one()
        assert logo.inline and logo.stage == 1  # archived all the same
        stages = {r.filename: (r.stage, r.person) for r in session.query(AttachmentRow)}
    assert stages["arte-final.png"] == (6, site.addr("disenio"))
    assert stages["propuesta-contenido.pdf"] == (4, site.addr("promocion"))


# -- promoción: the Dirección Ejecutiva's brief, through the Comité ---------------------

PROMOTION = """Tipo: Publicación de promoción
Título: Campaña firma digital gratuita
Objetivo: Promocionar la emisión gratuita de certificados de firma digital en diciembre.
Resumen: Pauta pagada de dos semanas en Facebook e Instagram.
Protegida: sí
"""
BRIEF = pdf("lineamientos-campania.pdf")
PLAN = (pdf("propuesta-promocion.pdf"), blob("cronograma.xlsx", 20_000, XLSX))
PIECE = png("pieza-firma-digital.png")


def test_promocion_carries_the_material_to_every_stage(scenario: Scenario) -> None:
    play = Player(scenario)
    play.open("directora", PROMOTION, [BRIEF])
    play.act("jefe.ugs", "DERIVO", style="outlook")
    play.act(
        "promocion",
        "ENTREGO propuesta.\nCronograma: material 07/12/2026; publicación 09/12/2026",
        PLAN,
    )
    protected = play.act("jefe.ugs", "APRUEBO COMITE, la información está protegida por norma.")
    assert "Información protegida por norma: sí (la aprueba el Comité)" in plain(protected)
    play.act("jefe.uaf", "APRUEBO", style="outlook")
    play.act("jefe.ual", "Aprobado.", style="iphone")
    committee = play.next("jefe.uti", "Acción requerida")  # the third member, who did not vote
    play.act("disenio", "ENTREGO material final", [PIECE])
    play.act("jefe.ugs", "DERIVO")
    copy = play.next("directora", "Para su conocimiento")  # stage 7 copies the DE
    play.act("community", "PUBLICADO https://www.instagram.com/p/ejemplo123/")
    assert scenario.show(play.code)["status"] == "publicado"

    proposal = names(*PLAN, BRIEF)
    assert play.carried == [
        ("jefe.ugs", "Acción requerida", names(BRIEF)),
        ("promocion", "Acción requerida", names(BRIEF)),
        ("jefe.ugs", "Acción requerida", proposal),
        ("jefe.uaf", "Acción requerida", proposal),
        ("jefe.ual", "Acción requerida", proposal),
        ("disenio", "Acción requerida", proposal),
        ("jefe.ugs", "Acción requerida", names(PIECE, *PLAN, BRIEF)),
        ("community", "Acción requerida", names(PIECE, *PLAN, BRIEF)),
    ]
    assert carried(committee) == proposal
    assert carried(copy) == []
    assert "pieza-firma-digital.png — imagen PNG" in plain(copy)


# -- imágenes con diseño: a design observed and delivered again -------------------------

DESIGN_REQUEST = """Tipo: Publicación de imágenes con diseño
Título: Serie de imágenes: trámites en línea
Objetivo: Mostrar en cinco imágenes cómo hacer trámites en línea.
Resumen: Carrusel para Facebook e Instagram con el paso a paso.
Protegida: no
"""
IDEA = pdf("propuesta-disenos.pdf")
V1, V2 = png("carrusel-v1.png"), png("carrusel-v2.png")


def test_imagenes_diseno_carries_every_version_and_the_observations(scenario: Scenario) -> None:
    site = scenario.site
    play = Player(scenario)
    play.open("promocion", DESIGN_REQUEST, [IDEA])
    play.act("jefe.ugs", "APRUEBO", style="outlook")
    play.act("directora", "APRUEBO")
    play.act("disenio", "ENTREGO primera versión", [V1])
    play.act("jefe.ugs", "OBSERVO cambiar el fondo al azul institucional.", style="outlook")
    back = play.act("disenio", "ENTREGO versión corregida", [V2], word="Observaciones")
    assert "cambiar el fondo al azul institucional" in plain(back)
    again = play.act("jefe.ugs", "APRUEBO COMITE", style="outlook")
    # Everyone acting later reads the observations so far: who, when, what.
    assert (
        f"Observaciones hasta ahora: - martes 1 de diciembre de 2026, 13:30 — "
        f"{site.addr('jefe.ugs')} (etapa 5, OBSERVO): cambiar el fondo al azul institucional."
    ) in plain(again)
    play.act("jefe.uaf", "APRUEBO")
    play.act("jefe.uti", "APRUEBO")
    play.act("community", "PUBLICADO https://www.facebook.com/ejemplo/posts/777")
    assert scenario.show(play.code)["status"] == "publicado"

    both = names(V2, V1, IDEA)
    assert play.carried == [
        ("jefe.ugs", "Acción requerida", names(IDEA)),
        ("directora", "Acción requerida", names(IDEA)),
        ("disenio", "Acción requerida", names(IDEA)),
        ("jefe.ugs", "Acción requerida", names(V1, IDEA)),
        ("disenio", "Observaciones", names(V1, IDEA)),
        ("jefe.ugs", "Acción requerida", both),
        ("jefe.uaf", "Acción requerida", both),
        ("jefe.uti", "Acción requerida", both),
        ("community", "Acción requerida", both),
    ]


# -- above the limit: ARCHIVOS sends the rest, only to people on the request -----------

KB = 1024
LONG = "Fotografia_del_atrio_de_la_Agencia_durante_la_feria_de_servicios_digitales_2026.jpg"
MANY = (
    jpeg("a-escenario.jpg", 600 * KB),
    jpeg("b-publico.jpg", 600 * KB),
    jpeg(LONG, 600 * KB),
    pdf("d-programa.pdf", 300 * KB),
    blob("e-video.mp4", 1536 * KB, "video/mp4"),
)


def _files_mails(scenario: Scenario, person: str, code: str, count: int) -> list[EmailMessage]:
    site = scenario.site
    return wait_for_mail(
        site.dovecot, site.addr(person), about(code, "Archivos de la solicitud"), 15, count=count
    )


def test_archivos_sends_what_did_not_fit_in_mails_under_the_limit(
    scenario: Scenario, tmp_path: Path
) -> None:
    scenario.reconfigure("[mail]\nattach_max_mb = 1")
    site = scenario.site
    play = Player(scenario)
    play.open("analista", INFO_REQUEST, MANY)
    first = play.next("directora", "Acción requerida")
    # In their order, what fits in 1 MB: a (600 KB), then d (300 KB); b and c do not.
    assert carried(first) == ["a-escenario.jpg", "d-programa.pdf"]
    text = plain(first)
    assert "b-publico.jpg — imagen JPEG, 600 KB de " in text
    assert "no adjunto: no cabe en este correo (límite de 1 MB)" in text
    assert "e-video.mp4 — vídeo MP4, 1,5 MB" in text
    assert "no adjunto: pesa más que el límite de 1 MB por correo" in text
    assert "responda a este correo con la palabra ARCHIVOS" in text
    # The sender hears at once that the video will not travel by mail.
    notice = play.next("analista", "Archivos que no viajarán por correo")
    assert "e-video.mp4 (1,5 MB)" in plain(notice)
    render_archivos_section(first, tmp_path)

    # The Dirección Ejecutiva asks for the rest: two mails, each under the limit.
    site.reply("directora", first, "ARCHIVOS, por favor.", style="outlook")
    scenario.run()
    rest = _files_mails(scenario, "directora", play.code, 2)
    assert [carried(m) for m in rest] == [["b-publico.jpg"], [LONG]]
    assert ["(1 de 2)" in str(rest[0]["Subject"]), "(2 de 2)" in str(rest[1]["Subject"])] == [
        True,
        True,
    ]
    assert all(sum(len(p.get_content()) for p in m.iter_attachments()) <= KB * KB for m in rest)
    assert "va en el correo 2 de 2" in plain(rest[0])
    assert "ya se le envió en un correo anterior" in plain(rest[0])
    assert "pesa más que el límite de 1 MB por correo" in plain(rest[0])  # the video
    state = scenario.show(play.code)
    assert state["stage"]["number"] == 2 and len(state["history"]) == 1  # not an action

    # Once a day: asking again sends nothing more.
    site.reply("directora", first, "ARCHIVOS")
    scenario.run()
    assert len(_files_mails(scenario, "directora", play.code, 2)) == 2

    # The requester got none of them by mail: three mails, first fit, each under 1 MB.
    ack = site.wait_for("analista", about(play.code, "Solicitud recibida"))
    site.reply("analista", ack, "Archivos", style="iphone")
    scenario.run()
    own = _files_mails(scenario, "analista", play.code, 3)
    assert [carried(m) for m in own] == [
        ["a-escenario.jpg", "d-programa.pdf"],
        ["b-publico.jpg"],
        [LONG],
    ]

    # Somebody who is not on the request, with nothing that proves her, gets an answer,
    # never the files; answering that answer proves nothing either.
    site.send("abogada", f"RE: [{play.code}] Acción requerida", "ARCHIVOS")
    scenario.run()
    refusal = site.wait_for("abogada", lambda m: "No pudimos verificar" in str(m["Subject"]))
    assert carried(refusal) == []
    site.reply("abogada", refusal, "ARCHIVOS", style="gmail")
    scenario.run()
    site.reply("abogada", refusal, "Olvidé el adjunto", style="outlook", attachments=[
        ("factura.pdf", b"%PDF-1.4 factura", "application/pdf")
    ])  # fmt: skip
    scenario.run()
    assert not [m for m in site.inbox("abogada") if carried(m)]
    state = scenario.show(play.code)
    assert "factura.pdf" not in [a["filename"] for a in state["attachments"]]
    assert [h["action"] for h in state["history"]].count("NOTA") == 0

    site.reply("directora", first, "APRUEBO")  # and the request goes on as before
    scenario.run()
    assert scenario.show(play.code)["stage"]["number"] == 3


def render_archivos_section(mail: EmailMessage, tmp_path: Path) -> None:
    """Open the HTML part in headless Chromium as wide as a phone: every row readable."""
    page = tmp_path / "accion.html"
    page.write_text(html(mail), encoding="utf-8")
    profile = tmp_path / "chromium-profile"
    measured = laid_out(
        page,
        profile,
        "const rows = [...document.querySelectorAll('tr.archivo')].map(r => {"
        " const b = r.getBoundingClientRect();"
        " return {text: r.innerText.replace(/\\s+/g, ' '), height: b.height, right: b.right}; });"
        "const title = document.getElementById('archivos');"
        "return {rows, title: title.innerText, titleHeight: title.getBoundingClientRect().height,"
        " scroll: document.documentElement.scrollWidth, inner: window.innerWidth};",
        width=412,
    )
    rows = measured["rows"]
    assert measured["title"] == "Archivos de la solicitud (5; 2 adjuntos a este correo)"
    assert measured["titleHeight"] > 0
    assert len(rows) == len(MANY)
    for row, (name, _, _) in zip(rows, MANY, strict=True):
        assert row["height"] > 0, row
        assert row["right"] <= measured["inner"], row  # the long name wraps, nothing spills
        assert name in row["text"].replace(" ", "").replace("\u200b", "") or name in row["text"]
    assert [("Adjunto" in r["text"].split(" etapa ")[-1]) for r in rows] == [
        True,
        False,
        False,
        True,
        False,
    ]
    assert measured["scroll"] <= measured["inner"]  # no sideways scrolling on a phone
    shot = tmp_path / "accion.png"
    render(page, profile, f"--screenshot={shot}", "--window-size=412,1600")
    assert ink(shot.read_bytes()) > 0.01  # drawn, not a blank page


# -- nothing dropped in silence ---------------------------------------------------------


def test_a_mail_with_300_files_keeps_200_parts_and_names_the_rest(scenario: Scenario) -> None:
    files = [blob(f"foto-{n:03d}.jpg", 64, "image/jpeg") for n in range(300)]
    play = Player(scenario)
    play.open("analista", INFO_REQUEST, files)
    notice = play.next("analista", "Archivos no incorporados")
    text = plain(notice)
    # The multipart and the text are parts too: 198 files kept, 102 named with the reason.
    assert text.count("el correo trae más de 200 partes y mailflow lee solo las primeras") == 102
    assert "- foto-198.jpg: el correo trae" in text and "- foto-299.jpg: el correo" in text
    assert "- foto-197.jpg" not in text
    kept = [a["filename"] for a in scenario.show(play.code)["attachments"]]
    assert kept == [f"foto-{n:03d}.jpg" for n in range(198)]
    first = play.next("directora", "Acción requerida")  # the request went on
    assert len(carried(first)) == 198


# -- streaming stays streaming ------------------------------------------------------------

MB = 1024 * 1024
# Composing and sending a mail with a 20 MB file (about 27 MB of base64) peaks near 3 MB
# of Python memory in a warm pass; holding it once would be 20 MB, aiosmtplib's data() 95.
FORWARD_PEAK = 10 * MB


@contextlib.contextmanager
def smtp_to_maildir(folder: Path) -> Iterator[int]:
    """Run an SMTP server in a process of its own that stores what it gets in a Maildir.

    The test bed's relay runs in the test's process and holds each message whole, so it
    cannot share a memory measurement with the daemon.
    """
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"{HOST}:{port}", "-s", str(40 * MB),
         "-c", "aiosmtpd.handlers.Mailbox", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not accepts(HOST, port, banner=b"220"):
            assert server.poll() is None and time.monotonic() < deadline, "no SMTP server"
            time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_a_20_mb_file_is_forwarded_without_being_held(scenario: Scenario, tmp_path: Path) -> None:
    site = scenario.site
    relayed = f'[smtp]\nhost = "{site.relay.host}"\nport = {site.relay.port}\n'
    text = site.config_path.read_text(encoding="utf-8")
    assert relayed in text
    with smtp_to_maildir(tmp_path / "maildir") as port:
        site.config_path.write_text(
            text.replace(relayed, f'[smtp]\nhost = "{HOST}"\nport = {port}\n'), encoding="utf-8"
        )
        scenario.reconfigure("[mail]\nattach_max_mb = 25")
        site.send("analista", "Solicitud", INFO_REQUEST, attachments=(pdf("a.pdf", 2000),))
        scenario.run()  # a first pass loads templates, compiles queries, fills caches
        video = blob("video-feria.mp4", 20 * MB, "video/mp4")
        site.send("analista", "Solicitud: el vídeo", INFO_REQUEST, attachments=(video,))
        want = hashlib.sha256(video[1]).hexdigest()
        del video
        gc.collect()

        tracemalloc.start()
        try:
            scenario.run()  # fetch, spool, archive, intake, compose 27 MB, send it over SMTP
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    delivered = [
        m for m in mailbox.Maildir(tmp_path / "maildir") if "RRSS-2026-0002" in str(m["Subject"])
    ]
    [ours] = [parse(m.as_bytes()) for m in delivered if "directora@" in str(m["To"])]
    [part] = ours.iter_attachments()
    assert part.get_filename() == "video-feria.mp4"
    assert hashlib.sha256(part.get_content()).hexdigest() == want
    with scenario.runtime.store.transaction() as session:
        row = session.scalars(
            select(OutboxRow).where(OutboxRow.kind == "action_needed").order_by(OutboxRow.id.desc())
        ).first()
        assert row is not None and row.eml_sha256 is not None
        assert row.raw == b"" and row.status == "sent"  # never a 27 MB row
        path = scenario.runtime.service.archive.path_of(row.eml_sha256, ".eml")
        assert path.stat().st_size > 26 * MB
    assert peak < FORWARD_PEAK, f"peak {peak / MB:.1f} MB while forwarding a 20 MB file"
