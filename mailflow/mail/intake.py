"""Read the labelled fields of a request mail and say exactly what is missing or wrong.

A field starts on a line ``Label: value`` (or ``Label<TAB>value``, which is how an HTML
table row reads after :func:`mailflow.mail.htmltext.html_to_text`); labels ignore case, accents,
bullets and ``*bold*`` marks. A table whose first row holds the labels and the next row the
values reads the same. A mail whose text part yields fewer fields than its HTML part (Outlook
writes a table's ``text/plain`` alternative one cell per line) is read from the HTML.

A value goes on over the following lines until the next label
or a blank line; ``Objetivo`` and ``Resumen`` go on over blank lines too, until a label,
a signature or a closing (``Saludos``, ``Atentamente``…). Problems carry the field key and a
Spanish message, so the daemon can answer with one list and a template to fill.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from mailflow.mail.dates import find_date, parse_date, parse_period, weekday_mismatch
from mailflow.mail.htmltext import html_to_text
from mailflow.mail.replytext import fold

MAX_INTAKE_CHARS = 100_000
_MAX_LABEL = 60

# fmt: off
LABELS: Mapping[str, str] = {
    **dict.fromkeys(("tipo", "tipo de publicacion", "procedimiento", "tipo de solicitud"), "tipo"),
    **dict.fromkeys(("titulo", "titulo de la publicacion", "tema"), "titulo"),
    **dict.fromkeys(("objetivo", "objetivos", "objetivo de la publicacion"), "objetivo"),
    **dict.fromkeys(("resumen", "descripcion", "contenido", "mensaje"), "resumen"),
    **dict.fromkeys(("publicar desde", "desde", "fecha de inicio", "inicio", "publicacion desde",
                     "fecha desde", "inicio de publicacion"), "publicar_desde"),
    **dict.fromkeys(("publicar hasta", "hasta", "fecha de fin", "fin", "publicacion hasta",
                     "fecha hasta", "fin de publicacion", "fecha final"), "publicar_hasta"),
    **dict.fromkeys(("tiempo de publicacion", "periodo", "periodo de publicacion",
                     "vigencia"), "periodo"),
    **dict.fromkeys(("unidad", "unidad solicitante", "area", "unidad organizacional"), "unidad"),
    **dict.fromkeys(("protegida", "informacion protegida", "protegida por ley",
                     "protegida por la ley"), "protegida"),
    **dict.fromkeys(("enlace", "url", "link", "enlace de la publicacion"), "enlace"),
    **dict.fromkeys(("cronograma",), "cronograma"),
}
FIELD_NAMES: Mapping[str, str] = {
    "tipo": "Tipo", "titulo": "Título", "objetivo": "Objetivo", "resumen": "Resumen",
    "publicar_desde": "Publicar desde", "publicar_hasta": "Publicar hasta", "unidad": "Unidad",
    "protegida": "Protegida", "enlace": "Enlace", "cronograma": "Cronograma",
}
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "promocion": ("titulo", "objetivo"),
    "imagenes_diseno": ("titulo", "objetivo"),
    "informacion_especifica": ("titulo", "objetivo", "resumen", "publicar_desde",
                               "publicar_hasta"),
    "directa": ("titulo",),
    "eliminacion": ("enlace",),
}
# Checked in order: the first procedure whose phrase occurs in the folded value wins.
PROCEDURE_PHRASES: tuple[tuple[str, str], ...] = (
    ("informacion_especifica", "informacion especifica"),
    ("informacion_especifica", "especifica"),
    ("imagenes_diseno", "imagenes con diseno"),
    ("imagenes_diseno", "diseno"),
    ("imagenes_diseno", "imagen"),
    ("eliminacion", "elimina"),
    ("eliminacion", "borra"),
    ("promocion", "promocion"),
    ("directa", "directa"),
    ("directa", "fotografia"),
    ("directa", "informativa cotidiana"),
    ("directa", "enlace"),
    ("directa", "video"),
)
# The manual's seven publication types (§7): 4 to 7 are the administrator's own.
_MANUAL_TYPES = ("promocion", "imagenes_diseno", "informacion_especifica") + ("directa",) * 4
_LONG_FIELDS = frozenset({"objetivo", "resumen", "cronograma"})
_CLOSINGS = ("saludos", "atentamente", "cordialmente", "gracias", "muchas gracias", "att.",
             "atte", "sin otro particular", "--")
_YES = frozenset({"si", "s", "yes", "x", "1", "verdadero", "protegida", "si, protegida"})
_NO = frozenset({"no", "n", "0", "falso", "ninguna", "no protegida"})
# fmt: on
_URL = re.compile(r"https?://\S{1,2000}")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: the field key and what to fix, in Spanish."""

    field: str
    message: str


