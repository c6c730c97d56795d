"""Mail in the formats people's clients really send, built by the test itself.

* S/MIME encrypted, opaque-signed and clear-signed mail, made by ``openssl cms`` with a
  throwaway certificate;
* PGP inline-encrypted, PGP/MIME and inline clear-signed mail, made by ``gpg`` in a
  throwaway keyring;
* Outlook's TNEF ``winmail.dat``, written byte by byte the way Outlook lays it out
  (signature, attributes with their checksums, one attachment with its file);
* a newsletter that carries only ``List-Unsubscribe`` and ``List-Unsubscribe-Post``.

Nothing here is a fixture file: every test makes the bytes it reads.
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HEADERS = (
    "From: Ana Quispe <ana.quispe@ejemplo.gob.bo>\n"
    "To: rrss@ejemplo.gob.bo\n"
    "Subject: RE: [RRSS-2026-0042] Feria de servicios digitales 2026\n"
    "Date: Mon, 07 Dec 2026 10:00:00 -0400\n"
    "Message-ID: <{mid}@ejemplo.gob.bo>\n"
    "MIME-Version: 1.0\n"
)
BODY = "APRUEBO\n\nSaludos,\nAna\n"


def _head(mid: str) -> str:
    return HEADERS.format(mid=mid)


def _run(args: list[str], data: bytes = b"", env: dict[str, str] | None = None) -> bytes:
    result = subprocess.run(args, input=data, capture_output=True, timeout=60, check=False, env=env)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


# --------------------------------------------------------------------------- S/MIME


@contextmanager
def certificate() -> Iterator[tuple[Path, Path]]:
    """Yield a throwaway self-signed certificate and its key (PEM files)."""
    folder = Path(tempfile.mkdtemp(prefix="smime"))
    try:
        key, cert = folder / "key.pem", folder / "cert.pem"
        _run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=Ana Quispe/emailAddress=ana.quispe@ejemplo.gob.bo",
                "-keyout", str(key), "-out", str(cert),
            ]
        )  # fmt: skip
        yield cert, key
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _smime(mode: list[str], body: str, head: str) -> bytes:
    content = f"Content-Type: text/plain; charset=utf-8\n\n{body}".encode()
    out = _run(["openssl", "cms", *mode], content)
    return head.encode() + out.replace(b"MIME-Version: 1.0\n", b"", 1)


def smime_encrypted(cert: Path, body: str = BODY, head: str = "") -> bytes:
    """Return a reply encrypted with S/MIME (application/pkcs7-mime, enveloped-data)."""
    return _smime(["-encrypt", "-aes256", str(cert)], body, head or _head("smime-enc"))


def smime_opaque(cert: Path, key: Path, body: str = BODY, head: str = "") -> bytes:
    """Return a reply signed with S/MIME in opaque form (the text inside the signature)."""
    mode = ["-sign", "-nodetach", "-signer", str(cert), "-inkey", str(key)]
    return _smime(mode, body, head or _head("smime-opaque"))


def smime_clear_signed(cert: Path, key: Path, body: str = BODY, head: str = "") -> bytes:
    """Return a reply clear-signed with S/MIME (multipart/signed: the text stays readable)."""
    mode = ["-sign", "-signer", str(cert), "-inkey", str(key)]
    return _smime(mode, body, head or _head("smime-clear"))


# --------------------------------------------------------------------------- PGP


class Keyring:
    """A throwaway GnuPG home with one key pair for ``ana.quispe@ejemplo.gob.bo``."""

    uid = "Ana Quispe <ana.quispe@ejemplo.gob.bo>"

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "GNUPGHOME": str(home)}

    def gpg(self, *args: str, data: bytes = b"") -> bytes:
        return _run(
            ["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", *args], data, self.env
        )

    def encrypt(self, text: str) -> str:
        """Return ``text`` encrypted to the key, ASCII-armoured."""
        return self.gpg("--armor", "--trust-model", "always", "--encrypt", "-r", self.uid,
                        data=text.encode()).decode()  # fmt: skip

    def clearsign(self, text: str) -> str:
        """Return ``text`` clear-signed (``-----BEGIN PGP SIGNED MESSAGE-----``)."""
        return self.gpg("--passphrase", "", "--clearsign", data=text.encode()).decode()


@contextmanager
def keyring() -> Iterator[Keyring]:
    """Yield a fresh keyring (a short path: gpg-agent's socket must fit in 108 bytes)."""
    home = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))
    home.chmod(0o700)
    ring = Keyring(home)
    try:
        ring.gpg(
            "--passphrase", "", "--quick-gen-key", ring.uid, "future-default", "default", "never"
        )
        yield ring
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=ring.env, check=False, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def pgp_inline_encrypted(ring: Keyring, body: str = BODY, head: str = "") -> bytes:
    """Return a reply whose text/plain body is an inline PGP message."""
    head = (head or _head("pgp-inline")) + "Content-Type: text/plain; charset=utf-8\n\n"
    return (head + ring.encrypt(body)).encode()


