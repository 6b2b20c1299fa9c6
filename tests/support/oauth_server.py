"""A local OAuth2 authorization server for the tests (issue 16), on a free loopback port.

It does what Google's and Microsoft's servers do for fetchweb, and no more:

* ``GET /authorize``: the consent page (authorization code flow; PKCE S256
  required); "Allow" sends the browser back to the client's redirect URI with a
  code and the state, "Deny" with ``error=access_denied``;
* ``POST /token``: ``authorization_code`` (client secret, redirect URI and the
  PKCE verifier checked with Authlib's S256 function) and ``refresh_token``
  grants; access tokens live ``access_lifetime`` seconds; refresh calls counted;
* ``POST /revoke`` (RFC 7009): a revoked refresh token answers
  ``invalid_grant`` and its access tokens are no longer active;
* ``POST /introspect`` (RFC 7662): what Dovecot's ``passdb { driver = oauth2 }``
  asks, so an IMAP or POP3 login with XOAUTH2/OAUTHBEARER is checked here;
* ``GET /.well-known/openid-configuration``: the endpoints, for discovery.

A threaded ``http.server``: Dovecot, the poll's worker threads and the browser
call it at once.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from tests.support.ports import LOOPBACK

CLIENT_ID = "fetchweb-test-client"
CLIENT_SECRET = "fetchweb-test-secret"


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    username: str
    scope: str


@dataclass
class _Grant:
    username: str
    scope: str
    refresh: str
    revoked: bool = False
    access: dict[str, float] = field(default_factory=dict)  # token -> expiry


class OAuthServer:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url`` is its base."""

    def __init__(self, *, access_lifetime: float = 3600.0) -> None:
        self.access_lifetime = access_lifetime
        self.refresh_calls = 0
        self.token_calls = 0
        self.introspections = 0
        # Holds every refresh answer until set: two refreshes at once stay at once.
        self.refresh_gate = threading.Event()
        self.refresh_gate.set()
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._grants: dict[str, _Grant] = {}  # by refresh token
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> OAuthServer:
        server = ThreadingHTTPServer((LOOPBACK, 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        self.url = f"http://{LOOPBACK}:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- what the tests configure fetchweb with -----------------------------------

    def provider(self, **overrides: Any) -> dict[str, Any]:
        """An entry of settings.FETCH_OAUTH_PROVIDERS pointing here."""
        entry: dict[str, Any] = {
            "label": "Test provider",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "authorize_url": f"{self.url}/authorize",
            "token_url": f"{self.url}/token",
            "revocation_url": f"{self.url}/revoke",
            "scopes": ["mail", "offline_access"],
            "authorize_params": {},
        }
        entry.update(overrides)
        return entry

    # -- what the tests look at and do -------------------------------------------

    def active(self, token: str) -> str | None:
        """The user an access token logs in, or None when it is not active."""
        with self._lock:
            for grant in self._grants.values():
                expiry = grant.access.get(token)
                if expiry is not None:
                    live = not grant.revoked and time.time() < expiry
                    return grant.username if live else None
        return None

    def access_tokens(self) -> list[str]:
        with self._lock:
            return [t for g in self._grants.values() for t in g.access]

    def revoke_all(self, username: str) -> int:
        """What a user does in the provider's security settings."""
        with self._lock:
            found = [g for g in self._grants.values() if g.username == username]
            for grant in found:
                grant.revoked = True
            return len(found)

    def grant_code(self, *, username: str, redirect_uri: str, challenge: str) -> str:
        """A code as the consent page's "Allow" issues it (for tests without a browser)."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Code(
                CLIENT_ID, redirect_uri, challenge, username, "mail"
            )
        return code

    # -- the endpoints ------------------------------------------------------------

    def _authorize_page(self, query: dict[str, str]) -> tuple[int, str, str]:
        problem = self._authorize_problem(query)
        if problem:
            return 400, "text/plain", problem
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in query.items()
        )
        hint = html.escape(query.get("login_hint", ""))
        body = (
            "<!doctype html><title>Test provider consent</title>"
            "<h1>Test provider: grant access to your mail?</h1>"
            f'<form method="post" action="/authorize">{hidden}'
            f'<label>Account <input name="username" value="{hint}"></label>'
            '<button name="decision" value="allow">Allow</button>'
            '<button name="decision" value="deny">Deny</button></form>'
        )
        return 200, "text/html", body

    def _authorize_problem(self, query: dict[str, str]) -> str:
        if query.get("client_id") != CLIENT_ID:
            return "unknown client"
        if query.get("response_type") != "code":
            return "response_type must be code"
        if query.get("code_challenge_method") != "S256" or not query.get(
            "code_challenge"
        ):
            return "PKCE with S256 is required"
        if not query.get("state"):
            return "state is required"
        if not query.get("redirect_uri"):
            return "redirect_uri is required"
        return ""

    def _authorize_answer(self, form: dict[str, str]) -> tuple[int, str, str]:
        problem = self._authorize_problem(form)
        if problem:
            return 400, "text/plain", problem
        target = form["redirect_uri"]
        if form.get("decision") != "allow":
            params = {"error": "access_denied", "state": form["state"]}
        else:
            code = secrets.token_urlsafe(24)
            with self._lock:
                self._codes[code] = _Code(
                    CLIENT_ID,
                    target,
                    form["code_challenge"],
                    form.get("username", ""),
                    form.get("scope", ""),
                )
            params = {"code": code, "state": form["state"]}
        sep = "&" if "?" in target else "?"
        return 302, target + sep + urllib.parse.urlencode(params), ""

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if (
            form.get("client_id") != CLIENT_ID
            or form.get("client_secret") != CLIENT_SECRET
        ):
            return 401, {"error": "invalid_client"}
        kind = form.get("grant_type")
        if kind == "authorization_code":
            return self._code_grant(form)
        if kind == "refresh_token":
            with self._lock:
                self.refresh_calls += 1
            self.refresh_gate.wait()
            return self._refresh_grant(form)
        return 400, {"error": "unsupported_grant_type"}

    def _code_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.token_calls += 1
            code = self._codes.pop(form.get("code", ""), None)
            if code is None or code.redirect_uri != form.get("redirect_uri"):
                return 400, {"error": "invalid_grant"}
            verifier = form.get("code_verifier", "")
            if not verifier or create_s256_code_challenge(verifier) != code.challenge:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "PKCE verification failed",
                }
            grant = _Grant(code.username, code.scope, secrets.token_urlsafe(32))
            self._grants[grant.refresh] = grant
            return 200, self._issue(grant, with_refresh=True)

    def _refresh_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            grant = self._grants.get(form.get("refresh_token", ""))
            if grant is None or grant.revoked:
                return 400, {"error": "invalid_grant", "error_description": "revoked"}
            return 200, self._issue(grant, with_refresh=False)

    def _issue(self, grant: _Grant, *, with_refresh: bool) -> dict[str, Any]:
        token = secrets.token_urlsafe(32)
        grant.access[token] = time.time() + self.access_lifetime
        answer: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.access_lifetime,
            "scope": grant.scope,
        }
        if with_refresh:
            answer["refresh_token"] = grant.refresh
        return answer

    def _revoke(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        token = form.get("token", "")
        with self._lock:
            for grant in self._grants.values():
                if token == grant.refresh or token in grant.access:
                    grant.revoked = True
        return 200, {}

    def _introspect(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.introspections += 1
        user = self.active(form.get("token", ""))
        if user is None:
            return 200, {"active": False}
        return 200, {"active": True, "username": user}

    def _discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "revocation_endpoint": f"{self.url}/revoke",
            "introspection_endpoint": f"{self.url}/introspect",
            "code_challenge_methods_supported": ["S256"],
        }


def _handler(server: OAuthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: tokens would be in the request lines

        def _send(self, status: int, kind: str, body: str, location: str = "") -> None:
            data = body.encode()
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._send(status, "application/json", json.dumps(body))

        def _form(self) -> dict[str, str]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            return dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
            if parts.path == "/authorize":
                status, kind, body = server._authorize_page(query)
                self._send(status, kind, body)
            elif parts.path == "/.well-known/openid-configuration":
                self._json(200, server._discovery())
            else:
                self._send(404, "text/plain", "not found")

        def do_POST(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            form = self._form()
            if path == "/authorize":
                status, target, body = server._authorize_answer(form)
                if status == 302:
                    self._send(302, "text/plain", "", location=target)
                else:
                    self._send(status, "text/plain", body)
                return
            endpoints = {
                "/token": server._token,
                "/revoke": server._revoke,
                "/introspect": server._introspect,
            }
            if path not in endpoints:
                self._send(404, "text/plain", "not found")
                return
            status, answer = endpoints[path](form)
            self._json(status, answer)

    return Handler
