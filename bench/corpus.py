"""Realistic mail for the benchmarks: new requests (some with a photo) and people's replies."""

from __future__ import annotations

import datetime as dt
import email.policy
import random
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr

from testbed.mail import build_message
from testbed.site import QUOTERS, TZ, Site

MB = 1024 * 1024
PHOTO_EVERY = 10  # one request in ten carries a photo (1–3 MB)
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
REQUESTERS = ("analista", "abogada")  # members of units uti and ual


def photo(rng: random.Random, size: int) -> bytes:
    """Return a JPEG-looking photo of ``size`` bytes that compresses like a real one (not)."""
    return JPEG_HEAD + rng.randbytes(size - len(JPEG_HEAD))


def request_body(index: int, today: dt.date) -> str:
    """Return a valid `informacion_especifica` request, as a unit writes it."""

    def day(n: int) -> str:
        return (today + dt.timedelta(days=n)).strftime("%d/%m/%Y")

    return (
        "Buenos días,\n\nTipo: Publicación de información específica\n"
        f"Título: Feria de servicios digitales n.º {index}\n"
        "Objetivo: Difundir la feria de servicios digitales de la Agencia entre la ciudadanía.\n"
        "Resumen: La feria se realizará en el atrio de la Agencia con stands de cada unidad, "
        "charlas sobre firma digital y trámites en línea, y atención personalizada.\n"
        f"Publicar desde: {day(14)}\nPublicar hasta: {day(24)}\n\n"
        "Saludos cordiales,\nUnidad solicitante\n"
    )


def request_mail(site: Site, index: int, rng: random.Random, *, attachment: int = 0) -> bytes:
    """Return a new request to the shared mailbox; every tenth one (or ``attachment`` > 0)
    carries a photo of that many bytes (1–3 MB when chosen at random)."""
    today = dt.datetime.now(TZ).date()
    sender = site.addr(REQUESTERS[index % len(REQUESTERS)])
    if not attachment and index % PHOTO_EVERY == PHOTO_EVERY - 1:
        attachment = rng.randint(1 * MB, 3 * MB)
    photos = [(f"foto-{index}.jpg", photo(rng, attachment), "image/jpeg")] if attachment else []
    message = build_message(
        sender,
        [site.shared],
        f"Solicitud de publicación: feria {index}",
        request_body(index, today),
        attachments=photos,
    )
    return message.as_bytes(policy=email.policy.SMTP)


def reply_mail(site: Site, person: str, original: EmailMessage, text: str, style: str) -> bytes:
    """Return ``person``'s answer to ``original``, quoting it as their mail client would."""
    to = parseaddr(str(original.get("Reply-To") or original["From"]))[1]
    message = build_message(
        site.addr(person),
        [to],
        "RE: " + str(original["Subject"]),
        text + "\n\n" + QUOTERS[style](original),
        headers={
            "In-Reply-To": str(original["Message-ID"]),
            "References": f"{original.get('References', '')} {original['Message-ID']}".strip(),
            "Message-ID": make_msgid(domain=site.domain),
        },
    )
    return message.as_bytes(policy=email.policy.SMTP)
