"""The archive and the evidence of one request, after it ran through its procedure by mail.

A request of ``informacion_especifica`` goes through all nine stages by real mail (as in
test_daemon), with the design delivered as a file and the publication's screenshot
attached. Then the real ``mailflow`` command exports its evidence, ``sha256sum -c``
checks the manifest, and ``archive verify`` notices a tampered and a deleted file.
"""

from __future__ import annotations

import re
import struct
import subprocess
import zipfile
import zlib
from datetime import datetime
from html import unescape
from pathlib import Path

from sqlalchemy import func, select
from testbed.browser import layout
from testbed.site import INFO_REQUEST, Scenario, about, code_of

from mailflow.store.schema import ArchiveEntryRow, OutboxRow, ProductRow


def png(width: int, height: int, shade: int) -> bytes:
    """Return a valid PNG of a horizontal gradient (a stand-in for a design or a capture)."""
    rows = b"".join(
        b"\x00" + bytes((x * 255 // width + shade) % 256 for x in range(width) for _ in range(3))
        for _ in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


DESIGN = ("arte-final.png", png(400, 300, 0), "image/png")
SCREENSHOT = ("captura-facebook.png", png(320, 240, 128), "image/png")
# A link as Facebook gives it: long and without a break, the width a timeline must hold.
POST = (
    "https://www.facebook.com/permalink.php?story_fbid=pfbid0Ns5Jx9bR2kQeYh7Lz3mT8vWcA1dF6gH4"
    "jK2pL9qR5sT7uV3wX8yZ1aB4cD6eF9gH&id=100064912345678"
)


def run_request(scenario: Scenario) -> str:
    """Play one request through its nine stages by mail; return its code."""
    site = scenario.site
    site.send("analista", "Solicitud de publicación: feria", INFO_REQUEST)
    scenario.run()
    code = code_of(site.wait_for("analista", lambda m: "Solicitud recibida" in str(m["Subject"])))
    steps: list[tuple[str, str, tuple[tuple[str, bytes, str], ...]]] = [
        ("directora", "APRUEBO", ()),
        ("jefe.ugs", "DERIVO al profesional.", ()),
        ("promocion", "ENTREGO la propuesta.\nCronograma: material 04/12/2026", ()),
        ("analista", "Aprobado.", ()),
        ("disenio", "ENTREGO el material final.", (DESIGN,)),
        ("analista", "APRUEBO", ()),
        ("jefe.ugs", "DERIVO", ()),
        ("community", f"PUBLICADO infografía {POST}", (SCREENSHOT,)),
    ]
    for person, answer, files in steps:
        mail = site.wait_for(person, about(code, "Acción requerida"))
        site.reply(person, mail, answer, attachments=files)
        scenario.run()
    assert scenario.show(code)["status"] == "publicado"
    return code


def test_evidence_of_a_request_verifies_and_shows_every_stage(
    scenario: Scenario, tmp_path: Path
) -> None:
    site = scenario.site
    code = run_request(scenario)
    store = scenario.runtime.store

    with store.transaction() as session:
        [product] = session.scalars(select(ProductRow)).all()
        sent = session.scalar(select(func.count()).select_from(OutboxRow))
        archived_out = session.scalar(
            select(func.count())
            .select_from(ArchiveEntryRow)
            .where(ArchiveEntryRow.direction == "out")
        )
        persons_in = set(
            session.scalars(select(ArchiveEntryRow.person).where(ArchiveEntryRow.direction == "in"))
        )
    assert product.type == "infografia"
    assert product.urls == [POST]
    assert product.designer == site.addr("disenio")
    assert product.publisher == site.addr("community")
    assert [s["filename"] for s in product.screenshots] == ["captura-facebook.png"]
    assert sent and archived_out == sent  # every outgoing mail is archived and indexed
    assert site.addr("disenio") in persons_in

    out = tmp_path / "evidencia.zip"
    done = scenario.cli("--now", "2026-12-05T10:00", "evidence", code, "--out", str(out))
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "x"
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        zf.extractall(folder)
    root = folder / code
    check = subprocess.run(
        ["sha256sum", "--strict", "-c", "MANIFEST.sha256"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    listed = (root / "MANIFEST.sha256").read_text().splitlines()
    assert len(listed) == len(names) - 1  # everything but the manifest itself
    emls = [n for n in names if n.endswith(".eml")]
    assert len(emls) == 9 + sent  # the request, eight replies, and every mail we sent
    assert {n.rsplit("/", 1)[1].split("-", 1)[1] for n in names if "/adjuntos/" in n} == {
        "arte-final.png",
        "captura-facebook.png",
    }

    page = unescape(re.sub(r"\s+", " ", (root / "index.html").read_text(encoding="utf-8")))
    shown = scenario.show(code)
    for step in shown["history"]:
        when = datetime.fromisoformat(step["at"]).strftime("%d/%m/%Y %H:%M")
        row = re.search(
            rf"<td class=\"num\">{when}</td> <td> <strong>{step['action']}</strong>"
            rf"<br><span class=\"meta\">Etapa {step['stage']}: [^<]+</span> </td> "
            rf"<td>{re.escape(step['actor'])}</td>",
            page,
        )
        assert row, f"stage {step['stage']} {step['action']} by {step['actor']} at {when}"
    assert POST in page and "Infografía" in page
    # On a 1000 px screen the timeline fits: no column, the files' least of all, is cut.
    seen = layout(root / "index.html", tmp_path / "chromium", 1000, "table")
    assert seen.page <= seen.window and max(seen.columns_end) <= seen.window, seen
    links = re.findall(r'href="(correos/[^"]+)"', page)
    assert links == sorted(links) and len(links) == len(emls)  # numbered in timeline order


def test_archive_verify_notices_an_altered_and_a_missing_file(
    scenario: Scenario, tmp_path: Path
) -> None:
    site = scenario.site
    site.send("analista", "Solicitud", INFO_REQUEST, attachments=(DESIGN,))
    scenario.run()
    clean = scenario.cli("archive", "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 alterados, 0 faltantes" in clean.stdout

    archive = scenario.runtime.service.archive
    files = list(archive.files())
    eml = next(p for p in files if p.suffix == ".eml")
    eml.chmod(0o644)  # archived files are read-only; whoever tampers has to mean it
    eml.write_bytes(eml.read_bytes().replace(b"Feria", b"Fiera"))
    altered = scenario.cli("archive", "verify")
    assert altered.returncode == 1
    assert f"ALTERADO {eml}" in altered.stdout

    png = next(p for p in files if p.suffix == ".png")
    png.unlink()
    missing = scenario.cli("archive", "verify")
    assert missing.returncode == 1
    assert f"FALTA    {png.name[:64]}" in missing.stdout

    refused = scenario.cli("evidence", "RRSS-2026-0001", "--out", str(tmp_path / "e.zip"))
    assert refused.returncode == 1
    assert "alterado" in refused.stderr and "falta" in refused.stderr
    assert not (tmp_path / "e.zip").exists()


def test_upgrading_indexes_what_was_archived_before(db_url: str) -> None:
    from sqlalchemy import text

    from mailflow.store.repository import make_engine, upgrade

    upgrade(db_url, "0001")
    engine = make_engine(db_url)
    at = "2026-11-02 13:00:00+00:00"
    try:
        with engine.begin() as db:
            db.execute(
                text(
                    "INSERT INTO requests (id, code, procedure, title, status, stage, "
                    "stage_roles, stage_entered_at, requester, fields, protected, created_at, "
                    "updated_at, version) VALUES (1, 'RRSS-2026-0001', 'directa', 't', "
                    "'publicado', 1, '[]', :at, 'a@x.bo', '{}', false, :at, :at, 1)"
                ),
                {"at": at},
            )
            db.execute(
                text(
                    "INSERT INTO inbound (id, mailbox, uidvalidity, uid, sha256, received_at, "
                    "processed_at, outcome, request_id) VALUES "
                    "(1, 'INBOX', 1, 1, :sha, :at, :at, 'processed', 1)"
                ),
                {"sha": "a" * 64, "at": at},
            )
            db.execute(
                text(
                    "INSERT INTO attachments (request_id, inbound_id, filename, content_type, "
                    "size, sha256) VALUES (1, 1, 'c.png', 'image/png', 10, :sha)"
                ),
                {"sha": "b" * 64},
            )
        upgrade(db_url)
        with engine.connect() as db:
            rows = db.execute(
                text(
                    "SELECT sha256, kind, direction, request_id, filename FROM archive_entries "
                    "ORDER BY id"
                )
            ).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("a" * 64, "eml", "in", 1, None),
        ("b" * 64, "attachment", "in", 1, "c.png"),
    ]
