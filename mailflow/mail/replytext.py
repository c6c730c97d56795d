"""Reduce a reply to the text its author just wrote, then read the action keyword in it.

Stripping works on plain text (HTML bodies arrive through :mod:`mailflow.mail.htmltext`, with
blockquotes already turned into ``>`` lines). Lines are scanned top to bottom:

* ``>``-quoted lines are dropped, and an attribution line above them (``El vie, 20 nov
  2026 a las 10:12, Ana <ana@…> escribió:``, even wrapped over three lines) goes too,
  so bottom-posted and interleaved replies keep their new text;
* a separator (``-----Mensaje original-----``, ``---------- Forwarded message ---------``,
  ``Inicio del mensaje reenviado:``), an Outlook/Zimbra header block (``De:`` followed by
  ``Enviado:``/``Para:``/``Asunto:``…, with or without an underscore line), a mobile footer
  (``Enviado desde mi iPhone``, ``Obtener Outlook para Android``) or a signature delimiter
  (``-- ``) ends the new text: what follows is the original, unquoted.

Every test is a prefix/suffix comparison on a bounded line, so no input can make the
stripper backtrack.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from mailflow.core.model import Action

MAX_REPLY_CHARS = 200_000
_MAX_LINE = 1_000

# fmt: off
_SEPARATORS = (
    "-----mensaje original-----", "----- mensaje original -----", "-----original message-----",
    "----- original message -----", "---------- forwarded message", "---------- mensaje reenviado",
    "-------- mensaje reenviado --------", "-------- forwarded message --------",
    "-------- mensaje original --------", "inicio del mensaje reenviado:",
    "begin forwarded message:", "mensaje reenviado", "forwarded message",
)
_FOOTERS = (
    "enviado desde mi ", "sent from my ", "obtener outlook para ", "get outlook for ",
    "enviado desde outlook", "enviado desde correo para windows", "enviado desde yahoo mail",
    "enviado con blackberry", "descargue outlook para ",
)
_HEADER_LABELS = frozenset(
    {"de", "from", "enviado", "enviado el", "enviados", "sent", "fecha", "date", "para", "to",
     "cc", "cco", "asunto", "subject", "responder a", "reply-to"}
)
_ATTRIBUTION_ENDS = ("escribio:", "wrote:", "escribio :", "a ecrit :", "ha escrito:")
_ATTRIBUTION_STARTS = ("el ", "on ", "en ", "----- ")
_KEYWORDS: dict[str, Action] = {
    **dict.fromkeys(("apruebo", "aprobado", "aprobada", "aprobados", "aprobadas"), Action.APRUEBO),
    **dict.fromkeys(("rechazo", "rechazado", "rechazada"), Action.RECHAZO),
    **dict.fromkeys(("observo", "observado", "observada"), Action.OBSERVO),
    **dict.fromkeys(("derivo", "derivado", "derivada"), Action.DERIVO),
    **dict.fromkeys(("entrego", "entregado", "entregada"), Action.ENTREGO),
    **dict.fromkeys(("publicado", "publicada", "publicados", "publicadas"), Action.PUBLICADO),
    **dict.fromkeys(("eliminado", "eliminada", "elimino"), Action.ELIMINADO),
    **dict.fromkeys(("anulo", "anulado", "anulada", "anular"), Action.ANULO),
}
_NEGATIONS = frozenset({"no", "tampoco", "nunca", "jamas", "ni"})
_CONDITIONS = (" pero ", " siempre que ", " siempre y cuando ", " con la condicion", " sujeto a ",
               " salvo ", " excepto ", " aunque ", " sin embargo", " condicionad")
_GREETINGS = ("hola", "buenos dias", "buenas tardes", "buenas noches", "buen dia", "estimad",
              "saludos", "sr.", "sra.", "lic.", "ing.", "senor", "senora")
_SUBJECT_PREFIX = re.compile(
    r"^\s*(?:(?:re|rv|fw|fwd|tr|aw|rif|sv|r|enc)\s*(?:\[\d{1,4}\])?\s*:|\[[^\[\]]{0,80}\])\s*",
    re.IGNORECASE,
)
# fmt: on
_WORD = re.compile(r"[^\W\d_]+")
_URL = re.compile(r"https?://[^\s<>\"'\]\[{}|\\^`]{1,2000}")


class Unclear(StrEnum):
    """Why a reply does not count as an action; the help mail explains each one."""

    EMPTY = "empty"
    NO_KEYWORD = "no_keyword"
    NEGATED = "negated"
    QUESTION = "question"
    CONDITIONAL = "conditional"


@dataclass(frozen=True)
class ActionReading:
    """What a reply says: an action with its text, or why it says none."""

    action: Action | None
    text: str = ""
    urls: tuple[str, ...] = ()
    source: str = "body"
    unclear: Unclear | None = None
    keyword: str = ""

    @property
    def is_action(self) -> bool:
        """Tell whether the reply is an action the workflow can take."""
        return self.action is not None


def fold(text: str) -> str:
    """Casefold and strip accents, so ``Aprobé``, ``APROBE`` and ``aprobe`` compare equal."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def extract_new_text(body: str) -> str:
    """Return only the text the author wrote: no quotes, reply headers, footers or signature."""
    lines = body[:MAX_REPLY_CHARS].replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if _is_quoted(line):
            index += 1
            continue
        span = _attribution_span(lines, index)
        if span:
            after = _next_nonblank(lines, index + span)
            if after is not None and _is_quoted(lines[after]):
                index += span
                continue
            break
        if _ends_new_text(lines, index):
            break
        kept.append(line.rstrip())
        index += 1
    return "\n".join(kept).strip()


