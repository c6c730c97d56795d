"""Render Jinja2 mail templates into complete, threaded, loop-safe messages.

Each template ``<name>.txt.j2`` defines the blocks ``subject`` and ``body``;
``<name>.html.j2`` defines ``body``. Both usually extend ``_base.*.j2``. The institution
may override any template by putting a file of the same name in its templates folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import jinja2

from mailflow.errors import MailflowError

SHIPPED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "mail"

_MONTHS = (
    "enero", "febrero", "marzo", "abril", "mayo", "junio",
    "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre",
)  # fmt: skip
_WEEKDAYS = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")


class TemplateError(MailflowError):
    """A mail template is missing or does not render."""


def fecha(value: date | datetime | None) -> str:
    """Format a date (and time) the way a Bolivian office writes it: "lunes 7 de diciembre"."""
    if value is None:
        return "sin plazo"
    text = (
        f"{_WEEKDAYS[value.weekday()]} {value.day} de {_MONTHS[value.month - 1]} de {value.year}"
    )
    if isinstance(value, datetime):
        text += f", {value:%H:%M}"
    return text


def one_line(value: object) -> str:
    """Collapse any whitespace, CR and LF included, so text is safe inside a header."""
    return " ".join(str(value).split())


@dataclass(frozen=True)
class Rendered:
    """The three texts of one mail."""

    subject: str
    text: str
    html: str


class Renderer:
    """Load templates once and render them with Spanish filters, autoescaping HTML."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        folders = [str(p) for p in (templates_dir, SHIPPED_TEMPLATES) if p is not None]
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2")),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._env.filters["fecha"] = fecha
        self._env.filters["one_line"] = one_line

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        """Render template ``name`` with ``context``; raise TemplateError naming the file."""
        try:
            text_t = self._env.get_template(f"{name}.txt.j2")
            html_t = self._env.get_template(f"{name}.html.j2")
            subject = "".join(text_t.blocks["subject"](text_t.new_context(dict(context))))
            return Rendered(
                subject=one_line(subject),
                text=text_t.render(context),
                html=html_t.render(context),
            )
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"mail template {exc.name} not found") from None
        except KeyError:
            raise TemplateError(f"mail template {name}.txt.j2 has no subject block") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"mail template {name}: {exc}") from None

    def names(self) -> list[str]:
        """Return the names of every template with both a text and an HTML part."""
        every = set(self._env.list_templates())
        return sorted(
            n.removesuffix(".txt.j2")
            for n in every
            if n.endswith(".txt.j2")
            and not n.startswith("_")
            and n.replace(".txt.j2", ".html.j2") in every
        )


@dataclass(frozen=True)
class Envelope:
    """Who a mail comes from and goes to, and where it sits in its thread."""

    from_name: str
    from_address: str
    reply_to: str
    to: Sequence[str]
    cc: Sequence[str]
    message_id: str
    references: Sequence[str]
    code: str | None
    date: datetime


def compose(rendered: Rendered, envelope: Envelope) -> EmailMessage:
    """Build the multipart/alternative message with threading and anti-loop headers."""
    msg = EmailMessage()
    local, _, domain = envelope.from_address.partition("@")
    msg["From"] = Address(one_line(envelope.from_name), local, domain)
    msg["To"] = ", ".join(envelope.to)
    if envelope.cc:
        msg["Cc"] = ", ".join(envelope.cc)
    msg["Reply-To"] = envelope.reply_to
    prefix = f"[{envelope.code}] " if envelope.code else ""
    msg["Subject"] = prefix + one_line(rendered.subject)
    msg["Date"] = format_datetime(envelope.date)
    msg["Message-ID"] = envelope.message_id
    if envelope.references:
        msg["In-Reply-To"] = envelope.references[-1]
        msg["References"] = " ".join(envelope.references)
    # RFC 3834: automatic mail, never to be answered automatically; Outlook honours the second.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["Content-Language"] = "es-BO"
    msg.set_content(rendered.text, cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    return msg