def pgp_mime_encrypted(ring: Keyring, body: str = BODY, head: str = "") -> bytes:
    """Return a reply encrypted with PGP/MIME (RFC 3156 multipart/encrypted)."""
    armour = ring.encrypt(f"Content-Type: text/plain; charset=utf-8\n\n{body}")
    return (
        (head or _head("pgp-mime"))
        + 'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
        ' boundary="enc"\n\n--enc\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n\n'
        '--enc\nContent-Type: application/octet-stream; name="encrypted.asc"\n\n'
        f"{armour}\n--enc--\n"
    ).encode()


def pgp_clear_signed(ring: Keyring, body: str = BODY, quote: str = "", head: str = "") -> bytes:
    """Return a reply whose text is PGP clear-signed inline, the client's quote below it."""
    head = (head or _head("pgp-signed")) + "Content-Type: text/plain; charset=utf-8\n\n"
    return (head + ring.clearsign(body) + quote).encode()


# --------------------------------------------------------------------------- TNEF

_TNEF_SIGNATURE = 0x223E9F78
_MESSAGE, _ATTACHMENT = 1, 2
_ATT_BODY = (0x800C, 0x0002)  # attBody: text
_ATT_RENDDATA = (0x9002, 0x0006)  # attAttachRendData: opens an attachment
_ATT_TITLE = (0x8010, 0x0001)  # attAttachTitle: its file name
_ATT_DATA = (0x800F, 0x0006)  # attAttachData: its bytes
_ATT_VERSION = (0x9006, 0x0008)  # attTnefVersion
_ATT_CODEPAGE = (0x9007, 0x0006)  # attOemCodepage


def _attribute(level: int, attribute: tuple[int, int], data: bytes) -> bytes:
    """One TNEF attribute: level, id, type, length, data, 16-bit checksum of the data."""
    ident, kind = attribute
    checksum = sum(data) & 0xFFFF
    return struct.pack("<BHHI", level, ident, kind, len(data)) + data + struct.pack("<H", checksum)


def tnef_stream(text: str, files: list[tuple[str, bytes]]) -> bytes:
    """Return a TNEF stream as Outlook writes it: a text body and attached files."""
    out = struct.pack("<IH", _TNEF_SIGNATURE, 0x0001)
    out += _attribute(_MESSAGE, _ATT_VERSION, struct.pack("<I", 0x10000))
    out += _attribute(_MESSAGE, _ATT_CODEPAGE, struct.pack("<II", 1252, 0))
    out += _attribute(_MESSAGE, _ATT_BODY, text.encode("cp1252") + b"\x00")
    for name, data in files:
        out += _attribute(_ATTACHMENT, _ATT_RENDDATA, b"\x01\x00" + b"\x00" * 12)
        out += _attribute(_ATTACHMENT, _ATT_TITLE, name.encode("cp1252") + b"\x00")
        out += _attribute(_ATTACHMENT, _ATT_DATA, data)
    return out


def outlook_tnef_mail(stream: bytes, text_part: str | None = None, head: str = "") -> bytes:
    """Return an Outlook rich-text mail: a winmail.dat, with or without a text/plain beside."""
    encoded = base64.encodebytes(stream).decode()
    plain = (
        f"--tnef\nContent-Type: text/plain; charset=utf-8\n\n{text_part}\n"
        if text_part is not None
        else ""
    )
    return (
        (head or _head("tnef"))
        + 'Content-Type: multipart/mixed; boundary="tnef"\n\n'
        + plain
        + '--tnef\nContent-Type: application/ms-tnef; name="winmail.dat"\n'
        "Content-Transfer-Encoding: base64\n"
        'Content-Disposition: attachment; filename="winmail.dat"\n\n'
        f"{encoded}--tnef--\n"
    ).encode()


# The start of a PNG file and some bytes: a screenshot as far as names and types go.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


# --------------------------------------------------------------------------- bulk


def newsletter(extra: str = "") -> bytes:
    """Return a newsletter with only RFC 2369/8058 unsubscribe headers (no List-Id)."""
    return (
        "From: Boletín Ejemplo <boletin@noticias.example>\n"
        "To: rrss@ejemplo.gob.bo\n"
        "Subject: Novedades de diciembre\n"
        "Message-ID: <boletin-1@noticias.example>\n"
        "List-Unsubscribe: <https://noticias.example/baja?u=1>, <mailto:baja@noticias.example>\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\n"
        f"{extra}"
        "Content-Type: text/plain; charset=utf-8\n\n"
        "Tipo: Publicación de información específica\nTítulo: Novedades\n"
    ).encode()
