"""The POAI report over a year of products registered through the real daemon.

The administrator registers a few hundred direct publications by mail (``PUBLICADO
<tipo> <enlace>`` with a screenshot, some with ``Diseño: <address>``, some as a ``Tipo:``
form), delivered into the shared Dovecot mailbox and processed by one ``run --once`` pass
per month. The report's figures are compared with counts made here by hand from the list
of what was sent, and the page is rendered in headless Chromium.

``MAILFLOW_POAI_PRODUCTS`` sets how many products (default 240).
"""

from __future__ import annotations

import csv
import email.policy
import os
import re
import shutil
import smtplib
import struct
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from testbed.browser import ink, render
from testbed.mail import build_message
from testbed.site import TZ, Scenario

PRODUCTS = int(os.environ.get("MAILFLOW_POAI_PRODUCTS", "240"))
# (how the administrator names the type, the type mailflow must read)
WORDINGS = [
    ("infografía", "infografia"),
    ("post", "post"),
    ("vídeo", "video_corto"),
    ("fotografía", "fotografia"),
    ("ilustración", "ilustracion"),
    ("", "post"),  # no type given: [poai] default_product_type
]
WEIGHTS = {
    "generacion": 30,
    "difusion": 20,
    "monitoreo": 20,
    "rutinaria_contenidos": 20,
    "encomendadas": 10,
}
TARGETS = {
    "generacion": 120,
    "difusion": 240,
    "monitoreo": 60,
    "rutinaria_contenidos": 120,
    "encomendadas": 24,
}


@dataclass(frozen=True)
class Sent:
    """One product as the administrator sent it, and what the report must make of it."""

    n: int
    when: datetime
    type: str
    designer: str  # local part
    form: bool  # a "Tipo: fotografía" form instead of a bare PUBLICADO


