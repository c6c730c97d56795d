"""Recognize where the quoted original of a reply starts, in the languages people write.

Three kinds of marks, each a table of words per language plus one bounded test:

* **attribution lines**: ``El vie, 20 nov 2026 a las 10:12, Ana <ana@…> escribió:``, and the
  same in Portuguese (``Em … escreveu:``), French (``Le … a écrit :``), German (``Am …
  schrieb …:``), Italian, Dutch, Russian, Polish, the Nordic languages…, wrapped over up to
  five lines; and the forms with no verb at all that start with the date (Gmail's old
  ``2016-10-24 15:36 GMT+02:00 Ana <ana@…>:``, Yandex's ``26.06.2014, 14:41, "Ana" <…>:``);
* **separators**: ``-----Mensaje original-----``, ``-------- Original Message --------``,
  ``-----Ursprüngliche Nachricht-----``, ``Inicio del mensaje reenviado:``…: a short line
  framed by dashes (or ending in a colon) that names a message or a forward;
* **header blocks**: ``De:`` / ``Enviado el:`` / ``Para:`` / ``Asunto:`` and their
  translations (``Von:``/``Gesendet:``, ``De :``/``Envoyé le :``, ``От:``/``Отправлено:``…),
  with or without a space before the colon, bold or not, in any order.

Every test reads one line cut to :data:`MAX_LINE` characters with patterns that cannot
backtrack, so no input makes the reader slow.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

MAX_LINE = 1_000
_MAX_ATTRIBUTION = 400  # characters of one attribution, all its lines joined
_ATTRIBUTION_LINES = 5

# Invisible characters clients leave in lines: zero-width spaces and joiners, the byte-order
# mark, and the one-character tracking mark that mail trackers append (U+1427).
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u1427\u200e\u200f"), None)


def fold(text: str) -> str:
    """Casefold and strip accents, so ``Aprobé``, ``APROBE`` and ``aprobe`` compare equal."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def clean(line: str) -> str:
    """Fold a line for comparison: bounded, unaccented, no bold marks or invisible characters."""
    return _clean(line[:MAX_LINE])


@lru_cache(maxsize=1024)  # every test of the reader looks at the lines around it again
def _clean(line: str) -> str:
    text = fold(line.translate(_INVISIBLE)).replace("*", "")
    return " ".join(text.split())


def is_blank(line: str) -> bool:
    """Tell whether a line shows nothing (only spaces and invisible characters)."""
    return not line[:MAX_LINE].translate(_INVISIBLE).strip()


def is_quoted(line: str) -> bool:
    """Tell whether a line is quoted with ``>``."""
    return line.lstrip(" \t").startswith(">")


# --------------------------------------------------------------------------- attributions

# fmt: off
# "wrote" in the languages the reader knows, folded (no accents, lower case).
_WROTE = (
    "escribio", "ha escrito", "escreveu", "wrote", "writes", "a ecrit", "schrieb", "schreef",
    "geschreven", "ha scritto", "scrisse", "написал", "написала", "написал(а)", "пише",
    "napisał", "napisała", "napisał(a)", "skrev", "kirjoitti", "đa viet", "napsal", "napisal",
    "napsal(a)", "napisao", "napisala", "irta", "a scris", "va escriure", "yazdı", "yazdi",
    "εγραψε", "kirjutas", "rakstija", "parase", "写道", "寫道", "のメッセージ",
)
# First words of an attribution line ("El vie…", "On Fri…", "Le 4 janv…", "Am 03.02…").
_OPENERS = (
    "el", "on", "le", "am", "em", "il", "op", "den", "w dniu", "dnia", "pa", "in data", "vao",
    "at", "---", "el dia", "no dia", "en",  # Yahoo: "En viernes, 20 de noviembre…"
)
# fmt: on
_WROTE_RE = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in _WROTE) + r")(?!\w)")
_WROTE_END = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in _WROTE) + r")\s*[:：]?$")
_SENT_END = re.compile(r"(?<!\w)sent\s*:$")
_OPENER_RE = re.compile(r"^(?:" + "|".join(re.escape(w) for w in _OPENERS) + r")(?!\w)")
# The date comes first: one of the first two words holds a digit ("pe 20. lokakuuta",
# "26.06.2014, 14:41", "Thu, 26 Jun 2014 14:00", "2022年1月1日(金) 9:00").
_DATE_FIRST = re.compile(r"^(?:[^\s\d]{0,12}\s{1,3})?[^\s]{0,12}\d")
_ISO_DATE = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b")
_ISO_DATE_TIME_ZONE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2},? \d{1,2}:\d{2}(?::\d{2})? (?:gmt|utc)")
_DIGIT = re.compile(r"\d")
_TIME = re.compile(r"\d{1,2}[:.h]\d{2}")
_ADDRESS = re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}\.[\w.-]{2,}")
_DASHES = " -–—=_*"


