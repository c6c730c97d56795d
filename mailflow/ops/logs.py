"""Logging set-up: one readable line per event, on a terminal and in journalctl.

``--log-json`` (or ``[logging] format = "json"``) writes one JSON object per line for log
shippers: time, level, logger, message, plus the structured fields a call site passes as
``extra=`` (``request``, ``message_id``, ``uid``, ``action``, ``outcome``, ...; see
``FIELDS``). A log line never carries a secret nor a message body: call sites log codes,
ids and outcomes only.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

# sd-daemon(3) priority prefixes: journald turns "<3>" into the ERROR level.
_JOURNAL_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    """Prefix each line with its syslog priority; journald adds the time itself."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line with its priority prefix."""
        priority = _JOURNAL_PRIORITY.get(record.levelno, 6)
        text = super().format(record).replace("\n", " | ")
        return f"<{priority}>{text}"


# Structured fields copied from ``extra=`` into the JSON object, when a call site has them.
FIELDS = (
    "request",
    "message_id",
    "uid",
    "mailbox",
    "action",
    "outcome",
    "stage",
    "outbox_id",
    "recipients",
    "work",
)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON line."""
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def setup_logging(level: int, env: Mapping[str, str], *, json_lines: bool = False) -> None:
    """Send logs to stderr, in journald's format when systemd captures the output."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    elif env.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # imapclient logs the whole IMAP conversation, message bodies included, at DEBUG.
    logging.getLogger("imapclient").setLevel(logging.WARNING)
    # Alembic announces every plugin and migration step at INFO: noise at each start.
    logging.getLogger("alembic").setLevel(logging.WARNING)
