"""A reload keeps the refresh token the provider rotated (it lives only in memory)."""

from __future__ import annotations

import json
import urllib.parse

from mailflow.config import OAuth2
from mailflow.transport.oauth2 import TokenSource


def _settings(refresh_token: str = "from-the-file", client_id: str = "app") -> OAuth2:
    return OAuth2.model_validate(
        {
            "token_url": "http://127.0.0.1:9/token",
            "client_id": client_id,
            "refresh_token": refresh_token,
        }
    )


class _Provider:
    """Rotate the refresh token on every use; refuse a token it has replaced."""

    def __init__(self) -> None:
        self.valid = {"from-the-file"}
        self.issued = 0
        self.sent: list[str] = []

    def post(self, url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        self.sent.append(form["refresh_token"])
        if form["refresh_token"] not in self.valid:
            return 400, json.dumps({"error": "invalid_grant"}).encode()
        self.valid.discard(form["refresh_token"])
        self.issued += 1
        rotated = f"rotated-{self.issued}"
        self.valid.add(rotated)
        answer = {
            "access_token": f"access-{self.issued}",
            "expires_in": 1,
            "refresh_token": rotated,
        }
        return 200, json.dumps(answer).encode()


def test_a_reload_with_the_same_settings_keeps_the_rotated_refresh_token() -> None:
    provider = _Provider()
    clock = [0.0]
    before = TokenSource(_settings(), post=provider.post, monotonic=lambda: clock[0])
    assert before.token() == "access-1"  # the file's token is now spent
    after = TokenSource(_settings(), post=provider.post, monotonic=lambda: clock[0])
    after.carry_over(before)
    assert after.token() == "access-1"  # still valid: no refresh needed
    clock[0] = 10.0  # expired
    assert after.token() == "access-2"
    assert provider.sent == ["from-the-file", "rotated-1"]


def test_changed_settings_start_from_the_new_file() -> None:
    provider = _Provider()
    before = TokenSource(_settings(), post=provider.post)
    before.token()
    after = TokenSource(_settings(client_id="another-app"), post=provider.post)
    after.carry_over(before)
    provider.valid.add("from-the-file")
    assert after.token() == "access-2"
    assert provider.sent == ["from-the-file", "from-the-file"]
