"""Run real mail and database servers for tests: Dovecot, an SMTP relay, PostgreSQL.

Each server lives in a scratch directory under /tmp, listens on a free port of 127.0.0.1 and
is stopped (and checked to be gone) at the end. The fixtures in tests/conftest.py build them;
tests/testbed/mail.py sends and reads mail through them.
"""

from .dovecot import Dovecot, ImapAccount, TlsFiles
from .postgres import Postgres
from .smtp import Delivery, Refusal, RelayedMessage, SmtpRelay

__all__ = [
    "Delivery",
    "Dovecot",
    "ImapAccount",
    "Postgres",
    "Refusal",
    "RelayedMessage",
    "SmtpRelay",
    "TlsFiles",
]
