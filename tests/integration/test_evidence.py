"""The archive and the evidence of one request, after it ran through its procedure by mail.

A request of ``informacion_especifica`` goes through all nine stages by real mail (as in
test_daemon), with the design delivered as a file and the publication's screenshot
attached. Then the real ``mailflow`` command exports its evidence, ``sha256sum -c``
checks the manifest, and ``archive verify`` notices a tampered and a deleted file.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
import struct
import subprocess
import zipfile
import zlib
from datetime import datetime
from html import unescape
from pathlib import Path

from sqlalchemy import func, select, update
from testbed.browser import layout
from testbed.mail import build_message
from testbed.site import INFO_REQUEST, Scenario, about, code_of

from mailflow.store.schema import (
    ArchiveEntryRow,
    AttachmentRow,
    HistoryRow,
    InboundRow,
    OutboxRow,
    ProductRow,
    RequestRow,
)


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


# -- however a request was opened, its evidence holds its opening mail and its files ----

PHOTO = ("foto-feria.png", png(200, 120, 40), "image/png")
INCOMPLETE = INFO_REQUEST.replace(
    "Objetivo: Difundir la feria de servicios digitales de la Agencia.\n", ""
)


def _manifest(scenario: Scenario, code: str, tmp_path: Path) -> set[str]:
    """Export the evidence of ``code`` with the real command; return the digests it holds."""
    out = tmp_path / f"{code}.zip"
    done = scenario.cli("--now", "2026-12-09T10:00", "evidence", code, "--out", str(out))
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as zf:
        listed = zf.read(f"{code}/MANIFEST.sha256").decode().splitlines()
    return {line.split()[0] for line in listed}


def _opening_and_files(scenario: Scenario, code: str) -> tuple[str, set[str]]:
    """Return the digest of the mail whose action opened ``code`` and those of its files."""
    with scenario.runtime.store.transaction() as session:
        request = session.scalars(select(RequestRow).where(RequestRow.code == code)).one()
        first = session.scalars(
            select(HistoryRow)
            .where(HistoryRow.request_id == request.id, HistoryRow.inbound_id.is_not(None))
            .order_by(HistoryRow.id)
        ).first()
        assert first is not None
        opening = session.get(InboundRow, first.inbound_id)
        assert opening is not None
        files = set(
            session.scalars(
                select(AttachmentRow.sha256).where(AttachmentRow.request_id == request.id)
            )
        )
    return opening.sha256, files


def _newest_code(scenario: Scenario) -> str:
    return str(scenario.runtime.requests.summaries()[0]["code"])


def test_evidence_holds_the_opening_mail_however_the_request_was_opened(
    scenario: Scenario, tmp_path: Path
) -> None:
    site = scenario.site
    opened: dict[str, str] = {}
    extra: dict[str, set[str]] = {}

    # 1. Directly.
    site.send("analista", "Solicitud: feria", INFO_REQUEST, attachments=(PHOTO,))
    scenario.run()
    opened["directa"] = _newest_code(scenario)

    # 2. By `mailflow replay` of a saved mail.
    saved = tmp_path / "guardado.eml"
    saved.write_bytes(
        build_message(
            site.addr("analista"),
            [site.shared],
            "Solicitud guardada",
            INFO_REQUEST.replace("Feria de servicios", "Segunda feria de servicios"),
            attachments=[("afiche-replay.png", png(90, 60, 7), "image/png")],
        ).as_bytes(policy=email.policy.SMTP)
    )
    done = scenario.cli("--now", "2026-12-01T12:00", "replay", str(saved))
    assert done.returncode == 0 and ": procesado " in done.stdout, done.stdout + done.stderr
    opened["replay"] = _newest_code(scenario)

    # 3. After a "falta …" answer: the photos came with the first, incomplete mail; the
    # reply that completes the form (quoting our answer) carries none.
    first = site.send("analista", "Solicitud: feria incompleta", INCOMPLETE, attachments=(PHOTO,))
    scenario.run()
    form = site.wait_for("analista", lambda m: "No pudimos procesar" in str(m["Subject"]))
    assert "Objetivo" in form.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    site.reply("analista", form, INFO_REQUEST, style="gmail")
    scenario.run()
    opened["falta"] = _newest_code(scenario)
    with scenario.runtime.store.transaction() as session:
        attempt = session.scalars(
            select(InboundRow).where(InboundRow.message_id == first["Message-ID"])
        ).one()
        extra["falta"] = {attempt.sha256}

    # 4. After CONFIRMO: a direct post held until its sender confirms it.
    site.config_path.write_text(
        site.config_path.read_text(encoding="utf-8").replace(
            "confirm_openings = false", "confirm_openings = true"
        ),
        encoding="utf-8",
    )
    scenario.reconfigure("")
    shot = ("captura-post.png", png(160, 90, 99), "image/png")
    site.send(
        "community",
        "Foto del día",
        "PUBLICADO fotografía https://www.facebook.com/ejemplo/posts/55",
        attachments=(shot,),
    )
    scenario.run()
    ask = site.wait_for("community", lambda m: "Confirme su solicitud" in str(m["Subject"]))
    site.reply("community", ask, "CONFIRMO", style="outlook")
    scenario.run()
    opened["confirmo"] = _newest_code(scenario)
    with scenario.runtime.store.transaction() as session:
        ours = session.scalars(select(OutboxRow).where(OutboxRow.kind == "confirm_opening")).one()
        [sent] = ours.archive_entries
        held = session.scalars(
            select(InboundRow).where(InboundRow.detail.startswith("held for CONFIRMO"))
        ).one()
        extra["confirmo"] = {sent.sha256, held.sha256}

    assert len(set(opened.values())) == 4
    for how, code in opened.items():
        opening, files = _opening_and_files(scenario, code)
        assert files, how  # every one of them brought a file
        held_by_zip = _manifest(scenario, code, tmp_path)
        assert opening in held_by_zip, f"{how}: the opening mail is not in the evidence"
        assert files <= held_by_zip, f"{how}: a file is not in the evidence"
        assert extra.get(how, set()) <= held_by_zip, f"{how}: an earlier mail is missing"
    falta_files = _opening_and_files(scenario, opened["falta"])[1]
    assert hashlib.sha256(PHOTO[1]).hexdigest() in falta_files  # the first mail's photo

    clean = scenario.cli("archive", "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 solicitudes con evidencia incompleta" in clean.stdout

    # `archive verify` names a request whose evidence lost its opening mail or a file.
    confirmed = opened["confirmo"]
    with scenario.runtime.store.transaction() as session:
        session.execute(
            update(ArchiveEntryRow)
            .where(ArchiveEntryRow.inbound_id == held.id)
            .values(request_id=None)
        )
        session.execute(
            update(ArchiveEntryRow)
            .where(ArchiveEntryRow.filename == "afiche-replay.png")
            .values(request_id=None)
        )
    broken = scenario.cli("archive", "verify")
    assert broken.returncode == 1
    assert f"INCOMPLETA {confirmed}: falta el correo que la abrió (entrada #{held.id})" in (
        broken.stdout
    )
    assert f"INCOMPLETA {opened['replay']}: falta el archivo afiche-replay.png" in broken.stdout


def test_upgrading_links_confirmed_openings_and_the_stage_of_files(db_url: str) -> None:
    from sqlalchemy import text

    from mailflow.store.repository import make_engine, upgrade

    upgrade(db_url, "0003")
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
            # #1 was held, then opened request 1 when #2 answered CONFIRMO.
            for id_, detail, sha in ((1, "held for CONFIRMO until …", "a"), (2, "CONFIRMO", "c")):
                db.execute(
                    text(
                        "INSERT INTO inbound (id, mailbox, uidvalidity, uid, sha256, "
                        "received_at, processed_at, outcome, detail, request_id) VALUES "
                        "(:id, 'INBOX', 1, :id, :sha, :at, :at, 'processed', :detail, 1)"
                    ),
                    {"id": id_, "sha": sha * 64, "at": at, "detail": detail},
                )
            db.execute(
                text(
                    "INSERT INTO history (request_id, at, actor, action, stage, inbound_id) "
                    "VALUES (1, :at, 'a@x.bo', 'PUBLICADO', 1, 1)"
                ),
                {"at": at},
            )
            db.execute(
                text(
                    "INSERT INTO outbox (id, message_id, request_id, kind, recipients, raw, "
                    "status, attempts, created_at) VALUES (1, "
                    "'<rrss-rrss-0000-00000001-s0-abcdefghijklmnop.1a2b@x.bo>', NULL, "
                    "'confirm_opening', '[\"a@x.bo\"]', :raw, 'sent', 1, :at)"
                ),
                {"at": at, "raw": b"x"},
            )
            db.execute(
                text(
                    "INSERT INTO attachments (request_id, inbound_id, filename, content_type, "
                    "size, sha256) VALUES (1, 1, 'c.png', 'image/png', 10, :sha)"
                ),
                {"sha": "b" * 64},
            )
            for sha, kind, direction, inbound, outbox, person in (
                ("a" * 64, "eml", "in", 1, None, "a@x.bo"),
                ("b" * 64, "attachment", "in", 1, None, "a@x.bo"),
                ("d" * 64, "eml", "out", None, 1, "a@x.bo"),
            ):
                db.execute(
                    text(
                        "INSERT INTO archive_entries (sha256, kind, direction, request_id, "
                        "person, at, size, inbound_id, outbox_id) VALUES "
                        "(:sha, :kind, :direction, NULL, :person, :at, 1, :inbound, :outbox)"
                    ),
                    {
                        "sha": sha,
                        "kind": kind,
                        "direction": direction,
                        "person": person,
                        "at": at,
                        "inbound": inbound,
                        "outbox": outbox,
                    },
                )
        upgrade(db_url)
        with engine.connect() as db:
            linked = db.execute(
                text("SELECT sha256, request_id FROM archive_entries ORDER BY id")
            ).all()
            outbox = db.execute(text("SELECT request_id, eml_sha256, files FROM outbox")).one()
            files = db.execute(text("SELECT stage, person, inline FROM attachments")).one()
    finally:
        engine.dispose()
    assert [tuple(r) for r in linked] == [("a" * 64, 1), ("b" * 64, 1), ("d" * 64, 1)]
    assert tuple(outbox) == (1, None, None)
    assert (files[0], files[1], bool(files[2])) == (1, "a@x.bo", False)