@dataclass(frozen=True)
class Intake:
    """The fields read from a request and every problem found with them."""

    procedure: str | None = None
    titulo: str = ""
    objetivo: str = ""
    resumen: str = ""
    publicar_desde: date | None = None
    publicar_hasta: date | None = None
    unidad: str = ""
    protegida: bool | None = None
    enlace: str = ""
    raw: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        """Tell whether the request can be opened as it is."""
        return not self.problems


def read_fields(text: str) -> dict[str, str]:
    """Return the raw labelled values of a text body by field key; ``>``-quoted lines are skipped.

    The first occurrence of a label wins. Pass the new text of a reply (see
    :func:`mailflow.mail.replytext.extract_new_text`) so a quoted template does not count.
    """
    values: dict[str, list[str]] = {}
    current: str | None = None
    blank = False
    for line in _header_rows(text[:MAX_INTAKE_CHARS].replace("\r\n", "\n").split("\n")):
        stripped = line.strip()
        if stripped.startswith(">"):
            current = None
            continue
        key, value = _label(stripped)
        if key is not None:
            current = None if key in values else key
            if current is not None:
                values[current] = [value] if value else []
            blank = False
        elif current is None:
            continue
        elif not stripped:
            blank = bool(values[current])
        elif fold(stripped).startswith(_CLOSINGS) or (blank and current not in _LONG_FIELDS):
            current = None
        else:
            values[current].extend(["", stripped] if blank else [stripped])
            blank = False
    return {k: _join(k, v) for k, v in values.items()}


def _header_rows(lines: list[str]) -> list[str]:
    """Turn a table row of labels and the row of values below it into ``Label: value`` lines."""
    out: list[str] = []
    index = 0
    while index < len(lines):
        cells = [c.strip() for c in lines[index].split("\t")]
        named = [c for c in cells if c]
        if (
            len(named) >= 2
            and index + 1 < len(lines)
            and all(_label(f"{c}:")[0] for c in named)
            and len(values := lines[index + 1].split("\t")) == len(cells)
        ):
            out.extend(f"{c}: {v.strip()}" for c, v in zip(cells, values, strict=True) if c)
            index += 2
            continue
        out.append(lines[index])
        index += 1
    return out


def _join(key: str, parts: list[str]) -> str:
    """Join value lines: paragraphs for long fields, one line for the others."""
    if key in _LONG_FIELDS:
        return "\n".join(parts).strip()
    return " ".join(p for p in parts if p).strip()


def _label(line: str) -> tuple[str | None, str]:
    """Split ``Label: value`` / ``Label<TAB>value`` when the label is a known one."""
    head = line[: _MAX_LABEL + 1]
    cuts = [i for i in (head.find(":"), head.find("\t")) if i > 0]
    if not cuts:
        return None, ""
    cut = min(cuts)
    label = fold(line[:cut]).replace("*", " ").replace("_", " ")
    label = " ".join(label.strip(" -•·>0123456789.)").split())
    key = LABELS.get(label)
    if key is None:
        return None, ""
    return key, line[cut + 1 :].strip(" \t:*")


def parse_intake(
    text: str,
    today: date,
    *,
    html: bool = False,
    aliases: Mapping[str, Sequence[str]] | None = None,
    required: Mapping[str, Sequence[str]] | None = None,
) -> Intake:
    """Read a request body (plain text, or HTML with ``html=True``) and validate its fields.

    ``today`` gives the year of dates written without one (``lunes 1 de diciembre``);
    ``aliases`` adds procedure wordings from config; ``required`` replaces :data:`REQUIRED`.
    """
    raw = read_fields(html_to_text(text) if html else text)
    return check_fields(raw, today, aliases=aliases, required=required)


def check_fields(
    raw: Mapping[str, str],
    today: date,
    *,
    aliases: Mapping[str, Sequence[str]] | None = None,
    required: Mapping[str, Sequence[str]] | None = None,
) -> Intake:
    """Validate fields already read (:func:`read_fields`), e.g. merged from several mails."""
    raw = dict(raw)
    problems: list[Problem] = []
    procedure = _check_procedure(raw, aliases or {}, problems)
    desde, hasta = _check_dates(raw, today, problems)
    protegida = _check_protegida(raw.get("protegida", ""), problems)
    enlace = _check_enlace(raw.get("enlace", ""), problems)
    present = {k for k, v in raw.items() if v}
    present |= {k for k, v in (("publicar_desde", desde), ("publicar_hasta", hasta)) if v}
    for key in (required or REQUIRED).get(procedure or "", ()):
        if key not in present and not any(p.field == key for p in problems):
            problems.append(Problem(key, f"Falta «{FIELD_NAMES.get(key, key)}»."))
    return Intake(
        procedure=procedure,
        titulo=raw.get("titulo", ""),
        objetivo=raw.get("objetivo", ""),
        resumen=raw.get("resumen", ""),
        publicar_desde=desde,
        publicar_hasta=hasta,
        unidad=raw.get("unidad", ""),
        protegida=protegida,
        enlace=enlace,
        raw=raw,
        problems=tuple(problems),
    )


