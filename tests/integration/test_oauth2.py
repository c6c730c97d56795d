"""XOAUTH2 logins with tokens refreshed from a (fake, local) provider's token endpoint.

The fake provider (tests/testbed/oauth2.py) issues access tokens for refresh tokens;
Dovecot's ``oauth2`` passdb checks them at its token info URL, the relay checks them
directly. Both refuse a revoked token the way real servers do, so the refresh-after-refusal
path runs against real protocol exchanges.
"""

from __future__ import annotations

import base64
import email.policy
import itertools
import logging
import re
from typing import Any

import pytest
from conftest import TlsBed
from testbed.dovecot import Dovecot
from testbed.mail import build_message, deliver
from testbed.ports import HOST
from testbed.smtp import SmtpRelay

from mailflow.app.outbox import Verdict
from mailflow.config import Imap, OAuth2, Smtp, parse_settings
from mailflow.errors import ConfigError
from mailflow.transport.imap import ImapAuthError, ImapSource, ImapUnavailableError
from mailflow.transport.oauth2 import OAuth2Error, OAuth2UnavailableError, TokenSource
from mailflow.transport.smtp import Outgoing, SmtpAuthError, SmtpSender

EHLO = "mailflow.test"
_counter = itertools.count(1)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def oauth_settings(tls_bed: TlsBed, refresh_token: str, **values: Any) -> OAuth2:
    oauth = tls_bed.oauth
    return OAuth2.model_validate(
        {
            "token_url": oauth.token_url,
            "client_id": oauth.client_id,
            "client_secret": oauth.client_secret,
            "refresh_token": refresh_token,
            "scope": "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
            **values,
        }
    )


