"""Who may call the API and open the pages: bearer tokens, and a session cookie for browsers.

Tokens come from OUTREACH_API_TOKENS (comma-separated). Every comparison is constant
time. With no token configured, nothing but tracking, unsubscribe and health answers:
a fresh install is closed, not open.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException, Request

from outreach import tokens
from outreach.app import App

SESSION_COOKIE = "outreach_session"


def configured(app: App) -> list[str]:
    """The API tokens in the settings."""
    return [t.strip() for t in (app.settings.api_tokens or "").split(",") if t.strip()]


def known(app: App, token: str) -> bool:
    """True when `token` is one of the configured tokens (constant time per token)."""
    found = False
    for candidate in configured(app):
        found |= hmac.compare_digest(candidate.encode(), token.encode())
    return found


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def session_value(app: App, token: str) -> str:
    """A signed cookie value naming the token (by fingerprint) a person logged in with."""
    return tokens.sign(f"s:{_fingerprint(token)}", app.secret)


def session_ok(app: App, value: str | None) -> bool:
    """True when the cookie is ours and its token is still configured."""
    if not value:
        return False
    payload = tokens.verify(value, app.secret)
    if not payload or not payload.startswith("s:"):
        return False
    wanted = payload[2:]
    found = False
    for candidate in configured(app):
        found |= hmac.compare_digest(_fingerprint(candidate), wanted)
    return found


def bearer(request: Request) -> None:
    """The API's guard: 401 without a token, 403 with a wrong one."""
    app: App = request.app.state.outreach
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        if request.method == "GET" and session_ok(app, request.cookies.get(SESSION_COOKIE)):
            return  # a logged-in browser may read the API; changes need the token
        raise HTTPException(
            401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    if not known(app, token.strip()):
        raise HTTPException(403, "this token is not accepted")


def shared_secret_ok(app: App, given: str | None) -> bool:
    """The inbound webhook's check: OUTREACH_INBOUND_SECRET, compared in constant time."""
    secret = app.settings.inbound_secret
    if not secret or not given:
        return False
    return hmac.compare_digest(secret.encode(), given.encode())
