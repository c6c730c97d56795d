"""Tell a person's own words from what their client, their gateway and their habits add.

* **phone and app footers** (``Enviado desde mi iPhone``, ``Obtener Outlook para Android``,
  ``Von meinem Mobilgerät gesendet``) are matched whole: the footer phrase and a device or
  app name, nothing else; ``Enviado desde mi casa, mañana reviso el resto.`` is a sentence;
* **gateway banners** above the text (``PRECAUCIÓN: Este correo se originó fuera de la
  organización…``, ``CAUTION: This email originated from outside…``) are skipped;
* **signatures** without the ``-- `` delimiter: a closing formula (``Saludos,``,
  ``Atentamente``, ``Regards``, ``Cordialement``, ``Mit freundlichen Grüßen``…) with the
  name and contact lines below it, a ``-Ana`` line, or a name followed by a title, phone,
  address or link; and legal disclaimers. Links in a signature are never an action's links.
"""

from __future__ import annotations

import itertools
import re

from mailflow.mail.quotemarks import RULE, clean, is_blank

# fmt: off
# The opening words of a device footer, folded: "sent from", "enviado desde mi", "von meinem".
_FOOTER_OPENING = re.compile(
    r"^\(?(?:sent|enviado|enviada|envoye|gesendet|verzonden|inviato|sendt|skickat|skickad|"
    r"wyslane|wysłane|отправлено|lahetetty|get|obtener|descargue|descarga|descargar|obtenez|"
    r"hol dir)"
    r"(?: (?:from|with|via|using|on|desde|con|depuis|avec|a partir de|von|met|vanaf|da|de|do|"
    r"fra|fran|från|z|с|из|for|para|pour|fur))?"
    r"(?: (?P<mine>my|mi|mon|ma|meinem|mijn|il mio|mio|min|mitt|moim|meu|minha|mein|моего)|"
    r" (?:a|an|el|la|le|un|una))?\b"
)
_VON_MEINEM = re.compile(r"^von meinem [\w-]{2,30}(?: [\w-]{2,30})? gesendet")
# Devices and mail apps a footer names, folded.
_DEVICES = frozenset({
    "iphone", "ipad", "ipod", "android", "blackberry", "samsung", "galaxy", "huawei", "xiaomi",
    "motorola", "nokia", "htc", "lg", "sony", "pixel", "oneplus", "smartphone", "movil",
    "celular", "telefono", "mobile", "phone", "cell", "cellphone", "tablet", "outlook", "yahoo",
    "gmail", "mail", "mailbox", "airmail", "sparrow", "k-9", "spark", "correo", "windows",
    "mobilgerat", "mobiltelefon", "handy", "portable", "telephone", "mobiel", "telefoon",
    "cellulare", "telemovel", "telefone", "iphone'a", "mobilen", "mobil", "proton",
    "protonmail", "thunderbird", "bluemail", "aquamail", "zimbra", "hey", "superhuman",
    "tableta", "dispositivo", "device", "ipados", "ios",
})
_CLOSINGS = (
    # es
    "saludos", "saludos cordiales", "un saludo", "cordial saludo", "cordiales saludos",
    "atentamente", "cordialmente", "gracias", "muchas gracias", "mil gracias", "atte", "att",
    "un abrazo", "abrazos", "quedo atento", "quedo atenta", "quedo a la espera",
    "sin otro particular", "reciba un cordial saludo", "saludos y gracias", "bendiciones",
    # en
    "regards", "best regards", "kind regards", "warm regards", "best", "cheers", "thanks",
    "thank you", "thanks again", "many thanks", "thx", "sincerely", "yours", "yours truly",
    "yours sincerely", "all the best", "greetings", "br", "rgds", "best wishes", "cordially",
    "thanks & regards", "thanks and regards", "talk soon", "take care",
    # pt
    "atenciosamente", "cumprimentos", "abracos", "obrigado", "obrigada", "saudacoes",
    "melhores cumprimentos", "um abraco",
    # fr
    "cordialement", "bien cordialement", "bien a vous", "salutations", "merci", "a bientot",
    "bonne journee", "meilleures salutations", "amicalement",
    # de
    "mit freundlichen grussen", "mit freundlichen grußen", "freundliche grusse", "viele grusse",
    "beste grusse", "liebe grusse", "grusse", "gruß", "gruss", "lg", "mfg", "vg", "danke",
    # it
    "cordiali saluti", "distinti saluti", "saluti", "un saluto", "grazie", "a presto",
    # nl
    "met vriendelijke groet", "met vriendelijke groeten", "vriendelijke groet", "groeten",
    "groet", "mvg", "bedankt",
    # nordic, pl, ru, fi
    "med venlig hilsen", "venlig hilsen", "mvh", "hilsen", "kh", "vh", "med vennlig hilsen",
    "vennlig hilsen", "med vanliga halsningar", "vanliga halsningar", "halsningar", "hej da",
    "pozdrawiam", "z powazaniem", "z poważaniem", "pozdrowienia", "с уважением", "спасибо",
    "ystavallisin terveisin", "terveisin",
)
_BANNER_WORDS = (
    "originated from outside", "originates from outside", "outside of the organization",
    "outside of this company", "outside your organization", "outside the organization",
    "external sender", "external email", "external e-mail", "do not click links",
    "se origino fuera", "se origino afuera", "fuera de la organizacion",
    "fuera de nuestra organizacion", "fuera de la institucion", "remitente externo",
    "correo externo", "no haga clic en los enlaces", "no haga clic en enlaces",
    "no abra los archivos adjuntos", "no abra archivos adjuntos", "de l'exterieur",
    "von ausserhalb", "von extern", "dall'esterno", "fora da organizacao", "buiten de organisatie",
    "came from outside", "sent from outside", "proviene de fuera", "proviene de un remitente",
    "remitente desconocido", "verifique el remitente", "recognize the sender",
    "reconozca al remitente", "enlaces ni abra", "links or open attachments",
)
_BANNER_OPENINGS = (
    "caution", "warning", "external", "[external]", "[externo]", "precaucion", "atencion",
    "aviso", "advertencia", "cuidado", "attention", "achtung", "vorsicht", "attenzione",
    "atencao", "let op", "externo", "externe", "extern",
)
_DISCLAIMERS = (
    "disclaimer", "confidentiality notice", "aviso de confidencialidad", "aviso legal",
    "clausula de confidencialidad", "this message is intended only", "this e-mail is intended",
    "this email is intended", "this message and any attachments", "the information contained in",
    "la informacion contenida en", "este mensaje y sus anexos", "este correo y sus anexos",
    "este mensaje es confidencial", "este correo electronico es confidencial",
    "este mensaje puede contener", "ce message et ses pieces jointes", "diese e-mail enthalt",
    "questo messaggio e",
)
_HONORIFICS = frozenset({
    "lic", "ing", "dr", "dra", "abg", "arq", "msc", "mgr", "mg", "prof", "sr", "sra", "srta",
    "econ", "tec", "ph.d", "phd", "mr", "mrs", "ms",
})
_TITLE_WORDS = frozenset({
    "jefe", "jefa", "director", "directora", "responsable", "tecnico", "tecnica", "profesional",
    "unidad", "direccion", "agencia", "ministerio", "area", "encargado", "encargada", "analista",
    "coordinador", "coordinadora", "asistente", "secretaria", "secretario", "gerente",
    "departamento", "oficina", "institucion", "universidad", "administrador", "administradora",
    "comunicacion", "manager", "head", "officer", "department", "director,", "ceo", "cto",
    "gobierno", "municipal", "viceministerio", "servicio", "servicios", "asesor", "asesora",
})
# Words of a legal notice anywhere in it, folded.
_DISCLAIMER_WORDS = (
    "confidential", "intended recipient", "intended solely", "intended only", "privileged",
    "confidencial", "destinatario", "uso exclusivo", "si usted no es", "si no es usted",
    "disclaimer", "aviso legal", "vertraulich", "riservat", "confidentiel",
)
_BOILERPLATE_LINES = 30
_LIST_FOOTER = ("mailing list", "listinfo", "unsubscribe", "darse de baja", "lista de correo")
# fmt: on
_PHONE = re.compile(r"(?:\+|\b)\d[\d ().-]{6,18}\d\b")
_CONTACT_LABEL = re.compile(
    r"^(?:tel|telf|telefono|phone|cel|cell|movil|mobile|fax|whatsapp|e-?mail|correo|web|www|"
    r"direccion|address|oficina|office|ext|interno|int)\b\.?"
)
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
_URL_OR_MAIL = re.compile(r"https?://|www\.|[\w.+-]+@[\w-]+\.\w")
_NAME_WORD = re.compile(r"^[^\W\d_][^\W\d_'’.-]*\.?$")
_DASHES_ONLY = re.compile(r"^[-–—_=~*]{1,80}$")
_MAX_SIGNATURE_LINES = 10
_MAX_SIGNED_LINES = 16  # below a closing formula: name, post, unit, phones, links, address
_MAX_TAIL_LINES = 40