def read_request(
    text: str,
    html: str,
    today: date,
    *,
    aliases: Mapping[str, Sequence[str]] | None = None,
    required: Mapping[str, Sequence[str]] | None = None,
) -> Intake:
    """Read a request mail from its text part, or from its HTML part when that has more fields.

    Outlook writes the ``text/plain`` alternative of a table one cell per line, without the
    colons: the text part then yields nothing while the HTML has every field.
    """
    from_text = None
    if text.strip() or not html.strip():
        from_text = parse_intake(text, today, aliases=aliases, required=required)
    if from_text is not None and len(from_text.raw) >= len(read_fields(html_to_text(html))):
        return from_text
    return parse_intake(html, today, html=True, aliases=aliases, required=required)


# What the ready-to-fill form offers besides the required fields, and the Tipo wording.
_FORM_EXTRAS = ("unidad",)
_PROCEDURE_NAMES: Mapping[str, str] = {
    "promocion": "Publicación de promoción",
    "imagenes_diseno": "Publicación de imágenes con diseño",
    "informacion_especifica": "Publicación de información específica",
    "directa": "Publicación directa",
    "eliminacion": "Eliminación de publicación",
}


def request_form(intake: Intake) -> str:
    """Return a ready-to-fill request: the procedure's fields, each right value kept.

    Fixes the help mail for an incomplete request, which promised a form and printed
    ``True``. Without a known ``Tipo`` the form is the longest one (información específica).
    """
    wrong = {p.field for p in intake.problems}
    procedure = intake.procedure or "informacion_especifica"
    keys = dict.fromkeys(("tipo", "titulo", *REQUIRED[procedure], *_FORM_EXTRAS))
    dates = {"publicar_desde": intake.publicar_desde, "publicar_hasta": intake.publicar_hasta}
    lines = []
    for key in keys:
        value = "" if key in wrong else intake.raw.get(key, "")
        when = dates.get(key)
        if when is not None and key not in wrong:
            value = f"{when:%d/%m/%Y}"
        if key == "tipo" and intake.procedure and not value:
            value = _PROCEDURE_NAMES[intake.procedure]
        lines.append(f"{FIELD_NAMES[key]}: {value}".rstrip())
    if intake.procedure is None:
        lines[0] += "    (" + _PROCEDURE_HELP.removeprefix("indique ").rstrip(".") + ")"
    return "\n".join(lines)


def parse_procedure(value: str, aliases: Mapping[str, Sequence[str]] | None = None) -> str | None:
    """Map a human ``Tipo`` wording (``Publicación de información específica``, ``3``) to an id."""
    folded = " ".join(fold(value).replace("_", " ").split())[:200]
    if not folded:
        return None
    for proc_id in REQUIRED:
        if folded == proc_id.replace("_", " "):
            return proc_id
    for proc_id, words in (aliases or {}).items():
        if any(fold(w) and fold(w) in folded for w in words):
            return proc_id
    number = re.fullmatch(r"(?:tipo\s*)?\(?([1-7])\)?[.)]?", folded)
    if number:
        return _MANUAL_TYPES[int(number.group(1)) - 1]
    for proc_id, phrase in PROCEDURE_PHRASES:
        if phrase in folded:
            return proc_id
    return None


def _check_procedure(
    raw: Mapping[str, str], aliases: Mapping[str, Sequence[str]], problems: list[Problem]
) -> str | None:
    """Read ``Tipo`` and record a problem when it is missing or unknown."""
    value = raw.get("tipo", "")
    if not value:
        problems.append(Problem("tipo", "Falta «Tipo»: " + _PROCEDURE_HELP))
        return None
    procedure = parse_procedure(value, aliases)
    if procedure is None:
        problems.append(Problem("tipo", f"No se reconoce «{value[:80]}»: {_PROCEDURE_HELP}"))
    return procedure


