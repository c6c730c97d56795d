"""Make and remove the scratch directories the test servers live in."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Set MAILFLOW_TESTBED_KEEP=1 to keep server directories (configs, logs, mailboxes) after the
# run, for a post-mortem; their paths are in the server logs and error messages.
KEEP_ENV = "MAILFLOW_TESTBED_KEEP"


def scratch_dir(prefix: str) -> Path:
    """Create a fresh directory that unprivileged server users can traverse.

    Not under pytest's tmp_path: that lives in /tmp/pytest-of-root (mode 0700) when we are
    root, which the `dovecot` and `postgres` users cannot enter. A short /tmp path also keeps
    the servers' Unix socket paths under the 107-byte limit.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def remove_scratch(path: Path) -> None:
    """Delete a scratch directory, unless the developer asked to keep it."""
    if os.environ.get(KEEP_ENV):
        return
    shutil.rmtree(path, ignore_errors=True)


def tail(path: Path, lines: int = 40) -> str:
    """Return the last lines of a text file, or a note that it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])