def _is_quoted(line: str) -> bool:
    """Tell whether a line is quoted with ``>`` (or Outlook's ``|`` inline marker)."""
    return line.lstrip(" \t").startswith(">")


def _clean(line: str) -> str:
    """Fold a line for marker comparison: bounded, unaccented, no bold/italic marks."""
    return " ".join(fold(line[:_MAX_LINE]).replace("*", "").replace("\u200b", "").split())


def _next_nonblank(lines: list[str], start: int) -> int | None:
    """Return the index of the next non-blank line at or after ``start``."""
    for index in range(start, min(len(lines), start + 4)):
        if lines[index].strip():
            return index
    return None


def _attribution_span(lines: list[str], start: int) -> int:
    """Return how many lines an ``El … escribió:`` header starting here spans (0 if none)."""
    first = _clean(lines[start])
    if not first.startswith(_ATTRIBUTION_STARTS):
        return 0
    joined = first
    for span in range(1, 4):
        if joined.endswith(_ATTRIBUTION_ENDS):
            return span
        if start + span >= len(lines) or not lines[start + span].strip():
            return 0
        joined = f"{joined} {_clean(lines[start + span])}"
    return 0


def _header_label(line: str) -> str | None:
    """Return the folded label if the line looks like ``De: …`` from a quoted header block."""
    label, colon, _ = _clean(line).partition(":")
    return label if colon and label in _HEADER_LABELS else None


def _ends_new_text(lines: list[str], index: int) -> bool:
    """Tell whether the original message or a signature/footer starts at this line."""
    raw = lines[index]
    text = _clean(raw)
    if raw.rstrip("\n") in ("-- ", "--") or text in ("--", "__"):
        return True
    if text.startswith(_SEPARATORS) and ("-" in text or text.endswith(":")):
        return True
    if text.startswith(_FOOTERS) and len(text) < 80:
        return True
    if text.startswith("_____") and set(text) == {"_"}:
        following = _next_nonblank(lines, index + 1)
        return following is not None and _header_label(lines[following]) in ("de", "from")
    if _header_label(raw) in ("de", "from"):
        labels = {_header_label(lines[i]) for i in range(index + 1, min(len(lines), index + 6))}
        return len(labels & _HEADER_LABELS) >= 2
    return False


