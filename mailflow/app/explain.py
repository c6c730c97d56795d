"""Explain how mailflow reads one saved mail, changing nothing and sending nothing.

``mailflow explain FILE.eml…`` answers an operator's "why did mailflow read my mail that
way?". :func:`explain` follows the daemon's own decisions in the daemon's order (automatic
and bulk mail, our own mail, a mail without sender, encrypted or opaque content, then the
request it answers or the request it opens) with the same readers, and says what each one
found: the kind of mail, the request code and how it was matched, the new text kept, the
action with its argument and links, and the reason when there is none. It is pure: the
bytes, a :class:`Context` and the day come in, an :class:`Explanation` goes out. Only
:func:`load_context` reads a file (the configuration), and it needs no secret: without
``[security] secret`` a reply token found is reported as not verified.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from mailflow.app.archivos import asks_for_files
from mailflow.app.products import directa_form
from mailflow.app.service import SEALED_ANSWERS, UNCLEAR_REASONS
from mailflow.config import load_reply_key, load_settings
from mailflow.core.routing import held_inbound_id, route
from mailflow.core.tokens import ReplyToken, find_tokens, is_our_address, verify
from mailflow.mail.autoreply import AutoKind
from mailflow.mail.intake import FIELD_NAMES, Intake, parse_intake, read_fields, read_request
from mailflow.mail.parse import MAX_MESSAGE_BYTES, InboundMail, MailParseError, parse_message
from mailflow.mail.replytext import Cut, Unclear, read_action, reduce_reply
from mailflow.mail.sealed import Sealed
from mailflow.mail.thanks import is_thanks

KINDS = ("request", "reply", "note", "automatic", "bulk", "encrypted", "unreadable")
# What ended the new text, as the operator reads it.
_CUTS = {
    Cut.ATTRIBUTION: "línea de cita («… escribió:»)",
    Cut.SEPARATOR: "separador del original («-----Mensaje original-----»)",
    Cut.HEADERS: "cabeceras del original («De:», «Enviado:»…)",
    Cut.FOOTER: "pie de teléfono o aplicación («Enviado desde mi iPhone»)",
    Cut.DELIMITER: "delimitador de firma («-- »)",
}


@dataclass(frozen=True)
class Context:
    """What reading needs from the configuration: our address, code prefix, secret."""

    code_prefix: str = "RRSS"
    our_address: str = ""
    secret: bytes | None = None
    timezone: str = "America/La_Paz"


@dataclass(frozen=True)
class Explanation:
    """How one mail is read; :meth:`as_json` has the keys ``mailflow explain --json`` prints."""

    file: str
    kind: str
    code: str | None = None
    matched: str = ""
    new_text: str = ""
    action: str | None = None
    argument: str = ""
    urls: tuple[str, ...] = ()
    reason: str = ""
    procedure: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    notes: tuple[tuple[str, str], ...] = ()  # (label, value) lines for people only

    def as_json(self) -> dict[str, Any]:
        """Return the JSON object of this explanation (one line of ``--json``)."""
        return {
            "file": self.file,
            "kind": self.kind,
            "code": self.code,
            "new_text": self.new_text,
            "action": self.action,
            "argument": self.argument,
            "urls": list(self.urls),
            "reason": self.reason,
            "matched": self.matched,
            "procedure": self.procedure,
            "fields": dict(self.fields),
            "problems": list(self.problems),
        }


def explain(name: str, raw: bytes, context: Context, today: date) -> Explanation:
    """Read one mail as the daemon would and say what it found, step by step."""
    if len(raw) > MAX_MESSAGE_BYTES:
        reason = f"mide {len(raw)} bytes, más que el límite de {MAX_MESSAGE_BYTES}: no se lee"
        return Explanation(name, "unreadable", reason=reason)
    try:
        mail = parse_message(raw)
    except MailParseError as exc:
        return Explanation(name, "unreadable", reason=f"no se puede leer como correo: {exc}")
    notes = _mail_notes(mail)
    if mail.is_automatic:
        kind = "bulk" if mail.auto is AutoKind.BULK else "automatic"
        why = f"{mail.auto_reason}: se archiva y nunca se responde"
        return Explanation(name, kind, reason=why, notes=notes)
    if context.our_address and is_our_address(mail.from_address, context.our_address):
        reason = "es un correo de mailflow mismo: se archiva y nunca se responde"
        return Explanation(name, "automatic", reason=reason, notes=notes)
    if not mail.from_address:
        reason = "no tiene una dirección de remitente utilizable: queda en cuarentena"
        return Explanation(name, "unreadable", reason=reason, notes=notes)
    if mail.sealed is not Sealed.NONE:
        kind = "encrypted" if mail.sealed is Sealed.ENCRYPTED else "unreadable"
        reason = f"{mail.sealed_reason}. Respuesta al remitente: {SEALED_ANSWERS[mail.sealed]}"
        return Explanation(name, kind, reason=reason, notes=notes)
    found = route(
        (*mail.to, *mail.cc, *mail.delivered_to),
        mail.thread_ids,
        mail.subject,
        context.code_prefix,
    )
    if found.code is None:
        return _request(name, mail, today, notes)
    return _reply(name, mail, found.code, _matched(mail, found.via, found.tokens, context), notes)


def _request(
    name: str, mail: InboundMail, today: date, notes: tuple[tuple[str, str], ...]
) -> Explanation:
    """Explain a mail that names no request: it opens one, or gets the list of problems."""
    form = directa_form(mail.text, mail.subject)
    parsed = parse_intake(form, today) if form else read_request(mail.text, mail.html, today)
    problems = tuple(p.message for p in parsed.problems)
    if parsed.ok and parsed.procedure:
        reason = ""
    else:
        reason = "no abre una solicitud; se responde con la lista de problemas y un formulario"
        if mail.thread_ids:
            reason += (
                " (salvo que responda al primer correo de una solicitud ya abierta: entonces "
                "se lee como respuesta a esa solicitud)"
            )
    source = "publicación directa («PUBLICADO …»)" if form else _intake_source(mail, parsed)
    return Explanation(
        name,
        "request",
        new_text=parsed.resumen or parsed.objetivo,
        urls=(parsed.enlace,) if parsed.enlace else (),
        reason=reason,
        procedure=parsed.procedure,
        fields={FIELD_NAMES.get(k, k): v for k, v in parsed.raw.items() if v},
        problems=problems,
        notes=(*notes, ("campos leídos de", source)),
    )


def _intake_source(mail: InboundMail, parsed: Intake) -> str:
    """Say which part of the mail the request's fields were read from."""
    if not mail.text.strip() or (parsed.raw and not read_fields(mail.text)):
        return "la parte HTML"
    return "la parte de texto"