def is_footer(line: str) -> bool:
    """Tell whether a whole line is a phone or mail-app footer (``Enviado desde mi iPhone``)."""
    text = clean(line)
    if not text or len(text) > 120:
        return False
    text = _without_links(text)
    if _VON_MEINEM.match(text):
        return True
    opening = _FOOTER_OPENING.match(text)
    if opening is None or opening.end() == 0:
        return False
    words = [w.strip(".,;:!()<>'\"") for w in text[opening.end() :].split()]
    words = [w for w in words if w]
    if not words:
        return False
    rest = text[opening.end() :]
    named = [w for w in words[:4] if w in _DEVICES or w.endswith(("phone", "mail", "pad"))]
    if named and not _sentence_goes_on(rest, words):
        return True
    # "Sent from my Wiko RIDGE FAB 4G": the phrase and a few words naming the device, and
    # nothing else; "Enviado desde mi casa, mañana reviso el resto." is a sentence.
    return bool(opening.group("mine")) and len(words) <= 5 and not re.search(r"[,;:!?]", rest)


def _sentence_goes_on(rest: str, words: list[str]) -> bool:
    """Tell whether a footer-like phrase is the start of a longer sentence of the author."""
    _, comma, tail = rest.partition(",")
    if not comma:
        return len(words) > 8
    first = tail.split()[:1]
    # "Sent from my cell, please excuse any typos" still is the footer.
    return not (first and first[0] in ("please", "excuse", "disculpe", "disculpen", "perdon"))


