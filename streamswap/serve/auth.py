"""The access token: made at start (or given), checked on every request in constant time.

Requests carry it in a header, `Authorization: Bearer T` or `X-StreamSwap-Token: T`; a page (an
HTML GET, which a browser's address bar cannot give a header) may carry it once as `?token=T`,
after which the page's script keeps it in sessionStorage and sends the header. Never a cookie: a
cookie would ride along with requests other sites make (CSRF); a header cannot.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping

TOKEN_HEADER = "x-streamswap-token"


def new_token() -> str:
    """A random token (32 bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_of(headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> str | None:
    """The token a request carries: its headers, else (for pages only) its `token` query value."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if headers.get(TOKEN_HEADER):
        return headers[TOKEN_HEADER].strip()
    if query is not None and query.get("token"):
        return query["token"]
    return None


def allowed(given: str | None, token: str) -> bool:
    """Whether `given` is the token (compared in constant time)."""
    return given is not None and hmac.compare_digest(given.encode(), token.encode())
