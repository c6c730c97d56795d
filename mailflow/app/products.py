"""Record what each PUBLICADO produced: the products of the manual's §10, for the POAI.

A product has a type (post, infografía, vídeo corto, fotografía, ilustración), the links
of the post, the screenshots attached to the PUBLICADO mail, who designed it and who
published it, and when. The reading rules, in order:

- **type**: a ``Producto:`` (or ``Tipo de producto:``) line; else a type word right after
  the keyword (``PUBLICADO infografía https://…``); else the request's ``Tipo``
  (``fotografía``, ``vídeo``); else ``[poai] default_product_type``.
- **designer**: a ``Diseño:`` / ``Diseñado por:`` line with an address; else whoever
  delivered (ENTREGO) at the procedure's design stage (a stage of ``equipo_diseno``),
  the last time; else, for a procedure without a design stage (``directa``), the
  publisher, whose own responsibility those posts are (manual §12).
- **screenshots**: the image attachments of the PUBLICADO mail.

An administrator can register a post published outside any procedure by writing to the
shared address ``PUBLICADO <tipo> <enlace>`` with the screenshot attached:
:func:`directa_form` turns that mail into a ``directa`` request, which opens and ends
at once with its product.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from mailflow.core.model import Action, Procedure, ProductType
from mailflow.mail.replytext import extract_new_text, fold
from mailflow.store.record import history_of
from mailflow.store.schema import AttachmentRow, HistoryRow, ProductRow, RequestRow
from mailflow.store.unitofwork import Session

DESIGN_ROLE = "equipo_diseno"

# Folded words (accents and case removed) that name a product type.
_TYPE_WORDS: Mapping[str, ProductType] = {
    "post": ProductType.POST,
    "posts": ProductType.POST,
    "publicacion": ProductType.POST,
    "informativa": ProductType.POST,
    "enlace": ProductType.POST,
    "infografia": ProductType.INFOGRAFIA,
    "infografias": ProductType.INFOGRAFIA,
    "infograma": ProductType.INFOGRAFIA,
    "video": ProductType.VIDEO_CORTO,
    "videos": ProductType.VIDEO_CORTO,
    "reel": ProductType.VIDEO_CORTO,
    "reels": ProductType.VIDEO_CORTO,
    "fotografia": ProductType.FOTOGRAFIA,
    "fotografias": ProductType.FOTOGRAFIA,
    "foto": ProductType.FOTOGRAFIA,
    "fotos": ProductType.FOTOGRAFIA,
    "ilustracion": ProductType.ILUSTRACION,
    "ilustraciones": ProductType.ILUSTRACION,
}
_PRODUCT_LABELS = ("producto", "tipo de producto")
_DESIGN_LABELS = ("diseno", "disenado por", "diseno de", "diseno y elaboracion", "disenador")
_LABELLED = re.compile(r"^\s*([^:\n]{1,40}):\s*(.*?)\s*$")
# Bounded like RFC 5321 (64-character local part, 63-character labels): unbounded, a long
# word with no @ in a "Diseño:" line made search() quadratic (minutes for 100 kB).
_ADDRESS = re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")
_URL = re.compile(r"https?://\S+")
_WORD = re.compile(r"\w+")


def labelled(text: str, labels: Sequence[str]) -> str:
    """Return the value of the first unquoted ``Label: value`` line whose label is listed."""
    for line in text.splitlines():
        if line.lstrip().startswith(">"):
            continue
        found = _LABELLED.match(line)
        if found and " ".join(fold(found.group(1)).split()) in labels:
            return found.group(2)
    return ""


def type_in(words: str) -> ProductType | None:
    """Return the product type ``words`` name: the first specific one, else a post, or None.

    ``Publicación de fotografía`` is a photograph: the generic words (publicación, enlace,
    informativa) only decide when nothing more specific is said.
    """
    found = [_TYPE_WORDS[w] for w in _WORD.findall(fold(words)) if w in _TYPE_WORDS]
    specific = [t for t in found if t is not ProductType.POST]
    return (specific or found or [None])[0]


def product_type(
    mail_text: str, reply_text: str, fields: Mapping[str, str], default: ProductType
) -> ProductType:
    """Choose the product type of a publication by the rules of the module docstring."""
    label = labelled(mail_text, _PRODUCT_LABELS)
    candidates = [label, _head(reply_text), _publicado_head(mail_text)]
    for candidate in (*candidates, str(fields.get("tipo", ""))):
        found = type_in(candidate) if candidate else None
        if found is not None:
            return found
    return default


def _head(text: str) -> str:
    """Return the first line of ``text`` up to its first link."""
    return _URL.split(text.strip().split("\n", 1)[0], maxsplit=1)[0]


def _publicado_head(mail_text: str) -> str:
    """Return the words after PUBLICADO when the mail's new text opens with it, else ""."""
    text = extract_new_text(mail_text)
    words = _WORD.findall(text[:200])
    if not words or fold(words[0]) not in ("publicado", "publicada"):
        return ""
    return _head(text)


