"""Recognize mail that cannot be read without a key, and unwrap inline PGP-signed text.

* **encrypted**: PGP/MIME (``multipart/encrypted``), S/MIME enveloped data
  (``application/pkcs7-mime; smime-type=enveloped-data``), an inline
  ``-----BEGIN PGP MESSAGE-----`` block. mailflow holds no private key, so it answers
  that encrypted mail cannot be read and how to send it instead;
* **opaque**: S/MIME signed (or compressed) data wrapped whole in ``application/pkcs7-mime``,
  so the text sits inside the signature; clear-signed mail (``multipart/signed``) is read
  as usual, its signature kept as a file;
* **inline PGP-signed text** (``-----BEGIN PGP SIGNED MESSAGE-----``) is unwrapped: the
  armour, the hash line and the signature block go, dash-escaped lines are restored
  (RFC 4880 §7.1), and the reply reads like any other.
"""

from __future__ import annotations

from enum import StrEnum

_PKCS7 = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_ENVELOPED = ("enveloped-data", "authenveloped-data")
PGP_MESSAGE = "-----BEGIN PGP MESSAGE-----"
PGP_SIGNED = "-----BEGIN PGP SIGNED MESSAGE-----"
PGP_SIGNATURE = "-----BEGIN PGP SIGNATURE-----"
PGP_SIGNATURE_END = "-----END PGP SIGNATURE-----"
_SCAN_CHARS = 64 * 1024  # an armour header sits near the top of the text


class Sealed(StrEnum):
    """Why a mail's content cannot be read; ``NONE`` when it can."""

    NONE = ""
    ENCRYPTED = "encrypted"
    OPAQUE = "opaque"


def sealed_part(content_type: str, smime_type: str) -> tuple[Sealed, str]:
    """Tell whether one MIME part is encrypted or opaque, with a short reason."""
    ctype = content_type.lower()
    if ctype == "multipart/encrypted":
        return Sealed.ENCRYPTED, "PGP/MIME (multipart/encrypted)"
    if ctype in _PKCS7:
        kind = smime_type.strip().lower()
        if kind in _ENVELOPED:
            return Sealed.ENCRYPTED, f"S/MIME ({ctype}; smime-type={kind})"
        return Sealed.OPAQUE, f"S/MIME opaco ({ctype}; smime-type={kind or 'sin indicar'})"
    return Sealed.NONE, ""


def sealed_text(text: str) -> tuple[Sealed, str]:
    """Tell whether a text body is an inline PGP-encrypted message."""
    head = text[:_SCAN_CHARS]
    if PGP_MESSAGE in head and not _quoted_only(head, PGP_MESSAGE):
        return Sealed.ENCRYPTED, "PGP en línea (-----BEGIN PGP MESSAGE-----)"
    return Sealed.NONE, ""


def _quoted_only(text: str, marker: str) -> bool:
    """Tell whether every occurrence of the marker is on a ``>``-quoted line."""
    for line in text.split("\n"):
        if marker in line and not line.lstrip().startswith(">"):
            return False
    return True


def unwrap_signed(text: str) -> str:
    """Return the signed text of an inline PGP-signed body, without armour or signature.

    Text before the armour (rare) and after the signature (a quoted original added by the
    client below it) are kept around the unwrapped text. A body that is not PGP-signed
    comes back unchanged.
    """
    start = text.find(PGP_SIGNED, 0, _SCAN_CHARS)
    if start < 0 or (start and text[start - 1] != "\n"):
        return text
    lines = text[start:].split("\n")
    index = 1
    while index < len(lines) and lines[index].strip():  # "Hash: SHA256" armour headers
        index += 1
    body: list[str] = []
    index += 1
    while index < len(lines) and not lines[index].startswith(PGP_SIGNATURE):
        line = lines[index]
        body.append(line[2:] if line.startswith("- ") else line)
        index += 1
    while index < len(lines) and not lines[index].startswith(PGP_SIGNATURE_END):
        index += 1
    after = "\n".join(lines[index + 1 :]) if index < len(lines) else ""
    return "\n".join(filter(None, [text[:start].rstrip("\n"), "\n".join(body), after]))
