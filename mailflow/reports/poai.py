"""Measure published products against the POAI: per person, function and month.

``mailflow report poai --year 2026 [--person EMAIL] --out DIR`` writes ``DIR/index.html``
(Spanish, printable) and ``DIR/products.csv``, and copies the screenshots into
``DIR/capturas/``. The rules, all from ``[poai]`` in the config:

- A person **designed** a product when they are its designer (see :mod:`mailflow.app.products`)
  and **disseminated** it when they sent its PUBLICADO; designs count in the year and
  month of the design, publications in those of the publication (local time).
- A product counts once for a function when the person did one of the function's
  ``actions`` (``ENTREGO`` = designed, ``PUBLICADO`` = disseminated) in the year, and its
  type and procedure are among the function's ``product_types`` and ``procedures``
  (empty: any).
- A function's completion is ``min(1, count / target)``; the weighted completion is
  ``Σ weight × completion / Σ weight``.

Every figure is a count of the products listed under it, and every product carries the
archive references (SHA-256 of the PUBLICADO mail, the design mail and the screenshots)
that prove it. Everything here is pure; :mod:`mailflow.reports.poai_files` loads the products
from the database and writes the files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2

from mailflow.config import PoaiFunction
from mailflow.core.model import ProductType

MONTHS = (
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
)
DESIGNED = "ENTREGO"
DISSEMINATED = "PUBLICADO"


def environment(templates_dir: Path) -> jinja2.Environment:
    """Return the Jinja2 environment of reports: autoescaped HTML, undefined is an error."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tipo"] = type_label
    env.filters["decimal"] = decimal
    env.filters["procedimiento"] = procedure_label
    return env


# Short Spanish names of the shipped procedures, for table cells (the full names are long).
_PROCEDURES = {
    "promocion": "Promoción",
    "imagenes_diseno": "Imágenes con diseño",
    "informacion_especifica": "Información específica",
    "directa": "Publicación directa",
    "eliminacion": "Eliminación",
}


def procedure_label(value: str) -> str:
    """Return the short Spanish name of a procedure id (the id itself if unknown)."""
    return _PROCEDURES.get(value, value)


def decimal(value: float, digits: int = 1) -> str:
    """Return a number the Spanish way: ``90,5``, with ``digits`` decimals (``%g`` if -1)."""
    text = f"{value:g}" if digits < 0 else f"{value:.{digits}f}"
    return text.replace(".", ",")


def type_label(value: str) -> str:
    """Return the manual's Spanish name of a product type value (``video_corto``)."""
    return ProductType(value).label


def short_time(moment: datetime | None, zone: ZoneInfo | None = None) -> str:
    """Return ``01/12/2026 09:30`` (in ``zone`` when given), or ``—`` for no moment."""
    if moment is None:
        return "—"
    return (moment.astimezone(zone) if zone else moment).strftime("%d/%m/%Y %H:%M")


@dataclass(frozen=True)
class ProductFacts:
    """Describe one product as the report reads it, with its archive references."""

    id: int
    code: str
    procedure: str
    type: str
    title: str
    urls: tuple[str, ...]
    designer: str | None
    designed_at: datetime | None  # local time
    publisher: str
    published_at: datetime  # local time
    publish_mail: str | None = None  # SHA-256 of the PUBLICADO mail
    design_mail: str | None = None  # SHA-256 of the ENTREGO mail of the design
    screenshots: tuple[tuple[str, str], ...] = ()  # (sha256, filename)


@dataclass
class FunctionFigure:
    """Tell how one POAI function stands for one person: count, completion, products."""

    function: PoaiFunction
    number: int
    products: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Return how many products count for the function."""
        return len(self.products)

    @property
    def completion(self) -> float:
        """Return the share of the yearly target reached, at most 1."""
        return min(1.0, self.count / self.function.target)


@dataclass
class PersonReport:
    """Hold everything the report says about one person in one year."""

    person: str
    functions: list[FunctionFigure]
    designed: list[int]  # per month, January first
    disseminated: list[int]
    products: list[ProductFacts]
    roles: dict[int, list[str]]  # product id -> ["diseñó", "publicó"]
    counts_for: dict[int, list[int]]  # product id -> function numbers (1-based)

    @property
    def weighted(self) -> float:
        """Return Σ weight × completion / Σ weight, between 0 and 1."""
        total = sum(f.function.weight for f in self.functions)
        done = sum(f.function.weight * f.completion for f in self.functions)
        return done / total if total else 0.0


def _acts(product: ProductFacts, person: str, year: int) -> set[str]:
    """Return what ``person`` did to ``product`` within ``year``: ENTREGO and/or PUBLICADO."""
    acts = set()
    if product.designer == person and product.designed_at and product.designed_at.year == year:
        acts.add(DESIGNED)
    if product.publisher == person and product.published_at.year == year:
        acts.add(DISSEMINATED)
    return acts


def counts_for(function: PoaiFunction, product: ProductFacts, acts: set[str]) -> bool:
    """Tell whether a product the person acted on counts for ``function``."""
    return (
        bool(acts & set(function.actions))
        and (not function.product_types or product.type in function.product_types)
        and (not function.procedures or product.procedure in function.procedures)
    )


def person_report(
    person: str, products: Sequence[ProductFacts], functions: Sequence[PoaiFunction], year: int
) -> PersonReport:
    """Measure one person's year against the POAI functions."""
    figures = [FunctionFigure(f, n) for n, f in enumerate(functions, start=1)]
    report = PersonReport(person, figures, [0] * 12, [0] * 12, [], {}, {})
    for product in products:
        acts = _acts(product, person, year)
        if not acts:
            continue
        report.products.append(product)
        report.roles[product.id] = [
            label for act, label in ((DESIGNED, "diseñó"), (DISSEMINATED, "publicó")) if act in acts
        ]
        if DESIGNED in acts and product.designed_at is not None:
            report.designed[product.designed_at.month - 1] += 1
        if DISSEMINATED in acts:
            report.disseminated[product.published_at.month - 1] += 1
        report.counts_for[product.id] = []
        for figure in figures:
            if counts_for(figure.function, product, acts):
                figure.products.append(product.id)
                report.counts_for[product.id].append(figure.number)
    return report


def people_in(products: Iterable[ProductFacts], year: int) -> list[str]:
    """Return everyone who designed or published a product in ``year``, sorted."""
    found = set()
    for p in products:
        if p.published_at.year == year:
            found.add(p.publisher)
        if p.designer and p.designed_at and p.designed_at.year == year:
            found.add(p.designer)
    return sorted(found)


def build_report(
    products: Sequence[ProductFacts],
    functions: Sequence[PoaiFunction],
    year: int,
    person: str | None = None,
) -> list[PersonReport]:
    """Return the report of ``person`` (or of everyone who acted) for ``year``."""
    ordered = sorted(products, key=lambda p: (p.published_at, p.id))
    people = [person.lower()] if person else people_in(ordered, year)
    return [person_report(who, ordered, functions, year) for who in people]
