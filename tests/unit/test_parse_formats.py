"""Formats that defeat a plain reader: encrypted, opaque-signed, PGP-signed, TNEF, newsletters.

Each mail is made by the test: ``openssl cms`` and ``gpg`` with throwaway keys, a TNEF
stream written byte by byte, a newsletter's headers (see ``tests/testbed/formats.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from testbed.formats import (
    PNG,
    Keyring,
    certificate,
    keyring,
    newsletter,
    outlook_tnef_mail,
    pgp_clear_signed,
    pgp_inline_encrypted,
    pgp_mime_encrypted,
    smime_clear_signed,
    smime_encrypted,
    smime_opaque,
    tnef_stream,
)

from mailflow.core.model import Action
from mailflow.mail.autoreply import AutoKind
from mailflow.mail.parse import parse_message
from mailflow.mail.replytext import read_reply
from mailflow.mail.sealed import Sealed, unwrap_signed
from mailflow.mail.tnef import open_tnef


@pytest.fixture(scope="module")
def cert() -> Iterator[tuple[Path, Path]]:
    with certificate() as pair:
        yield pair


@pytest.fixture(scope="module")
def ring() -> Iterator[Keyring]:
    with keyring() as made:
        yield made


# --------------------------------------------------------------------------- S/MIME


def test_smime_encrypted_mail_is_sealed_and_unread(cert: tuple[Path, Path]) -> None:
    mail = parse_message(smime_encrypted(cert[0]))
    assert mail.sealed is Sealed.ENCRYPTED
    assert "enveloped-data" in mail.sealed_reason
    assert mail.text == ""
    assert mail.attachments == ()  # the encrypted blob is not a request's file


def test_opaque_smime_signature_is_unreadable(cert: tuple[Path, Path]) -> None:
    mail = parse_message(smime_opaque(*cert))
    assert mail.sealed is Sealed.OPAQUE
    assert "signed-data" in mail.sealed_reason


def test_clear_signed_smime_is_read_as_usual(cert: tuple[Path, Path]) -> None:
    mail = parse_message(smime_clear_signed(*cert))
    assert mail.sealed is Sealed.NONE
    assert read_reply(mail.text, mail.subject).action is Action.APRUEBO
    assert [a.content_type for a in mail.attachments] == ["application/pkcs7-signature"]


# --------------------------------------------------------------------------- PGP


def test_inline_pgp_message_is_encrypted(ring: Keyring) -> None:
    mail = parse_message(pgp_inline_encrypted(ring))
    assert mail.sealed is Sealed.ENCRYPTED
    assert "PGP" in mail.sealed_reason


def test_pgp_mime_is_encrypted(ring: Keyring) -> None:
    mail = parse_message(pgp_mime_encrypted(ring))
    assert mail.sealed is Sealed.ENCRYPTED
    assert "multipart/encrypted" in mail.sealed_reason


def test_inline_pgp_signed_text_is_unwrapped(ring: Keyring) -> None:
    quote = "\nEl vie, 20 nov 2026 a las 10:12, Mesa <rrss@ejemplo.gob.bo> escribió:\n> OBSERVO\n"
    body = "RECHAZO el logo no es el vigente\n- Cambiar el logo\n\nSaludos,\nAna\n"
    mail = parse_message(pgp_clear_signed(ring, body, quote))
    assert mail.sealed is Sealed.NONE
    assert "BEGIN PGP" not in mail.text
    assert "- Cambiar el logo" in mail.text  # gpg's dash escape is undone
    reading = read_reply(mail.text, mail.subject)
    assert reading.action is Action.RECHAZO
    assert reading.text == "el logo no es el vigente\n- Cambiar el logo"


def test_a_quoted_pgp_message_does_not_seal_a_reply() -> None:
    text = "APRUEBO\n\n> -----BEGIN PGP MESSAGE-----\n> hQEMA\n> -----END PGP MESSAGE-----\n"
    raw = f"From: a@ejemplo.gob.bo\nSubject: x\nContent-Type: text/plain\n\n{text}".encode()
    assert parse_message(raw).sealed is Sealed.NONE


def test_unwrap_leaves_other_text_alone() -> None:
    assert unwrap_signed("APRUEBO\n") == "APRUEBO\n"
    signed = (
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n- -- no es firma\nAPRUEBO\n"
        "-----BEGIN PGP SIGNATURE-----\n\niQEz\n-----END PGP SIGNATURE-----\n"
    )
    assert unwrap_signed(signed) == "-- no es firma\nAPRUEBO"


# --------------------------------------------------------------------------- TNEF


def test_tnef_is_opened_into_its_files() -> None:
    stream = tnef_stream("PUBLICADO fotografía\r\n", [("captura publicación.png", PNG)])
    mail = parse_message(outlook_tnef_mail(stream, "PUBLICADO https://www.facebook.com/e/posts/7"))
    [screenshot] = mail.attachments
    assert screenshot.filename == "captura publicación.png"
    assert screenshot.content_type == "image/png"
    assert screenshot.data == PNG
    assert mail.text.startswith("PUBLICADO https://")  # the text/plain part wins


def test_tnef_body_is_the_text_when_there_is_no_text_part() -> None:
    stream = tnef_stream("PUBLICADO https://www.facebook.com/e/posts/8\r\n", [("a.png", PNG)])
    mail = parse_message(outlook_tnef_mail(stream))
    reading = read_reply(mail.text, mail.subject)
    assert reading.action is Action.PUBLICADO
    assert reading.urls == ("https://www.facebook.com/e/posts/8",)


def test_broken_tnef_is_kept_as_it_came() -> None:
    mail = parse_message(outlook_tnef_mail(b"esto no es TNEF", "APRUEBO"))
    [kept] = mail.attachments
    assert kept.filename == "winmail.dat"
    assert kept.data == b"esto no es TNEF"
    assert open_tnef(b"\x78\x9f\x3e\x22\x01") is None  # the signature alone, truncated


# --------------------------------------------------------------------------- bulk


def test_newsletter_with_only_list_unsubscribe_is_bulk() -> None:
    mail = parse_message(newsletter())
    assert mail.auto is AutoKind.BULK
    assert mail.is_automatic
    assert "List-Unsubscribe" in mail.auto_reason


def test_human_mail_without_list_headers_is_human() -> None:
    raw = newsletter().replace(b"List-Unsubscribe", b"X-Nota")
    assert parse_message(raw).auto is AutoKind.HUMAN