def _attribution_text(text: str) -> bool:
    """Tell whether a folded, joined group of lines reads as an attribution."""
    text = text.strip(_DASHES)
    if not text or len(text) > _MAX_ATTRIBUTION:
        return False
    colon = text.endswith((":", "："))
    if not (colon or text.endswith(">") or text[0].isdigit() or _WROTE_END.search(text)):
        return False  # the cheap test first: most lines end in none of these
    meta = "@" in text or _DIGIT.search(text) is not None
    if _WROTE_RE.search(text) and (colon or _WROTE_END.search(text)) and meta:
        return True
    if _SENT_END.search(text) and "@" in text and _TIME.search(text):
        return True
    if _ISO_DATE_TIME_ZONE.match(text):
        return True
    if _DATE_FIRST.match(text) and _ADDRESS.search(text) and (colon or text.endswith(">")):
        return bool(_TIME.search(text) or _ISO_DATE.match(text))
    return False


def _continues(lines: list[str], index: int) -> bool:
    """Tell whether a line carries on the one before it (a wrapped address or verb)."""
    text = clean(lines[index]).lstrip("> ")
    before = lines[index - 1].rstrip() if index else ""
    if before.endswith(("<", "(", "[", '"', ",")) or text.startswith(("<", "(", "[", "mailto:")):
        return True
    if _ADDRESS.match(text):
        return True
    return bool(_WROTE_RE.match(text))


def _anchors(lines: list[str], index: int) -> bool:
    """Tell whether an attribution of several lines may start at this line."""
    if _continues(lines, index) or is_quoted(lines[index]):
        return False
    text = clean(lines[index]).strip(_DASHES)
    return bool(
        _OPENER_RE.match(text) or _DATE_FIRST.match(text) or "@" in text or _WROTE_RE.search(text)
    )


def _group(lines: list[str], start: int) -> list[int]:
    """Return the indexes of the lines an attribution starting here may span.

    Blank lines are crossed only towards a wrapped address (``<`` / ``mailto:``), and a
    quoted line only when it is the verb (Polymail's ``> wrote:``).
    """
    picked = [start]
    index = start + 1
    while index < len(lines) and len(picked) < _ATTRIBUTION_LINES:
        line = lines[index]
        if is_blank(line):
            ahead = next(
                (i for i in range(index, min(len(lines), index + 3)) if not is_blank(lines[i])),
                None,
            )
            if ahead is None or not clean(lines[ahead]).startswith(("<", "mailto:")):
                break
            index = ahead
            continue
        rest = clean(line).lstrip("> ")
        if is_quoted(line) and not (
            rest in ("", ":") or rest.startswith(":") or _WROTE_RE.match(rest)
        ):
            break
        picked.append(index)
        index += 1
    return picked


def attribution_span(lines: list[str], start: int) -> int:
    """Return how many lines an attribution starting at ``start`` takes (0 if none starts).

    When the attribution really starts on a later line (the author's last line sits right
    above ``Op 16 aug. 2014 … schreef``), nothing starts here: the author's line is kept.
    """
    if is_blank(lines[start]) or is_quoted(lines[start]):
        return 0
    group = _group(lines, start)
    joined = ""
    anchored: bool | None = None
    for count, index in enumerate(group, start=1):
        joined = f"{joined} {clean(lines[index]).lstrip('> ')}".strip()
        if not _attribution_text(joined):
            continue
        if count > 1:
            anchored = _anchors(lines, start) if anchored is None else anchored
            if not anchored or _starts_later(lines, group[1:count]):
                return 0
        return index - start + 1
    return 0


def _starts_later(lines: list[str], tail: list[int]) -> bool:
    """Tell whether a complete attribution starts on one of the ``tail`` lines."""
    for offset, first in enumerate(tail):
        if not _anchors(lines, first):
            continue
        joined = " ".join(clean(lines[i]).lstrip("> ") for i in tail[offset:])
        if _attribution_text(joined):
            return True
    return False


# --------------------------------------------------------------------------- separators

