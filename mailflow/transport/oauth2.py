"""OAuth2 access tokens for XOAUTH2 logins (Microsoft 365, Gmail), from a refresh token.

The provider's token endpoint is asked with the standard refresh grant (RFC 6749 §6)::

    POST token_url
    grant_type=refresh_token&refresh_token=…&client_id=…[&client_secret=…][&scope=…]

and answers ``{"access_token": …, "expires_in": 3599, …}``. The token is kept until shortly
before it expires; a server that refuses it anyway (revoked, scope changed) makes the caller
call :meth:`TokenSource.invalidate` and ask again. When the provider rotates the refresh
token (Microsoft does), the new one is used from then on, in memory only.

stdlib ``urllib`` does the one POST: no runtime dependency for a form request and a JSON
answer. Tokens, the refresh token and the client secret are never logged nor put in
error messages.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from mailflow.config import OAuth2
from mailflow.errors import MailflowError
from mailflow.transport.tls import verifying_context

log = logging.getLogger(__name__)

# Refresh this long before the announced expiry, so a token never runs out mid-session.
EXPIRY_MARGIN = 120.0
DEFAULT_LIFETIME = 3600.0  # when the provider does not say (expires_in is RECOMMENDED only)

_OPERATOR_ERRORS = {
    "invalid_grant": (
        "the refresh token was refused (revoked, expired, or issued for another client): "
        "get a new one as docs/providers.md shows and set [oauth2] refresh_token "
        "(or refresh_token_env / refresh_token_file), then restart mailflow"
    ),
    "invalid_client": (
        "the client was refused: check [oauth2] client_id and client_secret "
        "(client_secret_env / client_secret_file) against the app registration"
    ),
    "unauthorized_client": (
        "this client may not use refresh tokens: allow the refresh grant (public client / "
        "offline access) in the app registration"
    ),
    "invalid_scope": "check [oauth2] scope against what the app registration grants",
}


class OAuth2Error(MailflowError):
    """The provider refused to issue a token: only the operator can fix it."""


class OAuth2UnavailableError(OAuth2Error):
    """The token endpoint could not be reached or failed (5xx): try again later."""


Post = Callable[[str, bytes, float], tuple[int, bytes]]


class TokenSource:
    """Hand out a valid access token, refreshing it from the token endpoint when needed.

    Thread-safe: the IMAP loop and the SMTP sender may ask at the same time; only one
    refresh runs.
    """

    def __init__(
        self,
        settings: OAuth2,
        *,
        post: Post | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._monotonic = monotonic
        self._refresh_token = settings.refresh_token.get_secret_value()
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self._post = post or self._urllib_post
        self.refreshes = 0
        host = urllib.parse.urlsplit(settings.token_url).hostname
        self.where = f"token endpoint {host}"

    def token(self) -> str:
        """Return the cached access token, or a new one if none is cached or it expires soon."""
        with self._lock:
            if self._token is None or self._monotonic() >= self._expires_at:
                self._refresh()
            assert self._token is not None
            return self._token

    def carry_over(self, previous: TokenSource) -> None:
        """Keep what ``previous`` learnt if the [oauth2] settings did not change (a reload).

        Providers rotate refresh tokens and the new one lives only in memory: a reload that
        went back to the file's token could be refused with invalid_grant.
        """
        if previous is self or previous._settings != self._settings:
            return
        with previous._lock:
            refresh, token, expires = (
                previous._refresh_token,
                previous._token,
                previous._expires_at,
            )
        with self._lock:
            self._refresh_token, self._token, self._expires_at = refresh, token, expires

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (a server refused it), so the next :meth:`token` refreshes."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _refresh(self) -> None:
        s = self._settings
        form = {
            "grant_type": "refresh_token",
            "refresh_token": self._refresh_token,
            "client_id": s.client_id,
        }
        if s.client_secret is not None:
            form["client_secret"] = s.client_secret.get_secret_value()
        if s.scope:
            form["scope"] = s.scope
        body = urllib.parse.urlencode(form).encode("ascii")
        started = self._monotonic()
        try:
            status, raw = self._post(s.token_url, body, float(s.timeout_seconds))
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise OAuth2Error(
                    f"{self.where}: its TLS certificate could not be verified "
                    f"({reason.verify_message}): check [oauth2] token_url and, for a private "
                    "CA, [oauth2] ca_file"
                ) from None
            raise OAuth2UnavailableError(f"{self.where} cannot be reached: {reason}") from None
        answer = _json_object(raw)
        if status >= 500 or (status == 429):
            raise OAuth2UnavailableError(f"{self.where} failed: HTTP {status}")
        if status != 200 or not isinstance(answer.get("access_token"), str):
            raise OAuth2Error(self._refusal(status, answer))
        self._token = answer["access_token"]
        lifetime = _seconds(answer.get("expires_in"))
        self._expires_at = started + max(lifetime - EXPIRY_MARGIN, lifetime / 2)
        rotated = answer.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != self._refresh_token:
            self._refresh_token = rotated  # the provider rotates it: the old may stop working
        self.refreshes += 1
        log.info("oauth2: new access token from %s, valid %.0f s", self.where, lifetime)

    def _refusal(self, status: int, answer: dict[str, Any]) -> str:
        """Explain a refused refresh with the provider's words and what to do."""
        code = str(answer.get("error") or f"HTTP {status}")
        # Provider text may quote the client id, never a token; cut it to one short line.
        detail = str(answer.get("error_description") or "").splitlines()
        said = f"{code}: {detail[0][:200]}" if detail else code
        advice = _OPERATOR_ERRORS.get(
            code, "check the [oauth2] section against the app registration (docs/providers.md)"
        )
        return f"{self.where} refused to issue an access token ({said}); {advice}"

    def _urllib_post(self, url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        """POST a form; return (status, body) for any HTTP answer, raise OSError otherwise."""
        if self._context is None:
            self._context = verifying_context(self._settings.ca_file)
        # token_url was checked to be https:// (or http:// to this machine) by the config.
        request = urllib.request.Request(  # noqa: S310
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self._context),
            _NoRedirect(),
        )
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status, response.read(1 << 20)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read(1 << 20)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Do not follow redirects: the secrets in the body must go to token_url only."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _seconds(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return DEFAULT_LIFETIME
    return seconds if seconds > 0 else DEFAULT_LIFETIME