def plan(count: int) -> list[Sent]:
    """Spread ``count`` products over 2026, unevenly, plus two at the year's edges."""
    sent = []
    for n in range(1, count + 1):
        month = 1 + (n * 5 + n // 13) % 12
        wording = WORDINGS[n % len(WORDINGS)]
        form = n % 10 == 0
        kind = "fotografia" if form else wording[1]
        designer = "disenio" if n % 3 == 0 else "community"
        sent.append(Sent(n, datetime(2026, month, 14, 10, 0, tzinfo=TZ), kind, designer, form))
    # 23:30 on 31 December in La Paz is already 2027 in UTC: it belongs to 2026.
    sent.append(
        Sent(count + 1, datetime(2026, 12, 31, 23, 30, tzinfo=TZ), "post", "community", False)
    )
    # A product of 2027 must not count.
    sent.append(Sent(count + 2, datetime(2027, 1, 2, 10, 0, tzinfo=TZ), "post", "community", False))
    return sent


def png(n: int) -> bytes:
    """Return a small valid PNG, different for each product (a screenshot stand-in)."""
    width, height = 32, 20
    rows = b"".join(
        b"\x00" + bytes((x * 8 + n) % 256 for x in range(width) for _ in range(3))
        for _ in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def mail_of(scenario: Scenario, item: Sent) -> bytes:
    """Return the administrator's mail registering one product."""
    site = scenario.site
    url = f"https://www.facebook.com/ejemplo/posts/{item.n}"
    design = f"Diseño: {site.addr(item.designer)}\n" if item.designer != "community" else ""
    if item.form:
        body = f"Tipo: Publicación de fotografía\nTítulo: Foto {item.n}\nEnlace: {url}\n{design}"
    else:
        word = WORDINGS[item.n % len(WORDINGS)][0]
        body = f"PUBLICADO {word} {url}\n{design}\nSaludos,\nCommunity manager\n"
    message = build_message(
        site.addr("community"),
        [site.shared],
        f"Publicación {item.n}",
        body,
        attachments=[(f"captura-{item.n}.png", png(item.n), "image/png")],
    )
    return message.as_bytes(policy=email.policy.SMTP)


def register(scenario: Scenario, sent: list[Sent]) -> None:
    """Deliver the mails of each moment over LMTP, then make one daemon pass at it."""
    site = scenario.site
    for when in sorted({s.when for s in sent}):
        batch = [s for s in sent if s.when == when]
        with smtplib.LMTP(site.dovecot.host, site.dovecot.lmtp_port, timeout=60) as lmtp:
            for item in batch:
                lmtp.sendmail(site.addr("community"), [site.shared], mail_of(scenario, item))
        scenario.now = when
        scenario.run()


def by_hand(sent: list[Sent], person: str) -> dict[str, object]:
    """Count, from what was sent, what the report must say about ``person`` for 2026."""
    year = [s for s in sent if s.when.year == 2026]
    designed = [s for s in year if s.designer == person]
    published = year if person == "community" else []
    mine = {s.n for s in designed} | {s.n for s in published}
    functions = {
        "generacion": len(designed),
        "difusion": len(published),
        "monitoreo": sum(1 for s in year if s.n in mine and s.type in ("post", "fotografia")),
        "rutinaria_contenidos": len(mine),
        "encomendadas": 0,  # only products of procedures requested by units count there
    }
    weighted = sum(WEIGHTS[f] * min(1, functions[f] / TARGETS[f]) for f in functions) / sum(
        WEIGHTS.values()
    )
    return {
        "designed": [sum(1 for s in designed if s.when.month == m) for m in range(1, 13)],
        "published": [sum(1 for s in published if s.when.month == m) for m in range(1, 13)],
        "functions": functions,
        "weighted": weighted,
        "products": len(mine),
    }


def month_row(section: str, label: str) -> list[int]:
    """Return the twelve monthly counts of one row of a person's "por mes" table."""
    found = re.search(rf"<th>{label}</th>(.*?)</tr>", section, re.S)
    assert found is not None, label
    return [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', found.group(1))]


def weighted_of(section: str) -> float:
    """Return a person's weighted completion, in percent, as the page prints it (90,0 %)."""
    found = re.search(r'class="total-weighted">([\d,]+) %', section)
    assert found is not None
    return float(found.group(1).replace(",", "."))


def test_poai_report_matches_counts_made_by_hand(scenario: Scenario, tmp_path: Path) -> None:
    sent = plan(PRODUCTS)
    register(scenario, sent)
    listed = scenario.cli("requests", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count('"publicado"') == len(sent)

    out = tmp_path / "poai"
    done = scenario.cli(
        "--now", "2027-01-05T09:00", "report", "poai", "--year", "2026", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    site = scenario.site
    page = (out / "index.html").read_text(encoding="utf-8")
    sections = re.split(r'<section class="person"', page)[1:]
    people = [h.strip() for h in re.findall(r'<section class="person"[^>]*>\s*<h2>([^<—]+)', page)]
    assert people == [site.addr("community"), site.addr("disenio")]

    with (out / "products.csv").open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    for local, section in zip(("community", "disenio"), sections, strict=True):
        expected = by_hand(sent, local)
        figures = dict(re.findall(r'data-function="(\w+)">(\d+)<', section))
        assert {k: int(v) for k, v in figures.items()} == expected["functions"]
        assert month_row(section, "Diseñados") == expected["designed"]
        assert month_row(section, "Difundidos") == expected["published"]
        assert weighted_of(section) == pytest.approx(expected["weighted"] * 100, abs=0.05)
        mine = [r for r in rows if r["persona"] == site.addr(local)]
        assert len(mine) == expected["products"]
        assert section.count('<img class="thumb"') == expected["products"]

    # Each CSV row carries its types and archive references; the types are what was sent.
    community = [r for r in rows if r["persona"] == site.addr("community")]
    labels = {"infografia": "Infografía", "post": "Post", "video_corto": "Vídeo corto",
              "fotografia": "Fotografía", "ilustracion": "Ilustración"}  # fmt: skip
    expected_types = Counter(labels[s.type] for s in sent if s.when.year == 2026)
    assert Counter(r["tipo"] for r in community) == expected_types
    archive = scenario.runtime.service.archive
    for row in community:
        assert archive.locate(row["correo_publicación_sha256"]) is not None
        [shot] = row["capturas_sha256"].split()
        assert archive.locate(shot) is not None
    assert (out / "capturas").is_dir()

    # How it looks: rendered by a real browser, not blank, and kept for a human to open.
    shot = tmp_path / "poai.png"
    profile = tmp_path / "chromium-profile"
    render(out / "index.html", profile, f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.stat().st_size > 20_000
    assert ink(shot.read_bytes()) > 0.01
    if os.environ.get("MAILFLOW_KEEP_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["MAILFLOW_KEEP_SCREENSHOT"])
    # Printed (print CSS, A4): each person starts a page, so there are several.
    pdf = tmp_path / "poai.pdf"
    render(out / "index.html", profile, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    pages = len(re.findall(rb"/Type\s*/Page\b", pdf.read_bytes()))
    assert pages > len(people)
