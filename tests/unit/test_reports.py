"""The POAI arithmetic: who counts for which function, per month, and the weighting."""

from __future__ import annotations

import tomllib
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from mailflow.config import PROJECT_ROOT, Poai, PoaiFunction
from mailflow.reports.poai import ProductFacts, build_report, decimal, people_in, short_time

TZ = ZoneInfo("America/La_Paz")
# The POAI as shipped in config/poai.toml: the content technician's functions and weights.
SHIPPED = Poai.model_validate(
    tomllib.loads((PROJECT_ROOT / "config" / "poai.toml").read_text(encoding="utf-8"))
).functions
ANA = "ana@x.bo"  # the content technician: designs and publishes
DIS = "dis@x.bo"  # a designer


def product(
    n: int,
    month: int,
    *,
    type: str = "post",
    designer: str | None = ANA,
    publisher: str = ANA,
    procedure: str = "directa",
    year: int = 2026,
    design_month: int | None = None,
) -> ProductFacts:
    published = datetime(year, month, 10, 10, tzinfo=TZ)
    designed = datetime(year, design_month or month, 9, 10, tzinfo=TZ)
    return ProductFacts(
        id=n,
        code=f"RRSS-{year}-{n:04d}",
        procedure=procedure,
        type=type,
        title=f"P{n}",
        urls=(f"https://fb.com/{n}",),
        designer=designer,
        designed_at=designed if designer else None,
        publisher=publisher,
        published_at=published,
    )


def fn(id: str, weight: float, target: int, **kw: object) -> PoaiFunction:
    return PoaiFunction.model_validate(
        {"id": id, "name": id, "weight": weight, "target": target, **kw}
    )


def test_each_function_counts_the_products_its_actions_types_and_procedures_allow() -> None:
    functions = [
        fn("disena", 40, 4, actions=["ENTREGO"]),
        fn("difunde", 30, 2, actions=["PUBLICADO"]),
        fn("fotos", 20, 10, product_types=["fotografia"]),
        fn("pedidos", 10, 1, procedures=["informacion_especifica"]),
    ]
    products = [
        product(1, 1),
        product(2, 1, type="fotografia"),
        product(3, 2, designer=DIS),
        product(4, 3, designer=DIS, procedure="informacion_especifica", type="infografia"),
        product(5, 3, type="fotografia", publisher=DIS),
    ]

    [ana] = build_report(products, functions, 2026, ANA)

    counts = {f.function.id: f.products for f in ana.functions}
    assert counts == {"disena": [1, 2, 5], "difunde": [1, 2, 3, 4], "fotos": [2, 5], "pedidos": [4]}
    assert ana.designed[:3] == [2, 0, 1] and sum(ana.designed) == 3
    assert ana.disseminated[:3] == [2, 1, 1] and sum(ana.disseminated) == 4
    assert (
        ana.roles[3] == ["publicó"]
        and ana.roles[5] == ["diseñó"]
        and ana.roles[1] == ["diseñó", "publicó"]
    )
    assert ana.counts_for[4] == [2, 4]
    # 40 × 3/4 + 30 × 1 (capped) + 20 × 2/10 + 10 × 1, over 100
    assert ana.weighted == pytest.approx((30 + 30 + 4 + 10) / 100)


def test_years_and_months_are_those_of_each_act_in_local_time() -> None:
    late = ProductFacts(
        id=1, code="C", procedure="directa", type="post", title="t", urls=(),
        designer=DIS, designed_at=datetime(2025, 12, 30, 10, tzinfo=TZ),
        publisher=ANA, published_at=datetime(2026, 1, 2, 10, tzinfo=TZ),
    )  # fmt: skip
    [dis] = build_report([late], SHIPPED, 2026, DIS)
    [ana] = build_report([late], SHIPPED, 2026, ANA)

    assert dis.products == [] and sum(dis.designed) == 0  # designed in 2025
    assert ana.disseminated[0] == 1
    assert people_in([late], 2026) == [ANA]
    assert people_in([late], 2025) == [DIS]


def test_everyone_who_acted_gets_a_report_when_no_person_is_given() -> None:
    reports = build_report([product(1, 5, designer=DIS)], SHIPPED, 2026)
    assert [r.person for r in reports] == [ANA, DIS]
    assert build_report([], SHIPPED, 2026) == []


def test_the_seeded_functions_follow_the_poai() -> None:
    assert [f.weight for f in SHIPPED] == [30, 20, 20, 20, 10]
    assert [f.kind for f in SHIPPED].count("rutinaria") == 2


def test_numbers_and_moments_are_written_the_spanish_way() -> None:
    assert decimal(90.25, 1) == "90,2" or decimal(90.25, 1) == "90,3"
    assert decimal(30.0, -1) == "30"
    assert decimal(12.5, -1) == "12,5"
    assert (
        short_time(datetime(2026, 12, 1, 13, 30, tzinfo=ZoneInfo("UTC")), TZ) == "01/12/2026 09:30"
    )
    assert short_time(None) == "—"


def test_the_shipped_config_reads_the_poai_from_its_own_file() -> None:
    from pathlib import Path

    from mailflow.config import load_settings

    env = {
        "MAILFLOW_IMAP_PASSWORD": "x",
        "MAILFLOW_SMTP_PASSWORD": "y",
        "MAILFLOW_SECRET": "a-secret-of-sixteen-chars",
    }
    shipped = load_settings(Path(PROJECT_ROOT / "config" / "mailflow.toml"), env)
    assert shipped.paths.poai_file == PROJECT_ROOT / "config" / "poai.toml"  # the default
    assert shipped.poai.functions == SHIPPED
    assert [f.id for f in SHIPPED][:2] == ["generacion", "difusion"]