def _reply(
    name: str, mail: InboundMail, code: str, matched: str, notes: tuple[tuple[str, str], ...]
) -> Explanation:
    """Explain a mail about a request: the action it takes, or why it is only a note."""
    reduction = reduce_reply(mail.text)
    reading = read_action(reduction.text, mail.subject)
    extra = [*notes]
    if reduction.banner:
        extra.append(("aviso de pasarela omitido", reduction.banner.splitlines()[0][:120]))
    if reduction.cut is not Cut.NONE:
        extra.append(("el texto nuevo termina en", f"{_CUTS[reduction.cut]}: {reduction.cut_line}"))
    if reduction.quoted_lines:
        extra.append(("líneas citadas omitidas", str(reduction.quoted_lines)))
    if reduction.signature:
        extra.append(("firma omitida (sus enlaces no cuentan)", reduction.signature[:300]))
    if reading.source == "subject":
        extra.append(("acción leída de", "el asunto (el cuerpo no trae texto nuevo)"))
    first = held_inbound_id(code, code.split("-", 1)[0])
    if first is not None:
        extra.append(
            (
                "es",
                f"una respuesta sobre el correo #{first}, que aún no abrió una solicitud: "
                "confirma una apertura retenida (CONFIRMO) o completa una solicitud a la que "
                "le faltaban campos",
            )
        )
    if asks_for_files(mail):
        return Explanation(
            name,
            "reply",
            code=code,
            matched=matched,
            new_text=reduction.text,
            action="ARCHIVOS",
            reason=(
                "pide los archivos de la solicitud: si lo prueba un token suyo (o el servidor "
                "de confianza) y figura en la solicitud, se le envían los que aún no tiene; "
                "si no, se archiva y se responde solo a su remitente"
            ),
            notes=tuple(extra),
        )
    if reading.action is None:
        return Explanation(
            name,
            "note",
            code=code,
            matched=matched,
            new_text=reduction.text,
            argument=reading.text,
            urls=reading.urls,
            reason=_no_action(reading.unclear, reduction.text),
            notes=tuple(extra),
        )
    return Explanation(
        name,
        "reply",
        code=code,
        matched=matched,
        new_text=reduction.text,
        action=reading.action.value,
        argument=reading.text,
        urls=reading.urls,
        notes=tuple(extra),
    )


