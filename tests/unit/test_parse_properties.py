"""Property tests: the parser is total and quick on any bytes, real-looking or not."""

from __future__ import annotations

import binascii
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow.mail import parse
from mailflow.mail.intake import parse_cronograma, parse_intake
from mailflow.mail.parse import InboundMail, MailParseError, parse_message
from mailflow.mail.replytext import read_reply

CORPUS = sorted((Path(__file__).resolve().parents[1] / "data" / "mail").glob("*.eml"))
SAMPLES = [p.read_bytes() for p in CORPUS]
FRAGMENTS = [
    b"\n",
    b"\r\n",
    b"\n\n",
    b"--",
    b"boundary=",
    b'"',
    b";",
    b"=?",
    b"?=",
    b"=?utf-8?B?",
    b"=?x-unknown?Q?",
    b"Content-Type: multipart/mixed; boundary=b\n",
    b"--b\n",
    b"--b--\n",
    b"Content-Type: text/html\n\n<blockquote>",
    b"Content-Transfer-Encoding: base64\n",
    b"Content-Transfer-Encoding: quoted-printable\n",
    b"=\n",
    b"=FF",
    b"\xff\xfe",
    b"\x00",
    b"charset=punycode",
    b"From: ",
    b"To: ",
    b"(",
    b"<",
    b">",
    b"@",
    b"Date: ",
    b"\t",
    b"Content-Disposition: attachment; filename*=utf-8''%E2%80",
    b"message/rfc822\n\n",
    b"multipart/report; report-type=delivery-status",
    b"Auto-Submitted: ",
]


def _check(raw: bytes) -> None:
    start = time.perf_counter()
    try:
        mail = parse_message(raw)
    except MailParseError:
        return
    assert isinstance(mail, InboundMail)
    read_reply(mail.text, mail.subject)
    assert time.perf_counter() - start < 2


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_any_bytes(raw: bytes) -> None:
    _check(raw)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=12), max_size=60))
def test_mime_shaped_bytes(parts: list[bytes]) -> None:
    _check(b"".join(parts))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SAMPLES),
    st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 64), st.binary(max_size=16)), max_size=6
    ),
)
def test_mutated_corpus(sample: bytes, edits: list[tuple[int, int, bytes]]) -> None:
    raw = bytearray(sample)
    for pos, cut, insert in edits:
        at = pos % (len(raw) + 1)
        raw[at : at + cut] = insert
    _check(bytes(raw))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000))
def test_intake_and_reply_text_never_raise(text: str) -> None:
    from datetime import date

    parse_intake(text, date(2026, 11, 20))
    parse_intake(text, date(2026, 11, 20), html=True)
    parse_cronograma(text)
    read_reply(text, text[:200])


def _base64_by_regex(payload: str) -> bytes:
    """Decode as the parser did before it dropped stray characters with bytes.translate."""
    text = re.sub(r"[^A-Za-z0-9+/]", "", payload)
    cut = len(text) - len(text) % 4
    tail = text[cut:] + "=" * (-len(text[cut:]) % 4) if len(text) - cut > 1 else ""
    return binascii.a2b_base64(text[:cut]) + (binascii.a2b_base64(tail) if tail else b"")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["QUJD", "RA==", "=", "\r\n", "\n", " ", "*", "\udcff", "é", "Zm9v"])
        | st.text(max_size=8),
        max_size=80,
    ),
    st.sampled_from([1, 3, 4, 7, 64]),
)
def test_base64_slices_decode_as_the_regex_did(pieces: list[str], slice_chars: int) -> None:
    payload = "".join(pieces)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parse, "DECODE_SLICE_CHARS", slice_chars)
        assert b"".join(parse._base64_chunks(payload)) == _base64_by_regex(payload)