def is_closing_footer(line: str) -> bool:
    """Tell whether a short phrase line ends a reply the way a footer does, without a device.

    Only used for the last line before the quoted original: ``Sent from a magnificent torch
    of pixels`` there is the client's, while the same words mid-text would be the author's.
    """
    text = _without_links(clean(line))
    opening = _FOOTER_OPENING.match(text)
    if opening is None or opening.end() == 0 or not text.startswith(("sent ", "enviado ")):
        return False
    rest = text[opening.end() :]
    return len(rest.split()) <= 6 and not re.search(r"[,.;!?]", rest.rstrip("."))


def _without_links(text: str) -> str:
    """Remove links (``<https://…>``, markdown ``[texto](…)``) from a folded line."""
    text = re.sub(r"<?https?://\S*>?|\[([^\]]{0,60})\]\([^)]{0,200}\)", r" \1 ", text)
    return " ".join(text.strip(" ()<>").split())


def banner_end(lines: list[str]) -> int:
    """Return the index after a mail-gateway banner at the top, or 0 when there is none."""
    start = next((i for i, line in enumerate(lines[:6]) if not is_blank(line)), None)
    if start is None:
        return 0
    end = start
    while end < len(lines) and end - start < 8 and not is_blank(lines[end]):
        end += 1
    paragraph = " ".join(clean(line) for line in lines[start:end])
    if len(paragraph) > 900:
        return 0
    opening = paragraph.lstrip("[(*!").startswith(_BANNER_OPENINGS)
    signals = sum(w in paragraph for w in _BANNER_WORDS)
    if (
        (signals and opening)
        or signals >= 2
        or paragraph
        in (
            "[external]",
            "[externo]",
            "external",
            "externo",
        )
    ):
        return end
    return 0


