"""How a PUBLICADO becomes a product, and how the archive keeps the files behind it."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from mailflow.app.products import designer, directa_form, product_type, type_in
from mailflow.config import Poai, PoaiFunction
from mailflow.core.model import (
    Action,
    Deadline,
    DeadlineKind,
    Procedure,
    ProductType,
    Stage,
    Transition,
)
from mailflow.store.archive import Archive
from mailflow.store.schema import HistoryRow

NOW = datetime(2026, 12, 1, 13, 30, tzinfo=UTC)
POST = ProductType.POST


@pytest.mark.parametrize(
    ("mail", "reply", "fields", "expected"),
    [
        ("Producto: Infografía\n", "https://fb.com/1", {}, ProductType.INFOGRAFIA),
        ("", "vídeo corto https://fb.com/1", {}, ProductType.VIDEO_CORTO),
        ("", "en https://fb.com/1 con foto", {}, POST),  # words after the link do not count
        ("", "https://fb.com/1", {"tipo": "Publicación de fotografía"}, ProductType.FOTOGRAFIA),
        ("PUBLICADO ilustración https://fb.com/1", "", {}, ProductType.ILUSTRACION),
        ("> Producto: vídeo\n", "", {}, POST),  # quoted text is not the author's
        ("", "", {}, POST),
    ],
)
def test_the_product_type_is_read_in_order(
    mail: str, reply: str, fields: dict[str, str], expected: ProductType
) -> None:
    assert product_type(mail, reply, fields, POST) is expected


def test_specific_words_win_over_generic_ones() -> None:
    assert type_in("Publicación de fotografía") is ProductType.FOTOGRAFIA
    assert type_in("publicación informativa cotidiana") is POST
    assert type_in("nada") is None


def _procedure(*stages: Stage) -> Procedure:
    return Procedure(id="p", name="p", order=1, started_by=(), stages={s.number: s for s in stages})


def _stage(number: int, *roles: str) -> Stage:
    deliver = {Action.ENTREGO: Transition(Action.ENTREGO, to=number + 1)}
    return Stage(number, f"e{number}", roles, Deadline(DeadlineKind.VARIABLE), deliver)


def _entrego(stage: int, actor: str, inbound: int) -> HistoryRow:
    return HistoryRow(action="ENTREGO", stage=stage, actor=actor, at=NOW, inbound_id=inbound)


def test_the_designer_is_who_delivered_at_the_design_stage_last() -> None:
    proc = _procedure(_stage(1, "solicitante"), _stage(6, "profesional_promocion", "equipo_diseno"))
    history = [_entrego(1, "unidad@x", 1), _entrego(6, "dis1@x", 2), _entrego(6, "dis2@x", 3)]

    assert designer("", proc, history, "adm@x", NOW) == ("dis2@x", NOW, 3)
    assert designer("Diseño: Otra <otra@x.bo>\n", proc, history, "adm@x", NOW)[0] == "otra@x.bo"
    assert designer("", proc, history[:1], "adm@x", NOW) == (None, None, None)
    # A procedure without a design stage (directa): the publisher's own product.
    assert designer("", _procedure(_stage(1, "administrador_rrss")), [], "adm@x", NOW)[0] == "adm@x"


def test_a_bare_publicado_becomes_a_directa_request() -> None:
    form = directa_form("PUBLICADO infografía https://fb.com/p/1.\n\nSaludos", "Feria 2026")

    assert form is not None
    assert form.startswith("Tipo: directa\nTítulo: Feria 2026\nEnlace: https://fb.com/p/1\n")
    assert directa_form("Tipo: fotografía\nPUBLICADO https://fb.com/1", "x") is None
    assert directa_form("Tipo: directa\nTítulo: x", "x") is None
    assert directa_form("Buenos días, PUBLICADO", "x") is None


def test_poai_weights_must_add_up_to_one_hundred() -> None:
    one = PoaiFunction(id="a", name="a", weight=60, target=1)
    with pytest.raises(ValidationError, match="suman 60, no 100"):
        Poai(functions=(one,))
    with pytest.raises(ValidationError, match="un id distinto"):
        Poai(functions=(one, one.model_copy(update={"weight": 40})))


def test_streamed_blobs_are_stored_once_read_only_and_named_by_their_hash(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    data = os.urandom(300_000)
    stored = archive.put_stream((data[i : i + 4096] for i in range(0, len(data), 4096)), ".png")

    assert stored.sha256 == hashlib.sha256(data).hexdigest() and stored.size == len(data)
    path = archive.path_of(stored.sha256, ".png")
    assert path.read_bytes() == data and path.stat().st_mode & 0o222 == 0
    assert archive.put(data, ".png") == stored.sha256
    assert list(archive.files()) == [path] and archive.locate(stored.sha256) == path
    assert not any((tmp_path / ".tmp").iterdir())


def test_verify_reports_altered_missing_and_unindexed_files(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    kept = archive.put(b"uno")
    altered = archive.put(b"dos")
    extra = archive.put(b"tres")
    assert archive.verify({kept, altered}).ok

    path = archive.path_of(altered, ".eml")
    path.chmod(0o644)
    path.write_bytes(b"DOS")
    result = archive.verify({kept, altered, "f" * 64})

    assert not result.ok
    assert result.altered == [path]
    assert result.missing == ["f" * 64]
    assert result.unindexed == 1 and result.checked == 3
    assert extra not in result.missing
