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
            f'el certificado no está emitido para "{host}": ponga en [{section}] host un nombre '
            "que el certificado incluya (el nombre real del servidor, no un alias ni una IP)"
        )
    if code in _UNKNOWN_ISSUER:
        return (
            "su emisor no es una CA de confianza: si el servidor usa una CA privada o "
            f"autofirmada, ponga en [{section}] ca_file el certificado PEM de esa CA; si no, "
            "instale en el servidor el certificado intermedio que falta (o ca-certificates aquí)"
        )
    if code == _EXPIRED:
        return "el certificado venció, o el reloj de esta máquina está mal: revise ambos"
    return f"revise [{section}] host y, para una CA privada, [{section}] ca_file"