def signature_start(lines: list[str]) -> int | None:
    """Return the index where a trailing signature or disclaimer starts, or None.

    The lines are the author's new text, quotes already removed. Something must stay above
    the signature: a reply that is only ``Gracias`` is the author's words.
    """
    content = [i for i, line in enumerate(lines) if not is_blank(line)]
    # A signature or disclaimer is at the end: only the last lines can start one.
    for index in content[1:][-_MAX_TAIL_LINES:]:
        if _starts_signature(lines, index):
            return index
    return None


def _starts_signature(lines: list[str], index: int) -> bool:
    """Tell whether the text from ``index`` to the end is a signature, footer or disclaimer.

    A signature opens with a closing formula, a ``-Ana`` line, a rule or a full name; its
    lines are short (name, post, unit, address, phones, links), and a legal disclaimer or a
    list footer may follow them.
    """
    text = clean(lines[index])
    if text.startswith(_DISCLAIMERS) or any(w in text for w in _LIST_FOOTER):
        return True
    kind = _opening(lines, index, text)
    if kind is None:
        return False
    tail = [line for line in lines[index + 1 :] if not is_blank(line)]
    block = list(itertools.takewhile(_signature_line, tail[:_MAX_SIGNED_LINES]))
    legal = tail[len(block) :]
    if legal and not _boilerplate(legal, strict=kind in ("rule", "name")):
        return False
    contact = any(map(_contact_line, block))
    if kind == "closing":  # "Saludos, / Ana / Tel. …": a sign-off that carries contacts
        return contact or bool(legal)
    if len(block) > _MAX_SIGNATURE_LINES:
        return False
    if kind == "dash":
        return True
    if kind == "rule":
        return bool(legal) or (bool(block) and (_name_line(block[0]) or contact))
    return bool(block) and (contact or bool(legal) or _titled(lines[index], block))


def _opening(lines: list[str], index: int, text: str) -> str | None:
    """Return how a signature may open at this line, or None."""
    if _is_closing(text):
        return "closing"
    if _dash_name(lines[index]):
        return "dash"
    if _DASHES_ONLY.match(text.replace(" ", "")):  # "____", "—", "=-=-="
        return "rule"
    if _signed_name(lines, index):
        return "name"
    return None


def _boilerplate(lines: list[str], *, strict: bool) -> bool:
    """Tell whether the lines below a signature are a legal notice or a list footer.

    ``strict`` (below a rule or a bare name, weaker openings than ``Saludos,``): a notice
    that opens as one, or two of its words, so that an author's sentence about
    confidential data is not taken for one.
    """
    cleaned = [clean(line) for line in lines[:_BOILERPLATE_LINES]]
    text = " ".join(cleaned)
    if any(w in text for w in _LIST_FOOTER) or any(c.startswith(_DISCLAIMERS) for c in cleaned):
        return True
    found = sum(w in text for w in _DISCLAIMER_WORDS)
    return found >= (2 if strict else 1)


def _titled(name: str, tail: list[str]) -> bool:
    """Tell whether a name block reads as a signature without contacts: a title or a post.

    ``Lic. María Quispe`` / ``Jefa de la Unidad de Gestión de Servicios`` / ``Agencia de
    Ejemplo``: an honorific before the name, or a post or an institution below it.
    """
    if clean(name).split()[0].rstrip(".") in _HONORIFICS:
        return True
    return any(_TITLE_WORDS.intersection(clean(line).replace(",", " ").split()) for line in tail)


def _signed_name(lines: list[str], index: int) -> bool:
    """Tell whether a line opens a name block: a full name in a paragraph of its own lines.

    ``Ana Pérez`` right above ``Jefa de Comunicación`` or ``Tel. 2-2123456``; one word
    alone (``Gracias``, ``APRUEBO``) is never taken for a name.
    """
    if not is_blank(lines[index - 1]) or index + 1 >= len(lines) or is_blank(lines[index + 1]):
        return False
    words = lines[index].split()
    return len(words) >= 2 and _name_line(lines[index]) and not lines[index].isupper()