_PROCEDURE_HELP = (
    "indique promoción, imágenes con diseño, información específica, "
    "publicación directa o eliminación."
)
_DATE_HELP = "escríbala como 01/12/2026, 1 de diciembre de 2026 o 2026-12-01."


def _check_dates(
    raw: Mapping[str, str], today: date, problems: list[Problem]
) -> tuple[date | None, date | None]:
    """Read the publication window (two fields, or one ``Periodo``) and check its order."""
    desde = _checked_date("publicar_desde", raw.get("publicar_desde", ""), today, problems)
    hasta = _checked_date("publicar_hasta", raw.get("publicar_hasta", ""), today, problems)
    period = raw.get("periodo", "")
    if period and not (raw.get("publicar_desde") or raw.get("publicar_hasta")):
        desde, hasta = parse_period(period, today)
        if desde is None or hasta is None:
            problems.append(
                Problem(
                    "publicar_desde",
                    f"No se entiende el periodo «{period[:60]}»; "
                    "escríbalo como «del 01/12/2026 al 15/12/2026».",
                )
            )
    if desde and hasta and hasta < desde:
        problems.append(Problem("publicar_hasta", "«Publicar hasta» es antes de «Publicar desde»."))
    elif hasta and hasta < today:
        problems.append(Problem("publicar_hasta", f"«Publicar hasta» ({hasta:%d/%m/%Y}) ya pasó."))
    return desde, hasta


def _checked_date(key: str, value: str, today: date, problems: list[Problem]) -> date | None:
    """Parse one date field, recording a problem when it is unreadable or self-contradictory."""
    if not value:
        return None
    name = FIELD_NAMES[key]
    when = parse_date(value, today)
    if when is None:
        problems.append(
            Problem(
                key,
                f"No se entiende la fecha «{value[:60]}» de «{name}»; "
                "escríbala como 01/12/2026, 1 de diciembre de 2026 o 2026-12-01.",
            )
        )
        return None
    mismatch = weekday_mismatch(value, when)
    if mismatch:
        problems.append(Problem(key, f"«{name}»: {mismatch}"))
    return when


def _check_protegida(value: str, problems: list[Problem]) -> bool | None:
    """Read ``Protegida`` as sí/no; anything else is a problem."""
    if not value:
        return None
    folded = " ".join(fold(value).strip(" .").split())
    if folded in _YES or folded.startswith(("si ", "si,")):
        return True
    if folded in _NO or folded.startswith(("no ", "no,")):
        return False
    problems.append(Problem("protegida", f"«Protegida» debe ser «sí» o «no», no «{value[:40]}»."))
    return None


def _check_enlace(value: str, problems: list[Problem]) -> str:
    """Return the first URL of ``Enlace``; a value without one is a problem."""
    if not value:
        return ""
    match = _URL.search(value)
    if match is None:
        problems.append(
            Problem("enlace", f"«Enlace» debe ser una dirección https://…, no «{value[:60]}».")
        )
        return ""
    return match.group().rstrip(".,;)>")


@dataclass(frozen=True)
class Milestone:
    """One line of a cronograma: what is due, when, and the stage number if it names one."""

    label: str
    due: date
    stage: int | None = None


@dataclass(frozen=True)
class CronogramaReading:
    """The milestones of a ``Cronograma:`` field and the items that could not be read."""

    milestones: tuple[Milestone, ...] = ()
    problems: tuple[Problem, ...] = ()

    def due(self, label: str) -> date | None:
        """Return the date of the first milestone whose label contains ``label`` (folded)."""
        wanted = fold(label)
        return next((m.due for m in self.milestones if wanted in m.label), None)


def parse_cronograma(text: str, today: date | None = None) -> CronogramaReading:
    """Read ``Cronograma: material 04/12/2026; publicación 07/12/2026`` (items by ``;`` or line)."""
    value = read_fields(text).get("cronograma", "")
    milestones: list[Milestone] = []
    problems: list[Problem] = []
    for piece in re.split(r"[;\n]", value):
        item = piece.strip(" \t-•*·,.")
        if not item:
            continue
        found = find_date(item, today)
        if found is None:
            problems.append(
                Problem(
                    "cronograma",
                    f"Sin fecha legible en «{item[:60]}»; "
                    "escriba por ejemplo «publicación 07/12/2026».",
                )
            )
            continue
        when, label = found
        label = label.strip(" :-–,.").removeprefix("el ").removesuffix(" el").strip(" :-–,.")
        stage = re.search(r"\b(?:etapa|paso|fase)\s*(\d{1,2})\b", label)
        milestones.append(Milestone(label, when, int(stage.group(1)) if stage else None))
    return CronogramaReading(tuple(milestones), tuple(problems))
