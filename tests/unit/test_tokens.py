"""Reply tokens: valid only for the person, request and stage they were issued for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailflow.core.tokens import find_tokens, make_token, message_id, reply_address, verify

SECRET = b"a-long-enough-hmac-key"
JEFE = "jefe.ugs@ejemplo.gob.bo"


def test_token_round_trips_through_reply_address_and_message_id() -> None:
    token = make_token(SECRET, "RRSS-2026-0042", 3, JEFE)
    address = reply_address("rrss@ejemplo.gob.bo", token)
    assert address.startswith("rrss+rrss-2026-0042-s3-") and address.endswith("@ejemplo.gob.bo")
    assert len(address.partition("@")[0]) <= 64  # RFC 5321 local-part limit
    mid = message_id(token, "a1b2c3", "ejemplo.gob.bo")
    assert find_tokens([address]) == [token]
    assert find_tokens([f"<x@y> {mid}"]) == [token]
    assert verify(SECRET, token, JEFE)


def test_address_case_and_spaces_do_not_matter() -> None:
    token = make_token(SECRET, "RRSS-2026-0042", 3, JEFE)
    assert verify(SECRET, token, " Jefe.UGS@Ejemplo.gob.bo ")
    assert find_tokens([reply_address("rrss@x.bo", token).upper()]) == [token]


def test_token_is_refused_for_another_sender_stage_request_or_key() -> None:
    token = make_token(SECRET, "RRSS-2026-0042", 3, JEFE)
    assert not verify(SECRET, token, "intruso@ejemplo.gob.bo")
    assert not verify(b"another-secret-key-xx", token, JEFE)
    moved = type(token)(token.code, 4, token.mac)
    assert not verify(SECRET, moved, JEFE)
    other = type(token)("RRSS-2026-0043", 3, token.mac)
    assert not verify(SECRET, other, JEFE)


def test_find_tokens_ignores_junk_and_duplicates() -> None:
    token = make_token(SECRET, "RRSS-2026-0007", 1, JEFE)
    text = reply_address("rrss@x.bo", token)
    assert find_tokens(["", "rrss@x.bo", "<CAF=abc@mail.gmail.com>", text, text]) == [token]


@given(st.text(max_size=300))
def test_find_tokens_never_fails_on_any_text(text: str) -> None:
    for token in find_tokens([text]):
        assert not verify(SECRET, token, JEFE) or token.text in text.lower()
