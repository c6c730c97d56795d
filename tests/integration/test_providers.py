"""Provider differences that change how replies find their request (docs/providers.md)."""

from __future__ import annotations

from email.utils import parseaddr
from pathlib import Path

from testbed.dovecot import Dovecot
from testbed.site import INFO_REQUEST, Scenario, Site, about, code_of
from testbed.smtp import SmtpRelay


def test_without_plus_addressing_replies_go_to_the_plain_address_and_still_count(
    dovecot: Dovecot, relay: SmtpRelay, maildomain: str, tmp_path: Path
) -> None:
    """[smtp] plus_addressing = false: Reply-To has no +token, the Message-ID proves it."""
    site = Site(dovecot, relay, maildomain, f"sqlite:///{tmp_path / 'mailflow.db'}", tmp_path)
    text = site.config_path.read_text(encoding="utf-8")
    site.config_path.write_text(
        text.replace("[smtp]\n", "[smtp]\nplus_addressing = false\n"),
        encoding="utf-8",
    )
    scenario = Scenario(site)
    try:
        site.send("analista", "Solicitud de publicación: feria", INFO_REQUEST)
        scenario.run()
        ack = site.wait_for("analista", lambda m: "Solicitud recibida" in str(m["Subject"]))
        code = code_of(ack)
        mail = site.wait_for("directora", about(code, "Acción requerida"))
        assert parseaddr(str(mail["Reply-To"]))[1] == site.shared  # no rrss+token@
        assert code.lower() in str(mail["Message-ID"])  # the token rides here instead
        reply = site.reply("directora", mail, "APRUEBO", style="outlook")
        assert parseaddr(str(reply["To"]))[1] == site.shared
        scenario.run()
        state = scenario.show(code)
        assert state["stage"]["number"] == 3
        assert any(h["actor"] == site.addr("directora") for h in state["history"])
    finally:
        scenario.close()
