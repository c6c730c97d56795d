"""--log-json: one parseable object per line, with the structured fields, and no secrets."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from testbed.site import INFO_REQUEST, SECRET, START, Scenario

only_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _json_lines(stderr: str) -> list[dict]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines
    return [json.loads(line) for line in lines]  # every line, or this raises


def _assert_clean(text: str, scenario: Scenario) -> None:
    assert scenario.site.dovecot.password not in text
    assert SECRET not in text
    assert "stands de cada unidad" not in text  # a line of the request's body


@only_sqlite
def test_log_json_lines_carry_the_request_message_and_outcome(scenario: Scenario) -> None:
    site = scenario.site
    sent = site.send("analista", "Solicitud de publicación: feria", INFO_REQUEST)
    now = (START + timedelta(hours=1)).isoformat()
    result = scenario.cli("--log-json", "--now", now, "run", "--once", timeout=120)
    assert result.returncode == 0, result.stderr
    records = _json_lines(result.stderr)
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
    handled = [r for r in records if r.get("outcome") == "processed"]
    assert len(handled) == 1, records
    line = handled[0]
    assert line["logger"] == "mailflow.app.service"
    assert line["level"] == "INFO"
    assert line["message_id"] == sent["Message-ID"]
    assert line["request"].startswith("RRSS-2026-")
    assert isinstance(line["uid"], int)
    assert [r["outbox_id"] for r in records if r.get("outcome") == "sent"]  # ack + stage 2
    _assert_clean(result.stderr + result.stdout, scenario)


@only_sqlite
def test_logging_format_json_in_the_config_does_the_same(scenario: Scenario) -> None:
    site = scenario.site
    config = site.config_path.read_text(encoding="utf-8")
    site.config_path.write_text(config + '\n[logging]\nformat = "json"\n', encoding="utf-8")
    site.send("analista", "Solicitud de publicación: feria", INFO_REQUEST)
    now = (START + timedelta(hours=1)).isoformat()
    result = scenario.cli("--now", now, "run", "--once", timeout=120)
    assert result.returncode == 0, result.stderr
    records = _json_lines(result.stderr)
    assert any(r.get("outcome") == "processed" for r in records)
    _assert_clean(result.stderr, scenario)


@only_sqlite
def test_text_logs_are_one_line_per_event_without_secrets(scenario: Scenario) -> None:
    scenario.site.send("analista", "Solicitud de publicación: feria", INFO_REQUEST)
    now = (START + timedelta(hours=1)).isoformat()
    result = scenario.cli("--now", now, "run", "--once", timeout=120)
    assert result.returncode == 0, result.stderr
    processed = [line for line in result.stderr.splitlines() if "outcome=processed" in line]
    assert len(processed) == 1 and "request=RRSS-2026-" in processed[0]
    _assert_clean(result.stderr, scenario)