def _no_action(unclear: Unclear | None, text: str) -> str:
    """Say what becomes of a reply without an action, as the daemon decides it."""
    if unclear in (Unclear.NEGATED, Unclear.QUESTION, Unclear.CONDITIONAL):
        return (
            f"{UNCLEAR_REASONS[unclear]}; si su autor tiene la etapa, recibe una ayuda y la "
            "solicitud no cambia"
        )
    if is_thanks(text):
        return "es un agradecimiento o un acuse: se archiva sin respuesta"
    return (
        "no trae una acción: es una nota. Si su autor figura en la solicitud y lo prueba un "
        "token suyo (o el servidor de confianza), se añade a la solicitud con sus archivos y "
        "se envía a quien tiene la etapa; si no, se archiva y se responde solo a su remitente"
    )


def _matched(mail: InboundMail, via: str, tokens: tuple[ReplyToken, ...], context: Context) -> str:
    """Say how the request code was found and whether the token proves the sender."""
    if via != "token":
        return "por el código en el asunto (sin token: no prueba quién responde)"
    token = tokens[0]
    where = (
        "la dirección de respuesta (To/Cc/Delivered-To)"
        if find_tokens([*mail.to, *mail.cc, *mail.delivered_to])
        else "las cabeceras del hilo (In-Reply-To/References)"
    )
    if context.secret is None:
        proof = "sin verificar: no hay [security] secret en este entorno"
    elif verify(context.secret, token, mail.from_address):
        proof = f"verificado: emitido para {mail.from_address}, etapa {token.stage}"
    else:
        proof = f"no válido para {mail.from_address}: emitido para otra persona o alterado"
    return f"por el token de {where}; {proof}"


def _mail_notes(mail: InboundMail) -> tuple[tuple[str, str], ...]:
    """Return who sent the mail, its subject and files, for the text report."""
    notes = [("de", mail.from_address or "-"), ("asunto", mail.subject or "-")]
    if mail.attachments:
        files = ", ".join(f"{a.filename} ({a.size} bytes)" for a in mail.attachments[:20])
        notes.append(("archivos", files))
    return tuple(notes)


def as_text(explanation: Explanation) -> str:
    """Return the explanation as the lines an operator reads (Spanish)."""
    e = explanation
    pairs = list(e.notes)
    if e.code:
        pairs.append(("solicitud", f"{e.code} ({e.matched})"))
    if e.procedure or e.kind == "request":
        pairs.append(("procedimiento", e.procedure or "(no reconocido)"))
        pairs += [(f"campo «{label}»", value) for label, value in e.fields.items()]
        pairs += [("problema", problem) for problem in e.problems]
    if e.kind in ("reply", "note"):
        pairs.append(("texto nuevo", e.new_text or "(vacío)"))
    if e.action:
        pairs += [("acción", e.action), ("argumento", e.argument or "(ninguno)")]
    if e.urls:
        pairs.append(("enlaces", " ".join(e.urls)))
    if e.reason:
        pairs.append(("motivo", e.reason))
    lines = [f"{e.file}: {_KIND_NAMES[e.kind]}"]
    for label, value in pairs:
        first, *rest = value.splitlines() or [""]
        lines.append(f"  {label}: {first}")
        lines += [f"  {' ' * len(label)}  {line}".rstrip() for line in rest]
    return "\n".join(lines)


_KIND_NAMES = {
    "request": "solicitud nueva (request)",
    "reply": "respuesta con una acción (reply)",
    "note": "respuesta sin acción (note)",
    "automatic": "correo automático (automatic)",
    "bulk": "correo masivo o de lista (bulk)",
    "encrypted": "correo cifrado (encrypted)",
    "unreadable": "correo ilegible (unreadable)",
}


def load_context(path: Path, env: Mapping[str, str]) -> Context:
    """Read what explaining needs from the config, as read-only commands load it.

    No mail password is read; the reply tokens' key (``[security] secret``) alone is, when
    it is at hand, so that tokens are verified; without it they are reported unverified.
    """
    settings = load_settings(path, env, secrets=False)
    return Context(
        code_prefix=settings.organization.code_prefix,
        our_address=settings.smtp.from_address,
        secret=load_reply_key(path, env),
        timezone=settings.organization.timezone,
    )