# fmt: off
# Words that name the original or a forward inside a dashed separator line, folded.
_MESSAGE_WORDS = (
    "original", "message", "mensaje", "mensagem", "nachricht", "meddelelse", "besked",
    "origine", "forwarded", "reenviado", "reply", "antwort", "bericht", "messaggio", "melding",
    "meddelande", "viesti", "wiadomosc", "wiadomość", "сообщение", "sprava", "zprava", "inoltrato",
    "weitergeleitete", "encaminhada", "doorgestuurd", "videresendt", "vidarebefordrat",
    "пересылаемое", "correo", "e-mail", "email",
)
# Lines that introduce a forwarded or original message without dashes, folded.
_INTRODUCTIONS = (
    "inicio del mensaje reenviado:", "begin forwarded message:", "mensaje reenviado:",
    "forwarded message:", "debut du message reexpedie :", "debut du message reexpedie:",
    "anfang der weitergeleiteten nachricht:", "messaggio inoltrato:", "mensagem encaminhada:",
    "inicio da mensagem reencaminhada:", "doorgestuurd bericht:", "original message:",
    "mensaje original:", "message d'origine :", "message d'origine:",
)
# fmt: on
_FRAMED = re.compile(r"^[-=_~—–]{2,}\s?(?P<inner>[^-=_~—–][^\n]{0,60}?)\s?(?:[-=_~—–]{2,}|:)?$")
RULE = re.compile(r"^[-=_~—–]{4,}$")


def separator(line: str) -> bool:
    """Tell whether a line is a separator naming the original or a forwarded message."""
    text = clean(line)
    if not text or len(text) > 90:
        return False
    if text.startswith(_INTRODUCTIONS):
        return True
    framed = _FRAMED.match(text)
    if framed is None:
        return False
    inner = framed.group("inner")
    return any(word in inner for word in _MESSAGE_WORDS) or bool(_WROTE_RE.search(inner))


# --------------------------------------------------------------------------- header blocks

# fmt: off
_LABELS: dict[str, str] = {
    **dict.fromkeys(
        ("de", "from", "von", "van", "da", "od", "fra", "fran", "от", "від", "remitente",
         "mittente", "remetente", "afzender", "lahettaja", "kimden", "expediteur"), "from"),
    **dict.fromkeys(
        ("enviado", "enviado el", "enviados", "enviada", "enviado em", "enviada em", "sent",
         "sent on", "gesendet", "verzonden", "envoye", "envoye le", "inviato", "inviato il",
         "sendt", "skickat", "wyslano", "wysłano", "отправлено", "надіслано", "date", "fecha",
         "datum", "dato", "data", "message du", "lahetetty", "paivamaara", "gonderildi",
         "tarih"), "date"),
    **dict.fromkeys(
        ("to", "para", "an", "aan", "a", "til", "till", "do", "кому", "per", "destinatario",
         "destinatarios", "empfanger", "vastaanottaja", "kime", "pour", "à"), "to"),
    **dict.fromkeys(
        ("cc", "cco", "bcc", "kopie", "copie", "copie a", "copia", "copia para", "kopia",
         "копия", "kopio", "bilgi"), "cc"),
    **dict.fromkeys(
        ("subject", "asunto", "betreff", "onderwerp", "objet", "oggetto", "emne", "amne",
         "ämne", "temat", "тема", "assunto", "aihe", "sujet", "konu", "predmet"), "subject"),
    **dict.fromkeys(
        ("reply-to", "reply to", "responder a", "risposta", "antwort an", "repondre a",
         "responder para", "importancia", "importance", "prioridad", "priority"), "reply"),
}
# fmt: on
_LABEL = re.compile(r"^[\s_]{0,6}(?P<label>[^\W\d_][^:：\n]{0,30}?)\s{0,3}[:：](?P<value>.*)$")
_MAIL_DATE = re.compile(r"\d{1,2}[:.]\d{2}")
_HEADER_LOOKAHEAD = 12
_WRAPPED_VALUE_LINES = 3


def header_label(line: str) -> tuple[str, str] | None:
    """Return ``(category, value)`` when the line is ``Label: value`` of a mail header."""
    match = _LABEL.match(clean(line))
    if match is None:
        return None
    category = _LABELS.get(match.group("label").strip())
    return None if category is None else (category, match.group("value").strip())


def header_block(lines: list[str], start: int) -> bool:
    """Tell whether a quoted original's header block (``De:``, ``Enviado:``…) starts here.

    Two different labels make a block when one is the sender, or three labels at least, or a
    date that carries a time (``Date: Wed, 16 May 2012 00:15:02``). ``Fecha: 12/12/2026`` and
    ``Para: Facebook`` in a person's own text do not.
    """
    first = header_label(lines[start])
    if first is None:
        return False
    found = [first]
    loose = 0
    for index in range(start + 1, min(len(lines), start + _HEADER_LOOKAHEAD)):
        if is_blank(lines[index]):
            break
        label = header_label(lines[index])
        if label is None:
            loose += 1  # a wrapped value: a subject on two lines, a Cc list on three
            if loose > _WRAPPED_VALUE_LINES:
                break
            continue
        loose = 0
        found.append(label)
    categories = {category for category, _ in found}
    if len(categories) < 2:
        return False
    if "from" in categories or len(found) >= 3:
        return True
    dates = [value for category, value in found if category == "date"]
    return any(_MAIL_DATE.search(value) for value in dates)
