"""The committee branch of `promocion`, by real mail: votes, quorum and the RECHAZO report."""

from __future__ import annotations

from testbed.site import Scenario, about, code_of

PROMOTION_REQUEST = """Tipo: Publicación de promoción
Título: Campaña firma digital gratuita
Objetivo: Promocionar la emisión gratuita de certificados de firma digital en diciembre.
Resumen: Pauta pagada de dos semanas en Facebook e Instagram.
Protegida: sí
"""


def test_promocion_through_the_committee_with_a_majority(scenario: Scenario) -> None:
    site = scenario.site
    site.send("directora", "Requerimiento de promoción", PROMOTION_REQUEST)
    scenario.run()
    code = code_of(site.wait_for("directora", lambda m: "Solicitud recibida" in str(m["Subject"])))

    def act(person: str, answer: str, style: str = "gmail") -> None:
        mail = site.wait_for(person, about(code, "Acción requerida"))
        site.reply(person, mail, answer, style=style)
        scenario.run()

    act("jefe.ugs", "DERIVO", "outlook")
    act("promocion", "ENTREGO propuesta.\nCronograma: material 07/12/2026; publicación 09/12/2026")
    act("jefe.ugs", "APRUEBO COMITE, la información está protegida por norma.", "outlook")
    state = scenario.show(code)
    assert state["stage"]["number"] == 5
    assert state["stage"]["role"] == "comite_rrss"
    assert sorted(state["stage"]["assignees"]) == sorted(
        site.addr(m) for m in ("jefe.uaf", "jefe.ual", "jefe.uti")
    )

    # One member rejects: the Jefatura UGS hears of it at once, but one vote decides nothing.
    act("jefe.uti", "RECHAZO no corresponde difundir el costo de la pauta.")
    report = site.wait_for("jefe.ugs", about(code, "Comité: voto RECHAZO"))
    assert "no corresponde difundir" in report.get_body(("plain",)).get_content()
    assert scenario.show(code)["stage"]["number"] == 5

    act("jefe.uaf", "APRUEBO", "outlook")
    assert scenario.show(code)["stage"]["number"] == 5  # 1 of 3 approvals: no majority yet
    act("jefe.ual", "Aprobado.", "iphone")
    state = scenario.show(code)
    assert state["stage"]["number"] == 6, state
    assert state["stage"]["due"].startswith("2026-12-07T")  # from the cronograma

    act("disenio", "ENTREGO material final")
    act("jefe.ugs", "DERIVO")
    act("community", "PUBLICADO https://www.instagram.com/p/ejemplo123/")
    state = scenario.show(code)
    assert state["status"] == "publicado"
    votes = [h for h in state["history"] if h["stage"] == 5]
    assert [v["actor"] for v in votes][:3] == [
        site.addr("jefe.uti"),
        site.addr("jefe.uaf"),
        site.addr("jefe.ual"),
    ]
