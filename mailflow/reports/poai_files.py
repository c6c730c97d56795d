"""Load the year's products from the store and write the POAI report's files.

The measuring itself is :mod:`mailflow.reports.poai`; this module is the shell around it:
it reads rows, copies the screenshots out of the archive, and renders ``index.html``
and ``products.csv`` into the output folder.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mailflow.config import Settings
from mailflow.reports.poai import (
    MONTHS,
    PersonReport,
    ProductFacts,
    build_report,
    environment,
    short_time,
    type_label,
)
from mailflow.store.archive import Archive
from mailflow.store.record import products_between
from mailflow.store.unitofwork import Session

CAPTURES = "capturas"


def load_products(session: Session, year: int, zone: ZoneInfo) -> list[ProductFacts]:
    """Return every product designed or published in ``year`` (local time), oldest first."""
    # A day of margin either side; the exact year is decided in local time by reports.py.
    start = datetime(year, 1, 1, tzinfo=zone) - timedelta(days=1)
    end = datetime(year + 1, 1, 1, tzinfo=zone) + timedelta(days=1)
    rows = products_between(session, start, end)
    return [
        ProductFacts(
            id=row.id,
            code=code,
            procedure=procedure,
            type=row.type,
            title=row.title,
            urls=tuple(row.urls),
            designer=row.designer,
            designed_at=row.designed_at.astimezone(zone) if row.designed_at else None,
            publisher=row.publisher,
            published_at=row.published_at.astimezone(zone),
            publish_mail=publish_mail,
            design_mail=design_mail,
            screenshots=tuple((s["sha256"], s.get("filename", "")) for s in row.screenshots),
        )
        for row, code, procedure, publish_mail, design_mail in rows
    ]


def copy_screenshots(
    archive: Archive, reports: Sequence[PersonReport], out: Path
) -> dict[str, str]:
    """Copy each screenshot once into ``out/capturas``; return sha256 -> relative path."""
    copied: dict[str, str] = {}
    for report in reports:
        for product in report.products:
            for sha256, _name in product.screenshots:
                source = archive.locate(sha256)
                if sha256 in copied or source is None:
                    continue
                target = out / CAPTURES / source.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                copied[sha256] = f"{CAPTURES}/{source.name}"
    return copied


def write_csv(reports: Sequence[PersonReport], path: Path) -> None:
    """Write one row per person and product, with the functions and archive references."""
    with path.open("w", newline="", encoding="utf-8-sig") as handle:  # BOM: Excel reads UTF-8
        out = csv.writer(handle)
        out.writerow(
            [
                "persona", "producto", "solicitud", "procedimiento", "tipo", "titulo",
                "enlaces", "rol", "diseñado_por", "fecha_diseño", "publicado_por",
                "fecha_publicación", "cuenta_para", "correo_publicación_sha256",
                "correo_diseño_sha256", "capturas_sha256",
            ]
        )  # fmt: skip
        for report in reports:
            for p in report.products:
                out.writerow(
                    [
                        report.person, p.id, p.code, p.procedure, type_label(p.type),
                        p.title, " ".join(p.urls), " y ".join(report.roles[p.id]),
                        p.designer or "", p.designed_at.isoformat() if p.designed_at else "",
                        p.publisher, p.published_at.isoformat(),
                        ";".join(
                            report.functions[n - 1].function.id for n in report.counts_for[p.id]
                        ),
                        p.publish_mail or "", p.design_mail or "",
                        " ".join(sha for sha, _ in p.screenshots),
                    ]
                )  # fmt: skip


def write_report(
    products: Sequence[ProductFacts],
    archive: Archive,
    settings: Settings,
    *,
    year: int,
    person: str | None,
    out: Path,
    now: datetime,
) -> list[PersonReport]:
    """Write ``index.html``, ``products.csv`` and the screenshots of the POAI report.

    Pass the products of :func:`load_products`, read in a transaction that is over by
    now: writing the files must not hold the store's write lock (SQLite) meanwhile.
    """
    zone = settings.zone
    reports = build_report(products, settings.poai.functions, year, person)
    out.mkdir(parents=True, exist_ok=True)
    thumbs = copy_screenshots(archive, reports, out)
    write_csv(reports, out / "products.csv")
    names = _names(settings)
    page = (
        environment(settings.paths.report_templates_dir)
        .get_template("poai.html.j2")
        .render(
            year=year,
            org_name=settings.organization.name,
            position=settings.poai.position,
            functions=settings.poai.functions,
            reports=reports,
            months=MONTHS,
            thumbs=thumbs,
            names=names,
            generated=now.astimezone(zone),
            person=person,
            short_time=short_time,
        )
    )
    (out / "index.html").write_text(page, encoding="utf-8")
    return reports


def _names(settings: Settings) -> dict[str, Any]:
    """Return each configured address with the roles it holds, for the report's headings."""
    names: dict[str, list[str]] = {}
    for role_id, role in settings.roles.items():
        for member in role.members:
            names.setdefault(member, []).append(role.name or role_id)
    return {address: ", ".join(roles) for address, roles in names.items()}