def _design_stages(procedure: Procedure) -> set[int]:
    return {n for n, stage in procedure.stages.items() if DESIGN_ROLE in stage.roles}


def designer(
    mail_text: str,
    procedure: Procedure,
    history: Sequence[HistoryRow],
    publisher: str,
    published_at: datetime,
) -> tuple[str | None, datetime | None, int | None]:
    """Return who designed the product, when, and the inbound mail that shows it."""
    named = _ADDRESS.search(labelled(mail_text, _DESIGN_LABELS)[:1000])
    if named:
        return named.group().lower(), published_at, None
    stages = _design_stages(procedure)
    if not stages:
        return publisher, published_at, None
    delivered = [h for h in history if h.action == Action.ENTREGO and h.stage in stages]
    if not delivered:
        return None, None, None
    last = delivered[-1]
    return last.actor, last.at, last.inbound_id


def screenshots(attachments: Sequence[AttachmentRow]) -> list[dict[str, str]]:
    """Return the archived image attachments of the PUBLICADO mail, as product evidence."""
    return [
        {"sha256": a.sha256, "filename": a.filename, "content_type": a.content_type}
        for a in attachments
        if a.content_type.startswith("image/")
    ]


def product_of(
    request: RequestRow,
    published: HistoryRow,
    *,
    procedure: Procedure,
    history: Sequence[HistoryRow],
    mail_text: str,
    reply_text: str,
    urls: Sequence[str],
    attachments: Sequence[AttachmentRow],
    default_type: ProductType,
) -> ProductRow:
    """Build the product row of one accepted PUBLICADO (the caller adds it)."""
    who, when, design_mail = designer(mail_text, procedure, history, published.actor, published.at)
    kind = product_type(mail_text, reply_text, request.fields, default_type)
    return ProductRow(
        request_id=request.id,
        history_id=published.id,
        inbound_id=published.inbound_id,
        type=kind.value,
        title=request.title,
        urls=list(urls),
        screenshots=screenshots(attachments),
        designer=who,
        designed_at=when,
        design_inbound_id=design_mail,
        publisher=published.actor,
        published_at=published.at,
    )


def directa_form(body: str, subject: str) -> str | None:
    """Turn a bare ``PUBLICADO <tipo> <enlace>`` mail into a ``directa`` request body.

    Return None when the mail is anything else (it has a ``Tipo:`` line, or its new text
    does not open with PUBLICADO), so ordinary requests are read as they are.
    """
    text = extract_new_text(body)
    head = _publicado_head(text)
    if not head or labelled(text, ("tipo", "tipo de publicacion", "procedimiento")):
        return None
    links = _URL.findall(text)
    title = " ".join(subject.split()) or f"Publicación directa: {links[0] if links else ''}"
    lines = ["Tipo: directa", f"Título: {title[:200]}"]
    if links:
        lines.append(f"Enlace: {links[0].rstrip('.,;:!?)>')}")
    return "\n".join(lines) + "\n\n" + text


def record_product(
    session: Session,
    request: RequestRow,
    published: HistoryRow,
    *,
    procedure: Procedure,
    mail_text: str,
    reply_text: str,
    urls: Sequence[str],
    attachments: Sequence[AttachmentRow],
    default_type: ProductType,
) -> ProductRow:
    """Add the product of one accepted PUBLICADO to the open transaction and return it."""
    session.flush()  # the PUBLICADO history row needs its id, the history its rows
    history = history_of(session, request.id)
    product = product_of(
        request,
        published,
        procedure=procedure,
        history=history,
        mail_text=mail_text,
        reply_text=reply_text,
        urls=urls,
        attachments=attachments,
        default_type=default_type,
    )
    session.add(product)
    return product
