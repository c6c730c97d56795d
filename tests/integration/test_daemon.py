"""End to end against the real test bed: requests and replies travel as real mail.

Each person's reply is sent through the SMTP relay to the address in the mail they
received (the signed plus-address), lands in the shared Dovecot mailbox, is fetched over
IMAP by a `run --once` pass, and the next person's mail is read from their own mailbox.
"""

from __future__ import annotations

import email.policy
import json
from pathlib import Path

from testbed.mail import build_message
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
        if number == 5:  # the proposal's cronograma is shown back to the requester
            text = mail.get_body(("plain",)).get_content()
            assert "Cronograma:" in text and "viernes 4 de diciembre de 2026" in text
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
    # The Jefatura UGS is copied at stages 5 and 7, worded so that nobody answers a copy.
    copies = [m for m in site.inbox("jefe.ugs") if "Para su conocimiento" in str(m["Subject"])]
    assert len(copies) == 2
    assert all("APRUEBO" not in m.get_body(("plain",)).get_content() for m in copies)


def test_commands_show_a_request_as_the_contract_says(scenario: Scenario) -> None:
    site = scenario.site
    site.send("analista", "Solicitud", INFO_REQUEST)
    once = scenario.cli("--now", "2026-12-01T09:30", "run", "--once")
    assert once.returncode == 0, once.stderr
    assert "1 correo leído (procesado: 1)" in once.stdout
    code = code_of(site.wait_for("analista", lambda m: "Solicitud recibida" in str(m["Subject"])))

    listed = scenario.cli("requests", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [summary] = json.loads(listed.stdout)
    assert summary["code"] == code and summary["status"] == "en_curso"
    assert {"code", "title", "procedure", "status", "stage"} <= set(summary)

    shown = scenario.cli("--now", "2026-12-01T10:00", "requests", "show", code, "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["procedure"] == "informacion_especifica"
    assert data["title"] == "Feria de servicios digitales 2026"
    assert data["stage"]["number"] == 2
    assert data["stage"]["role"] == "direccion_ejecutiva"
    assert data["stage"]["assignees"] == [site.addr("directora")]
    # One business day from Tuesday 09:30 in La Paz: Wednesday at the end of office hours.
    assert data["stage"]["due"] == "2026-12-02T16:30:00-04:00"
    assert [h["action"] for h in data["history"]] == ["ENTREGO"]
    assert data["history"][0]["actor"] == site.addr("analista")
    assert data["refused"] == [] and data["publication"]["urls"] == []

    missing = scenario.cli("requests", "show", "RRSS-2026-9999")
    assert missing.returncode == 1 and "no existe la solicitud RRSS-2026-9999" in missing.stderr


def test_replay_processes_a_saved_message_once(scenario: Scenario, tmp_path: Path) -> None:
    eml = tmp_path / "solicitud.eml"
    message = build_message(
        scenario.site.addr("analista"), [scenario.site.shared], "S", INFO_REQUEST
    )
    eml.write_bytes(message.as_bytes(policy=email.policy.SMTP))
    first = scenario.cli("--now", "2026-12-01T09:30", "replay", str(eml))
    assert first.returncode == 0, first.stderr
    assert f"{eml}: procesado RRSS-2026-0001\n" in first.stdout
    again = scenario.cli("--now", "2026-12-01T09:31", "replay", str(eml))
    assert again.returncode == 0 and "ya visto" in again.stdout
    listed = json.loads(scenario.cli("requests", "list", "--json").stdout)
    assert [r["code"] for r in listed] == ["RRSS-2026-0001"]
