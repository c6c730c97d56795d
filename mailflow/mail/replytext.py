"""Reduce a reply to the text its author just wrote, then read the action keyword in it.

Stripping works on plain text (HTML bodies arrive through :mod:`mailflow.mail.htmltext`, with
blockquotes already turned into ``>`` lines). Lines are scanned top to bottom:

* a mail-gateway banner at the top (``PRECAUCIÓN: Este correo se originó fuera…``) is skipped;
* ``>``-quoted lines are dropped, and an attribution line above them (``El vie, 20 nov
  2026 a las 10:12, Ana <ana@…> escribió:``, in any of the languages of
  :mod:`mailflow.mail.quotemarks`, even wrapped over several lines) goes too, so
  bottom-posted and interleaved replies keep their new text;
* an attribution followed by unquoted text, a separator (``-----Mensaje original-----``,
  ``-----Ursprüngliche Nachricht-----``), a header block (``De:``/``Enviado:``/``Para:``…
  in any language), a phone footer matched whole (``Enviado desde mi iPhone``) or a
  signature delimiter (``-- ``) ends the new text: what follows is the original, unquoted;
* a signature at the end (``Saludos,`` + name + contact lines, see
  :mod:`mailflow.mail.signature`) is set apart: it is not the author's message, and its
  links are never an action's links.

Every test is bounded to a line of :data:`mailflow.mail.quotemarks.MAX_LINE` characters,
with patterns that cannot backtrack, so no input can make the reader slow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from mailflow.core.model import Action
from mailflow.mail.quotemarks import (
    RULE,
    attribution_span,
    clean,
    fold,
    header_block,
    header_label,
    is_blank,
    is_quoted,
    separator,
)
from mailflow.mail.signature import (
    banner_end,
    is_closing_footer,
    is_footer,
    signature_start,
    signoff_start,
)

__all__ = [
    "ActionReading",
    "Reduction",
    "Unclear",
    "extract_new_text",
    "fold",
    "read_action",
    "read_reply",
    "reduce_reply",
]

MAX_REPLY_CHARS = 200_000
_MAX_LINE = 1_000

# fmt: off
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
# First person past tense ("Aprobé.", "Publiqué https://…"), as clear as the participle.
# Unaccented, "rechace", "observe", "publique"… are also a command ("publique el lunes"), so
# only the accented spelling counts, except "aprobe", which is nothing else.
_PAST_FORMS: dict[str, Action] = {
    "aprobé": Action.APRUEBO, "aprobe": Action.APRUEBO, "rechacé": Action.RECHAZO,
    "observé": Action.OBSERVO, "derivé": Action.DERIVO, "entregué": Action.ENTREGO,
    "publiqué": Action.PUBLICADO, "eliminé": Action.ELIMINADO,
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
_WRAPPED_LINK = re.compile(r"\s{0,4}[^\s>]{0,200}[/=&?%#][^\s]{0,200}")
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


class Cut(StrEnum):
    """What ended the new text of a reply (``mailflow explain`` shows it)."""

    NONE = ""
    ATTRIBUTION = "attribution"
    SEPARATOR = "separator"
    HEADERS = "headers"
    FOOTER = "footer"
    DELIMITER = "delimiter"


@dataclass(frozen=True)
class Reduction:
    """The new text of a reply, and what the reader set apart to find it."""

    text: str
    signature: str = ""
    cut: Cut = Cut.NONE
    cut_line: str = ""
    quoted_lines: int = 0
    banner: str = ""


def extract_new_text(body: str) -> str:
    """Return only the text the author wrote: no quotes, reply headers, footers or signature."""
    return reduce_reply(body).text


def reduce_reply(body: str) -> Reduction:
    """Split a reply body into the author's new text, signature, and what was left out."""
    lines = body[:MAX_REPLY_CHARS].replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = banner_end(lines)
    kept: list[str] = []
    quoted = 0
    cut, cut_line = Cut.NONE, ""
    index = start
    while index < len(lines):
        line = lines[index]
        if is_blank(line):
            kept.append("")
            index += 1
            continue
        if is_quoted(line) or _inside_quote(lines, index):
            quoted += 1
            index += 1
            continue
        span = attribution_span(lines, index)
        if span:
            after = _next_nonblank(lines, index + span)
            if after is not None and is_quoted(lines[after]):
                index += span
                continue
            cut, cut_line = Cut.ATTRIBUTION, line
            break
        ended = _ends_new_text(lines, index)
        if ended is not Cut.NONE:
            cut, cut_line = ended, line
            break
        kept.append(line.rstrip())
        index += 1
    _drop_closing_footer(kept)
    at = signature_start(kept)
    own, signature = (kept, []) if at is None else (kept[:at], kept[at:])
    return Reduction(
        text="\n".join(own).strip(),
        signature="\n".join(signature).strip(),
        cut=cut,
        cut_line=cut_line.strip()[:200],
        quoted_lines=quoted,
        banner="\n".join(lines[:start]).strip()[:500],
    )


