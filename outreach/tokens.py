"""Signed, URL-safe tokens for unsubscribe and tracking links."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session

from outreach.models import Meta

SECRET_KEY = "secret_key"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(payload: str, secret: str) -> str:
    """`payload` with an HMAC-SHA256 tag, both URL-safe."""
    body = _b64(payload.encode())
    tag = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()[:16]
    return f"{body}.{_b64(tag)}"


def verify(token: str, secret: str) -> str | None:
    """The payload when the token is genuine and unaltered, else None."""
    body, _, tag = token.partition(".")
    expected = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()[:16]
    try:
        if not hmac.compare_digest(_unb64(tag), expected):
            return None
        return _unb64(body).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def secret_key(engine: sa.Engine, configured: str | None) -> str:
    """The configured secret, or one generated once and kept in the database."""
    if configured:
        return configured
    try:
        with Session(engine) as session, session.begin():
            row = session.get(Meta, SECRET_KEY)
            if row is None:
                row = Meta(key=SECRET_KEY, value=secrets.token_urlsafe(32))
                session.add(row)
            return row.value
    except sa.exc.IntegrityError:
        # another process generated it first: use theirs
        with Session(engine) as session:
            return session.get_one(Meta, SECRET_KEY).value
