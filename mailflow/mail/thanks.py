"""Tell a reply that only thanks or acknowledges ("Entendido, gracias") from a message.

Such a reply is archived and never answered, open request or closed: answering it (with
help, a note confirmation or the request's outcome) is exactly the noise people complain
of. Anything more than thanks and courtesy words, a question above all, is a message.
Pure, like :mod:`mailflow.mail.replytext`, whose :func:`fold` it shares.
"""

from __future__ import annotations

import re

from mailflow.mail.replytext import fold

# fmt: off
_THANKS = frozenset({
    "gracias", "muchas", "muchisimas", "mil", "entendido", "entendida", "entendidos",
    "recibido", "recibida", "recibidos", "ok", "okay", "oki", "vale", "perfecto", "perfecta",
    "excelente", "genial", "listo", "enterado", "enterada", "anotado", "anotada", "acuerdo",
    "buenisimo", "thanks", "thank",
})
_POLITE = frozenset({
    "de", "la", "el", "lo", "los", "las", "su", "sus", "por", "y", "a", "e", "muy", "bien",
    "usted", "ustedes", "todo", "todos", "saludos", "cordiales", "atentamente", "atte",
    "quedo", "quedamos", "tomo", "nota", "informacion", "aviso", "confirmacion", "ayuda",
    "estimado", "estimada", "estimados", "estimadas", "hola", "buenos", "buenas", "dias",
    "tardes", "noches", "un", "una", "abrazo", "slds", "cordialmente", "you",
})
_CONNECTORS = frozenset({"de", "del", "la", "las", "los", "el", "y", "e", "en", "para"})
# fmt: on
_WORD = re.compile(r"[^\W\d_]+")
_MAX_CHARS = 2000


def is_thanks(text: str) -> bool:
    """Tell whether the new text of a reply only thanks or acknowledges.

    The first lines must be made of thanks and courtesy words only, with at least one
    thanks; what follows may only be a signature (up to four short lines of capitalised
    words, such as a name and a position). A question mark anywhere makes it a message.
    """
    head = text[:_MAX_CHARS]
    lines = [line.strip() for line in head.splitlines() if line.strip()]
    if not lines or "?" in head:
        return False
    thanked = False
    done = 0
    for line in lines:
        words = [fold(w) for w in _WORD.findall(line)]
        if not words or not all(w in _THANKS or w in _POLITE for w in words):
            break
        thanked = thanked or any(w in _THANKS for w in words)
        done += 1
    signature = lines[done:]
    return thanked and len(signature) <= 4 and all(_signature_line(x) for x in signature)


def _signature_line(line: str) -> bool:
    """Tell whether a line reads like a name or a position (``Lic. Ana Pérez``, ``Jefa UTI``)."""
    words = _WORD.findall(line)
    if len(words) > 7:
        return False
    return all(w[0].isupper() or fold(w) in _CONNECTORS for w in words)