@pytest.fixture
def mailbox(tls_bed: TlsBed, request: pytest.FixtureRequest) -> str:
    """Return an empty mailbox of this test's own on the TLS Dovecot."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    domain = f"o{next(_counter)}-{slug}.tls.example.net"
    tls_bed.dovecot.add_domain(domain)
    return f"rrss@{domain}"


def imap_settings(tls_bed: TlsBed, mailbox: str, security: str = "tls") -> Imap:
    dovecot = tls_bed.dovecot
    return Imap.model_validate(
        {
            "host": HOST,
            "port": dovecot.imaps_port if security == "tls" else dovecot.imap_port,
            "security": security,
            "ca_file": tls_bed.ca.ca_file,
            "auth": "xoauth2",
            "username": mailbox,
            "timeout_seconds": 10,
        }
    )


def smtp_sender(tls_bed: TlsBed, mailbox: str, tokens: TokenSource) -> SmtpSender:
    settings = Smtp.model_validate(
        {
            "host": HOST,
            "port": tls_bed.relay.port,
            "security": "starttls",
            "ca_file": tls_bed.ca.ca_file,
            "auth": "xoauth2",
            "username": mailbox,
            "from_address": mailbox,
            "timeout_seconds": 10,
        }
    )
    return SmtpSender(settings, tokens=tokens, local_hostname=EHLO)


def outgoing(key: str, sender: str) -> Outgoing:
    message = build_message(sender, (sender,), f"[RRSS-2026-0002] {key}", f"Mensaje {key}.\n")
    return Outgoing(key, sender, (sender,), message.as_bytes(policy=email.policy.SMTP))


def leaked(text: str, secrets: list[str]) -> list[str]:
    """Return the secrets (or their XOAUTH2 base64 form's core) that appear in text."""
    found = [s for s in secrets if s in text]
    for s in secrets:
        # The XOAUTH2 blob is base64 of "user=…\x01auth=Bearer TOKEN…": look for its
        # encoding at each of the three alignments too.
        for pad in range(3):
            core = base64.b64encode(b"x" * pad + s.encode())[4:-4].decode()
            if len(core) > 12 and core in text:
                found.append(f"base64 of {s[:6]}…")
    return found


# -- the token source against the fake provider ----------------------------------------


def test_token_is_refreshed_once_cached_and_refreshed_again_near_expiry(
    tls_bed: TlsBed, mailbox: str
) -> None:
    oauth = tls_bed.oauth
    clock = Clock()
    tokens = TokenSource(oauth_settings(tls_bed, oauth.refresh_token_for(mailbox)), monotonic=clock)
    before = len(oauth.requests)
    first = tokens.token()
    assert tokens.token() == first  # cached
    assert oauth.valid(mailbox, first)
    clock.now += oauth.lifetime - 60  # inside the safety margin before expiry
    second = tokens.token()
    assert second != first
    requests = oauth.requests[before:]
    assert [r["grant_type"] for r in requests] == ["refresh_token", "refresh_token"]
    assert all(r["outcome"] == "issued" for r in requests)


def test_a_revoked_refresh_token_is_a_clear_operator_error(
    tls_bed: TlsBed, mailbox: str, caplog: pytest.LogCaptureFixture
) -> None:
    oauth = tls_bed.oauth
    refresh = oauth.refresh_token_for(mailbox)
    oauth.revoke(refresh)
    tokens = TokenSource(oauth_settings(tls_bed, refresh))
    with caplog.at_level(logging.DEBUG), pytest.raises(OAuth2Error) as caught:
        tokens.token()
    text = str(caught.value)
    assert not isinstance(caught.value, OAuth2UnavailableError)
    assert f"token endpoint {HOST}" in text and "invalid_grant" in text
    assert "[oauth2] refresh_token" in text and "docs/providers.md" in text
    assert leaked(text + caplog.text, [refresh, oauth.client_secret]) == []


def test_a_wrong_client_secret_names_the_keys_to_check(tls_bed: TlsBed, mailbox: str) -> None:
    refresh = tls_bed.oauth.refresh_token_for(mailbox)
    tokens = TokenSource(oauth_settings(tls_bed, refresh, client_secret="not-it"))
    with pytest.raises(OAuth2Error, match=r"invalid_client.*client_id and client_secret"):
        tokens.token()


def test_an_unreachable_token_endpoint_is_temporary(tls_bed: TlsBed, mailbox: str) -> None:
    from testbed.ports import free_port

    refresh = tls_bed.oauth.refresh_token_for(mailbox)
    settings = oauth_settings(tls_bed, refresh, token_url=f"http://{HOST}:{free_port()}/token")
    with pytest.raises(OAuth2UnavailableError, match="cannot be reached"):
        TokenSource(settings).token()


# -- IMAP: Dovecot's oauth2 passdb -----------------------------------------------------------


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_imap_xoauth2_login_reads_the_mailbox_and_refreshes_a_refused_token(
    tls_bed: TlsBed, mailbox: str, caplog: pytest.LogCaptureFixture, security: str
) -> None:
    oauth = tls_bed.oauth
    deliver(tls_bed.dovecot, [mailbox], b"Subject: uno\r\n\r\nhola\r\n")
    refresh = oauth.refresh_token_for(mailbox)
    tokens = TokenSource(oauth_settings(tls_bed, refresh))
    source = ImapSource(imap_settings(tls_bed, mailbox, security), tokens=tokens)
    with caplog.at_level(logging.DEBUG):
        source.connect()
        assert len(list(source.fetch_after(0))) == 1
        source.close()
        assert tokens.refreshes == 1
        # The provider revokes the access token before its announced expiry: Dovecot
        # refuses the cached one, mailflow asks for a new one and gets in.
        oauth.revoke_access_tokens()
        source.connect()
        assert len(list(source.fetch_after(0))) == 1
        source.close()
    assert tokens.refreshes == 2
    assert "access token refused; asking for a new one" in caplog.text
    logins = [
        line
        for line in tls_bed.dovecot.log_path.read_text().splitlines()
        if f"user=<{mailbox}>" in line and "Login:" in line
    ]
    assert len(logins) == 2 and all("method=XOAUTH2" in line for line in logins)
    assert leaked(caplog.text, [*oauth.issued(), refresh, oauth.client_secret]) == []


def test_imap_xoauth2_with_a_revoked_refresh_token_says_what_to_do(
    tls_bed: TlsBed, mailbox: str
) -> None:
    oauth = tls_bed.oauth
    refresh = oauth.refresh_token_for(mailbox)
    tokens = TokenSource(oauth_settings(tls_bed, refresh))
    source = ImapSource(imap_settings(tls_bed, mailbox), tokens=tokens)
    source.connect()
    source.close()
    oauth.revoke(refresh)
    oauth.revoke_access_tokens()
    with pytest.raises(ImapAuthError) as caught:
        source.connect()
    text = str(caught.value)
    assert f"{mailbox}@{HOST}:{tls_bed.dovecot.imaps_port}" in text
    assert "invalid_grant" in text and "[oauth2] refresh_token" in text


def test_imap_xoauth2_token_for_another_mailbox_is_refused_with_advice(
    tls_bed: TlsBed, mailbox: str
) -> None:
    other = mailbox.replace("rrss@", "otra@")
    tokens = TokenSource(oauth_settings(tls_bed, tls_bed.oauth.refresh_token_for(other)))
    with pytest.raises(ImapAuthError, match=r"imap.username sea el buzón del token"):
        ImapSource(imap_settings(tls_bed, mailbox), tokens=tokens).connect()
    assert tokens.refreshes == 2  # refused once, refreshed once, refused again: then stop


def test_imap_token_endpoint_down_is_retried_not_fatal(tls_bed: TlsBed, mailbox: str) -> None:
    from testbed.ports import free_port

    refresh = tls_bed.oauth.refresh_token_for(mailbox)
    settings = oauth_settings(tls_bed, refresh, token_url=f"http://{HOST}:{free_port()}/token")
    source = ImapSource(imap_settings(tls_bed, mailbox), tokens=TokenSource(settings))
    with pytest.raises(ImapUnavailableError, match="sin token de acceso"):
        source.connect()
    assert not source.connected


# -- SMTP: the relay's AUTH XOAUTH2 ---------------------------------------------------------


def test_smtp_xoauth2_sends_and_refreshes_a_refused_token(
    tls_bed: TlsBed, mailbox: str, caplog: pytest.LogCaptureFixture
) -> None:
    oauth, relay = tls_bed.oauth, tls_bed.relay
    relay.reset()
    refresh = oauth.refresh_token_for(mailbox)
    tokens = TokenSource(oauth_settings(tls_bed, refresh))
    sender = smtp_sender(tls_bed, mailbox, tokens)
    with caplog.at_level(logging.DEBUG):
        [first] = sender.send_many_sync([outgoing("uno", mailbox)])
        oauth.revoke_access_tokens()
        [second] = sender.send_many_sync([outgoing("dos", mailbox)])
    assert first.accepted == second.accepted == (mailbox,)
    assert tokens.refreshes == 2
    assert [(m.login, m.tls) for m in relay.accepted] == [(mailbox, True), (mailbox, True)]
    assert "refused the access token; asking for a new one" in caplog.text
    assert leaked(caplog.text, [*oauth.issued(), refresh, oauth.client_secret]) == []


def test_smtp_xoauth2_with_a_revoked_refresh_token_is_an_auth_error(
    tls_bed: TlsBed, mailbox: str
) -> None:
    oauth, relay = tls_bed.oauth, tls_bed.relay
    relay.reset()
    refresh = oauth.refresh_token_for(mailbox)
    oauth.revoke(refresh)
    sender = smtp_sender(tls_bed, mailbox, TokenSource(oauth_settings(tls_bed, refresh)))
    with pytest.raises(SmtpAuthError) as caught:
        sender.send_many_sync([outgoing("tres", mailbox)])
    assert "invalid_grant" in str(caught.value) and "[oauth2] refresh_token" in str(caught.value)
    assert relay.accepted == []
    # Kept for after the operator fixed it.
    assert Verdict.of(caught.value.results[0]).temporary


# -- configuration ---------------------------------------------------------------------------


def _raw(**sections: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "imap": {"host": "outlook.office365.com", "auth": "xoauth2", "username": "u@x.org"},
        "smtp": {"host": "smtp.office365.com", "from_address": "u@x.org"},
    }
    return {**base, **sections}


def _problems(raw: dict[str, Any], env: dict[str, str] | None = None) -> str:
    from pathlib import Path

    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, Path("/nonexistent/mailflow.toml"), env or {})
    return "\n".join(caught.value.problems)


