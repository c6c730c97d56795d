"""check-config --live's judgement of what it found on the IMAP server (the survey is given).

The survey itself is read from the real Dovecot in tests/integration/test_check_live.py;
here, servers that the test bed does not imitate: one without MOVE or UIDPLUS.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from mailflow.config import Settings, parse_settings
from mailflow.ops.checks import Checked, check_imap
from mailflow.transport.imap import MailboxSurvey

ROOT = Path(__file__).resolve().parents[2]


def settings(**imap: Any) -> Settings:
    raw = tomllib.loads((ROOT / "config" / "mailflow.toml").read_text(encoding="utf-8"))
    raw["imap"].update(imap)
    return parse_settings(raw, ROOT / "config" / "x.toml", {}, secrets=False)


class Surveyed:
    """An IMAP source that has already been looked at: it answers with ``survey``."""

    where = "rrss@mail.ejemplo.gob.bo:993"

    def __init__(self, survey: MailboxSurvey) -> None:
        self._survey = survey

    def connect(self) -> None:
        return None

    def close(self) -> None:
        return None

    def survey(self, header: str, last: int) -> MailboxSurvey:
        return self._survey


def test_a_processed_folder_the_server_cannot_move_to_is_a_problem() -> None:
    survey = MailboxSurvey("INBOX", 3, 7, ("IDLE", "IMAP4rev1"), ((), (), ()))
    checked = Checked()
    check_imap(settings(processed_folder="INBOX/Procesados"), Surveyed(survey), checked)  # type: ignore[arg-type]
    assert checked.problems == [
        "imap.processed_folder: el servidor no ofrece MOVE ni UIDPLUS, así que mailflow no "
        "puede mover correos sin riesgo; quite processed_folder"
    ]
    checked = Checked()
    check_imap(settings(), Surveyed(survey), checked)  # type: ignore[arg-type]
    assert checked.problems == []
    assert checked.found[0].endswith("carpeta INBOX con 3 correos, UIDVALIDITY 7; IDLE")


def test_a_server_without_idle_is_said_to_be_polled() -> None:
    survey = MailboxSurvey("INBOX", 1, 7, ("IMAP4rev1", "MOVE"), ((),))
    checked = Checked()
    check_imap(settings(poll_seconds=30), Surveyed(survey), checked)  # type: ignore[arg-type]
    assert checked.found[0].endswith("1 correo, UIDVALIDITY 7; sin IDLE: sondeo cada 30 s")