def _inside_quote(lines: list[str], index: int) -> bool:
    """Tell whether an unquoted line is the rest of a quoted line that a client wrapped.

    It sits between two quoted lines and carries on the first: a link's tail
    (``_nonce=3dd518)``), or a sentence cut at the wrap width that goes on in lower case.
    An answer typed between two quotes (``APRUEBO``, ``Sí, la del lunes``) is the author's.
    """
    if index == 0 or index + 1 >= len(lines):
        return False
    above, line, below = lines[index - 1], lines[index].strip(), lines[index + 1]
    if not (is_quoted(above) and is_quoted(below)) or not line:
        return False
    if "://" in above and _WRAPPED_LINK.fullmatch(line):
        return True
    quoted = above.lstrip(" \t>").rstrip()
    return len(quoted) >= 50 and quoted[-1] not in ".?!:;" and not line[0].isupper()


def _next_nonblank(lines: list[str], start: int) -> int | None:
    """Return the index of the next non-blank line at or after ``start`` (within 4 lines)."""
    for index in range(start, min(len(lines), start + 4)):
        if not is_blank(lines[index]):
            return index
    return None


def _ends_new_text(lines: list[str], index: int) -> Cut:
    """Tell whether the original message, a footer or a signature delimiter starts here."""
    raw = lines[index]
    text = clean(raw)
    if raw.rstrip("\n") in ("-- ", "--") or text in ("--", "__"):
        return Cut.DELIMITER
    if separator(raw):
        return Cut.SEPARATOR
    if header_block(lines, index):
        return Cut.HEADERS
    if is_footer(raw):
        return Cut.FOOTER
    if RULE.match(text.replace(" ", "")):
        following = _next_nonblank(lines, index + 1)
        if following is not None and (
            header_label(lines[following])
            or attribution_span(lines, following)
            or separator(lines[following])
        ):
            return Cut.SEPARATOR
    return Cut.NONE


def _drop_closing_footer(kept: list[str]) -> None:
    """Remove a footer phrase left as the last line (``Sent from a torch of pixels``)."""
    while kept and is_blank(kept[-1]):
        kept.pop()
    if len(kept) > 1 and is_closing_footer(kept[-1]):
        kept.pop()


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
    folded = clean(first)
    if not (newline and rest.strip() and len(folded) <= 60 and folded.startswith(_GREETINGS)):
        return text
    if any(_keyword(w) or w in _NEGATIONS for w in _WORD.findall(folded)):
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
    if first in _NEGATIONS and any(_keyword(w.group()) for w in words[1:5]):
        return ActionReading(action=None, source=source, unclear=Unclear.NEGATED, keyword=first)
    action = _keyword(words[0].group())
    if action is None:
        return ActionReading(action=None, source=source, unclear=Unclear.NO_KEYWORD)
    end = words[0].end()
    committee = _committee_words(words[1:4]) if action is Action.APRUEBO else 0
    if committee:
        action, end = Action.APRUEBO_COMITE, words[committee].end()
    unclear = _ambiguity(text, action, words[0].start(), end)
    rest = _without_signoff(text[end:].lstrip(" \t:;,.-–—!*_").strip())
    urls = tuple(u.rstrip(".,;:!?)>") for u in _URL.findall(rest))
    if unclear is not None:
        return ActionReading(
            action=None, text=rest, urls=urls, source=source, unclear=unclear, keyword=action.value
        )
    return ActionReading(action=action, text=rest, urls=urls, source=source, keyword=action.value)


def _without_signoff(text: str) -> str:
    """Drop a closing formula and the name under it from the text recorded with an action."""
    lines = text.split("\n")
    at = signoff_start(["-", *lines])  # the keyword's own line stands above the text
    return text if at is None else "\n".join(lines[: at - 1]).strip()


def _keyword(word: str) -> Action | None:
    """Return the action a word names: a keyword, a participle or an accented past form."""
    return _KEYWORDS.get(fold(word)) or _PAST_FORMS.get(word.casefold())


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
