"""A fake OAuth2 provider on 127.0.0.1: token endpoint (refresh grant) and token info.

It stands for Microsoft's or Google's endpoints in tests:

* ``POST /token`` with ``grant_type=refresh_token`` checks client_id/client_secret and the
  refresh token, and answers ``{"access_token", "expires_in", "token_type"}`` (or the
  RFC 6749 §5.2 errors: ``invalid_client``, ``invalid_grant``, ``unsupported_grant_type``).
* ``GET /tokeninfo?access_token=T`` answers ``{"email": user}`` for a live token, 401
  otherwise. Dovecot's ``oauth2`` passdb asks it; the SMTP relay asks :meth:`valid`.

Tests steer it: :meth:`refresh_token_for` issues a refresh token, :meth:`revoke` kills a
refresh token, :meth:`revoke_access_tokens` kills every access token issued so far (a server
then refuses them before their announced expiry), and ``requests`` logs each token request
(grant type and client id only; no secrets).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .ports import HOST

CLIENT_ID = "mailflow-test-client"
CLIENT_SECRET = "test-client-secret"  # a throwaway value for the fake provider


@dataclass
class _Access:
    user: str
    expires_at: float
    revoked: bool = False


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    refresh: dict[str, str] = field(default_factory=dict)  # refresh token -> user
    access: dict[str, _Access] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    lookups: int = 0


class FakeOAuth2:
    """Own the fake provider's HTTP server, in a thread."""

    def __init__(self, *, lifetime: int = 3600) -> None:
        self.lifetime = lifetime
        self.client_id = CLIENT_ID
        self.client_secret = CLIENT_SECRET
        self.state = _State()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def token_url(self) -> str:
        """Return the token endpoint's URL."""
        return f"http://{HOST}:{self.port}/token"

    @property
    def tokeninfo_url(self) -> str:
        """Return the token info URL, ready for the token to be appended (Dovecot's style)."""
        return f"http://{HOST}:{self.port}/tokeninfo?access_token="

    # -- what tests steer and look at -----------------------------------------------------

    def refresh_token_for(self, user: str) -> str:
        """Issue a refresh token that yields access tokens for user."""
        token = "rt-" + secrets.token_urlsafe(16)
        with self.state.lock:
            self.state.refresh[token] = user.lower()
        return token

    def revoke(self, refresh_token: str) -> None:
        """Make a refresh token invalid (the user changed password, an admin revoked it)."""
        with self.state.lock:
            self.state.refresh.pop(refresh_token, None)

    def revoke_access_tokens(self) -> None:
        """Make every access token issued so far invalid before its announced expiry."""
        with self.state.lock:
            for access in self.state.access.values():
                access.revoked = True

    def valid(self, user: str, token: str) -> bool:
        """Tell whether token is a live access token issued for user."""
        with self.state.lock:
            self.state.lookups += 1
            access = self.state.access.get(token)
            return (
                access is not None
                and not access.revoked
                and access.expires_at > time.monotonic()
                and access.user == user.lower()
            )

    @property
    def requests(self) -> list[dict[str, str]]:
        """Return the token requests received (grant_type, client_id, outcome), in order."""
        with self.state.lock:
            return list(self.state.requests)

    def issued(self) -> list[str]:
        """Return every access token issued, oldest first."""
        with self.state.lock:
            return list(self.state.access)

    # -- the endpoints --------------------------------------------------------------------

    def token_answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Answer a token request (RFC 6749 §5)."""
        with self.state.lock:
            entry = {
                "grant_type": form.get("grant_type", ""),
                "client_id": form.get("client_id", ""),
            }
            self.state.requests.append(entry)
            if (form.get("client_id"), form.get("client_secret")) != (
                self.client_id,
                self.client_secret,
            ):
                entry["outcome"] = "invalid_client"
                return 401, {"error": "invalid_client", "error_description": "unknown client"}
            if form.get("grant_type") != "refresh_token":
                entry["outcome"] = "unsupported_grant_type"
                return 400, {"error": "unsupported_grant_type"}
            user = self.state.refresh.get(form.get("refresh_token", ""))
            if user is None:
                entry["outcome"] = "invalid_grant"
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "AADSTS70008: The refresh token has been revoked.",
                }
            token = "at-" + secrets.token_urlsafe(24)
            self.state.access[token] = _Access(user, time.monotonic() + self.lifetime)
            entry["outcome"] = "issued"
            return 200, {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.lifetime,
                "scope": form.get("scope", ""),
            }

    def tokeninfo_answer(self, token: str) -> tuple[int, dict[str, Any]]:
        """Answer a token info lookup: who the token is for, if it is live."""
        with self.state.lock:
            access = self.state.access.get(token)
        if access is None or not self.valid(access.user, token):
            return 401, {"error": "invalid_token"}
        return 200, {"email": access.user, "expires_in": int(access.expires_at - time.monotonic())}

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                form = dict(urllib.parse.parse_qsl(raw))
                if urllib.parse.urlsplit(self.path).path != "/token":
                    self._reply(404, {"error": "not_found"})
                    return
                self._reply(*provider.token_answer(form))

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                if parts.path != "/tokeninfo":
                    self._reply(404, {"error": "not_found"})
                    return
                token = dict(urllib.parse.parse_qsl(parts.query)).get("access_token", "")
                self._reply(*provider.tokeninfo_answer(token))

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: pytest shows failures, not every request

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-oauth2", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the port."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def __enter__(self) -> FakeOAuth2:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
