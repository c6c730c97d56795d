"""End to end against the real test bed: requests and replies travel as real mail.

Each person's reply is sent through the SMTP relay to the address in the mail they
received (the signed plus-address), lands in the shared Dovecot mailbox, is fetched over
IMAP by a `run --once` pass, and the next person's mail is read from their own mailbox.
"""

from __future__ import annotations

from testbed.site import INFO_REQUEST, Scenario, about, code_of


def test_informacion_especifica_runs_through_all_nine_stages(scenario: Scenario) -> None:
    site = scenario.site
    site.send("analista", "Solicitud de publicación: feria", INFO_REQUEST)
    scenario.run()

    ack = site.wait_for("analista", lambda m: "Solicitud recibida" in str(m["Subject"]))
    code = code_of(ack)
    assert ack["Auto-Submitted"] == "auto-generated"
    steps = [
        # (who acts, the word their mail's subject holds, their answer, client style)
        ("directora", "Acción requerida", "APRUEBO", "gmail"),
        ("jefe.ugs", "Acción requerida", "DERIVO al profesional.", "outlook"),
        (
            "promocion",
            "Acción requerida",
            "ENTREGO la propuesta.\nCronograma: material 04/12/2026; publicación 10/12/2026",
            "thunderbird",
        ),
        ("analista", "Acción requerida", "Aprobado.", "iphone"),
        ("disenio", "Acción requerida", "ENTREGO el material final.", "gmail"),
        ("analista", "Acción requerida", "APRUEBO", "outlook"),
        ("jefe.ugs", "Acción requerida", "DERIVO", "gmail"),
        (
            "community",
            "Acción requerida",
            "PUBLICADO https://www.facebook.com/ejemplo/posts/123",
            "gmail",
        ),
    ]
    for number, (person, word, answer, style) in enumerate(steps, start=2):
        mail = site.wait_for(person, about(code, word))
        assert scenario.show(code)["stage"]["number"] == number
        site.reply(person, mail, answer, style=style)
        scenario.run()

    published = site.wait_for("analista", about(code, "Publicación confirmada"))
    assert (
        "https://www.facebook.com/ejemplo/posts/123" in published.get_body(("plain",)).get_content()
    )
    state = scenario.show(code)
    assert state["status"] == "publicado"
    assert state["publication"]["urls"] == ["https://www.facebook.com/ejemplo/posts/123"]
    actions = [h["action"] for h in state["history"]]
    assert actions == [
        "ENTREGO",
        "APRUEBO",
        "DERIVO",
        "ENTREGO",
        "APRUEBO",
        "ENTREGO",
        "APRUEBO",
        "DERIVO",
        "PUBLICADO",
    ]
    assert state["refused"] == []
