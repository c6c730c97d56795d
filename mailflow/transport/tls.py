"""The TLS client context every connection of mailflow uses (IMAP, SMTP, token endpoint)."""

from __future__ import annotations

import ssl
from pathlib import Path


def verifying_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """Return a context that verifies the server's certificate chain and host name.

    With ``ca_file`` (a PEM bundle), only the CAs in that file are trusted, instead of the
    system's store: the way to reach a server with a private CA without turning checks off.
    """
    if ca_file is None:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=str(ca_file))


# OpenSSL verify codes (x509_vfy.h) worth their own advice.
_HOSTNAME_MISMATCH = 62
_UNKNOWN_ISSUER = (18, 19, 20, 21)  # self-signed, self-signed in chain, unknown issuer(s)
_EXPIRED = 10


def certificate_advice(error: ssl.SSLCertVerificationError, section: str, host: str) -> str:
    """Say what to check when the server's certificate was not accepted."""
    code = error.verify_code
    if code == _HOSTNAME_MISMATCH:
        return (
            f'the certificate is not issued for "{host}": set [{section}] host to a name '
            "the certificate lists (the server's real name, not an alias or an IP address)"
        )
    if code in _UNKNOWN_ISSUER:
        return (
            "its issuer is not a trusted CA: if the server uses a private or self-signed "
            f"CA, set [{section}] ca_file to that CA's PEM certificate; otherwise install "
            "the missing intermediate certificate on the server (or ca-certificates here)"
        )
    if code == _EXPIRED:
        return "the certificate has expired, or this machine's clock is wrong: check both"
    return f"check [{section}] host and, for a private CA, [{section}] ca_file"
