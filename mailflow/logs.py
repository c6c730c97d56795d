"""Logging set-up: one readable line per event, on a terminal and in journalctl."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping

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


def setup_logging(level: int, env: Mapping[str, str]) -> None:
    """Send logs to stderr, in journald's format when systemd captures the output."""
    handler = logging.StreamHandler(sys.stderr)
    if env.get("JOURNAL_STREAM"):
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