def read_action(new_text: str, subject: str = "") -> ActionReading:
    """Read the keyword that starts the new text, or the subject when the body says nothing."""
    text = _skip_greeting(new_text.strip())
    if _WORD.search(text[:_MAX_LINE]):
        return _read(text, "body")
    topic = _strip_subject(subject)
    if _WORD.search(topic):
        reading = _read(topic, "subject")
        if reading.is_action:
            return reading
    return ActionReading(action=None, source="none", unclear=Unclear.EMPTY)


def _skip_greeting(text: str) -> str:
    """Drop a first line that is only a greeting (``Buenos días,``) when text follows it."""
    first, newline, rest = text.partition("\n")
    folded = _clean(first)
    if not (newline and rest.strip() and len(folded) <= 60 and folded.startswith(_GREETINGS)):
        return text
    if any(w in _KEYWORDS or w in _NEGATIONS for w in _WORD.findall(folded)):
        return text
    return rest.strip()


def _strip_subject(subject: str) -> str:
    """Remove reply/forward prefixes and bracketed codes from the front of a subject."""
    topic = " ".join(subject.split())[:_MAX_LINE]
    for _ in range(10):
        stripped = _SUBJECT_PREFIX.sub("", topic, count=1)
        if stripped == topic:
            break
        topic = stripped
    return topic


def _read(text: str, source: str) -> ActionReading:
    """Read the first word of ``text`` as a keyword, with negation and ambiguity checks."""
    words = list(_WORD.finditer(text[:_MAX_LINE]))
    first = fold(words[0].group())
    if first in _NEGATIONS and any(fold(w.group()) in _KEYWORDS for w in words[1:5]):
        return ActionReading(action=None, source=source, unclear=Unclear.NEGATED, keyword=first)
    action = _KEYWORDS.get(first)
    if action is None:
        return ActionReading(action=None, source=source, unclear=Unclear.NO_KEYWORD)
    end = words[0].end()
    committee = _committee_words(words[1:4]) if action is Action.APRUEBO else 0
    if committee:
        action, end = Action.APRUEBO_COMITE, words[committee].end()
    unclear = _ambiguity(text, action, words[0].start(), end)
    rest = text[end:].lstrip(" \t:;,.-–—!*_").strip()
    urls = tuple(u.rstrip(".,;:!?)>") for u in _URL.findall(rest))
    if unclear is not None:
        return ActionReading(
            action=None, text=rest, urls=urls, source=source, unclear=unclear, keyword=action.value
        )
    return ActionReading(action=action, text=rest, urls=urls, source=source, keyword=action.value)


def _committee_words(words: list[re.Match[str]]) -> int:
    """Count the words of ``comité`` / ``al comité`` / ``para el comité`` after APRUEBO."""
    folded = [fold(w.group()) for w in words]
    for phrase in (["comite"], ["al", "comite"], ["para", "comite"], ["para", "el", "comite"]):
        if folded[: len(phrase)] == phrase:
            return len(phrase)
    return 0


def _ambiguity(text: str, action: Action, start: int, end: int) -> Unclear | None:
    """Return why a keyword does not count: asked as a question, or an approval with strings."""
    before = text[max(0, start - 2) : start]
    after = text[end : end + 3]
    if "¿" in before or after.lstrip(" .").startswith("?"):
        return Unclear.QUESTION
    if action not in (Action.APRUEBO, Action.APRUEBO_COMITE):
        return None
    paragraph = re.split(r"\n\s*\n", text[: _MAX_LINE * 4], maxsplit=1)[0]
    if "?" in paragraph or "¿" in paragraph:
        return Unclear.QUESTION
    folded = f" {' '.join(fold(paragraph).split())} "
    if any(marker in folded for marker in _CONDITIONS):
        return Unclear.CONDITIONAL
    return None


def read_reply(body: str, subject: str = "") -> ActionReading:
    """Strip a reply body to its new text and read the action in it."""
    return read_action(extract_new_text(body), subject)