def test_config_xoauth2_without_an_oauth2_section_is_refused() -> None:
    assert 'imap.auth: "xoauth2" necesita una sección [oauth2]' in _problems(_raw())


def test_config_oauth2_refuses_a_clear_text_token_url_and_a_missing_env_secret() -> None:
    oauth2 = {"token_url": "http://login.example.com/token", "client_id": "abc"}
    problems = _problems(_raw(oauth2={**oauth2, "refresh_token_env": "MAILFLOW_REFRESH"}))
    assert (
        "oauth2.refresh_token_env: nombra la variable $MAILFLOW_REFRESH, que no está definida"
        in problems
    )
    problems = _problems(
        _raw(oauth2={**oauth2, "refresh_token_env": "R"}), env={"R": "from-the-env"}
    )
    assert "oauth2.token_url: " in problems and "no es una URL https://" in problems


def test_config_xoauth2_smtp_needs_a_username_and_no_password() -> None:
    problems = _problems(
        _raw(smtp={"host": "s", "from_address": "u@x.org", "auth": "xoauth2", "password": "p"})
    )
    assert 'smtp.username: falta: auth = "xoauth2" necesita la dirección del buzón' in problems


def test_xoauth2_against_servers_without_it_names_the_setting(
    tls_bed: TlsBed, dovecot: Dovecot, relay: SmtpRelay, maildomain: str
) -> None:
    """The session's plain Dovecot and relay offer PLAIN/LOGIN only: say so, ask no token."""
    address = f"rrss@{maildomain}"
    tokens = TokenSource(oauth_settings(tls_bed, tls_bed.oauth.refresh_token_for(address)))
    imap = Imap.model_validate(
        {
            "host": HOST,
            "port": dovecot.imap_port,
            "security": "none",
            "auth": "xoauth2",
            "username": address,
        }
    )
    with pytest.raises(ImapAuthError, match=r"no ofrece XOAUTH2 \(ofrece LOGIN, PLAIN\)"):
        ImapSource(imap, tokens=tokens).connect()
    smtp = Smtp.model_validate(
        {
            "host": HOST,
            "port": relay.port,
            "security": "none",
            "auth": "xoauth2",
            "username": address,
            "from_address": address,
        }
    )
    sender = SmtpSender(smtp, tokens=tokens, local_hostname=EHLO)
    with pytest.raises(SmtpAuthError, match=r'no ofrece XOAUTH2.*auth = "password"'):
        sender.send_many_sync([outgoing("cuatro", address)])
    assert tokens.refreshes == 0