def signoff_start(lines: list[str]) -> int | None:
    """Return where a closing formula and the name under it start (``Saludos,`` / ``Ana``).

    The sign-off stays in the author's message (it is what they wrote), but it is not part
    of the text recorded with an action.
    """
    content = [i for i, line in enumerate(lines) if not is_blank(line)]
    for index in content[1:][-_MAX_SIGNATURE_LINES:]:
        tail = [line for line in lines[index + 1 :] if not is_blank(line)]
        if _is_closing(clean(lines[index])) and all(_signature_line(line) for line in tail):
            return index
    return None


def _is_closing(text: str) -> bool:
    """Tell whether a folded line is a closing formula, alone or with a short name."""
    text = text.strip(" ,.!;:-–—")
    if len(text) > 60:
        return False
    for closing in _CLOSINGS:
        if text == closing:
            return True
        if text.startswith(closing) and text[len(closing)] in " ,!.":
            rest = text[len(closing) :].strip(" ,!.")
            words = rest.split()
            if rest and len(words) <= 3 and not any(w in _NOT_NAMES for w in words):
                return True
            if not rest:
                return True
    return False


# Words after a closing that make it a sentence ("Gracias, lo reviso mañana").
_NOT_NAMES = frozenset(
    {
        "lo", "la", "le", "los", "las", "por", "de", "del", "a", "al", "para", "que", "se", "me",
        "te", "nos", "y", "en", "el", "un", "una", "su", "mi", "tu", "for", "to", "the", "and",
        "you", "i", "we", "in", "on", "of", "it", "again", "so", "much", "very", "mucho",
        "muchas", "todo", "todos", "pour", "et", "ya", "no", "si", "sí",
    }
)  # fmt: skip


def _dash_name(line: str) -> bool:
    """Tell whether a line is ``-Ana``, ``—Ana Pérez`` or ``/John``: a signed name.

    The dash touches the name: ``- Ana`` is an item of a list.
    """
    whole = line.strip()
    if whole[:1] not in ("-", "–", "—", "~", "/") or whole.startswith("--"):
        return False
    stripped = whole.lstrip("-–—~/")
    if not stripped or stripped[0].isspace():
        return False
    words = stripped.split()
    return 0 < len(words) <= 4 and all(_NAME_WORD.match(w) for w in words) and words[0][0].isupper()


def _name_line(line: str) -> bool:
    """Tell whether a line is a person's or a unit's name: one to five capitalised words."""
    words = line.strip().rstrip(".").split()
    if not 0 < len(words) <= 5 or len(line) > 60:
        return False
    return all(_NAME_WORD.match(w) and (w[0].isupper() or len(w) <= 3) for w in words)


def _contact_line(line: str) -> bool:
    """Tell whether a line gives a phone, an address, a link or a labelled contact."""
    text = clean(line)
    if _URL_OR_MAIL.search(text) or _CONTACT_LABEL.match(text):
        return True
    return any(_phone(match.group()) for match in _PHONE.finditer(text))


def _phone(digits: str) -> bool:
    """Tell whether a run of digits is a phone number rather than a date (2026-12-10)."""
    return sum(c.isdigit() for c in digits) >= 7 and not _DATE.search(digits)


def _signature_line(line: str) -> bool:
    """Tell whether a line may sit in a signature: short, and no sentence of the author's.

    A post, a unit, an address (``Av. Camacho Nº 1234, piso 3, La Paz``) or a phone fit; a
    long line that ends like a sentence does not.
    """
    text = line.strip()
    if len(text) > 90:
        return False
    if _contact_line(line) or _name_line(line) or RULE.match(text):
        return True
    words = len(text.split())
    if text.endswith((".", "?", "!", ":")):  # a sentence, unless it is a short post
        return words < 5
    return True


def _short_block(tail: list[str]) -> bool:
    """Tell whether lines are few and short enough to be a signature."""
    return 0 < len(tail) <= _MAX_SIGNATURE_LINES and all(map(_signature_line, tail))
