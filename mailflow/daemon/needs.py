"""What a command may load; :mod:`mailflow.daemon.runtime` builds exactly that.

A module of its own so that the command table of :mod:`mailflow.cli` names it without
importing the runtime (and every adapter with it) before a command runs.
"""

from __future__ import annotations

import enum


class Needs(enum.Enum):
    """What a command may load.

    - ``READ``: the configuration without any mail secret, the procedures, and the store
      opened as it is (never created nor migrated) with the archive. No IMAP or SMTP
      object is built, so neither a password nor a mail-security warning is involved.
    - ``STORE``: as ``READ``, for the maintenance commands that write the store itself
      (``db upgrade``, ``db backup``).
    - ``MAIL``: everything, secrets included: the daemon, one pass, ``replay``.
    - ``CHECK``: ``check-config``, which reads the file itself, secrets included, to find
      every problem at once.
    """

    CHECK = "check"
    READ = "read"
    STORE = "store"
    MAIL = "mail"

    @property
    def secrets(self) -> bool:
        """Tell whether the mail secrets are read for this need."""
        return self in (Needs.MAIL, Needs.CHECK)
