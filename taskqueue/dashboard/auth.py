"""Who may see and change what: the token (bearer header or login cookie), CSRF, read-only.

- With a token configured nothing is shown or changed without it: scripts send
  ``Authorization: Bearer <token>``; people log in through a form that sets an
  HttpOnly, SameSite=Strict cookie. The cookie holds an expiry and an HMAC of it
  keyed by the token's digest, so it works across processes and dies with the token.
- Every change is a POST that carries the CSRF token of a double-submit pair (a
  SameSite=Strict cookie and the same value in the form), and a POST whose
  ``Origin`` or ``Sec-Fetch-Site`` says it comes from another site is refused.
  A request authenticated by its bearer header needs no CSRF token: a browser
  never adds that header to a cross-site request by itself.
- Read-only refuses every POST but the login.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

from flask import Request

SESSION_COOKIE = "tq_dash_session"
CSRF_COOKIE = "tq_dash_csrf"
CSRF_FIELD = "csrf"
#: How long a login lasts.
SESSION_SECONDS = 12 * 3600


@dataclasses.dataclass(frozen=True)
class Access:
    """The dashboard's access rules (the token kept only as its digest)."""

    token_digest: bytes | None = dataclasses.field(default=None, repr=False)
    read_only: bool = False
    #: More accepted tokens' digests (a mounted dashboard accepts every ``flask.auth_tokens``).
    more_digests: tuple[bytes, ...] = dataclasses.field(default=(), repr=False)

    @classmethod
    def from_digests(cls, digests: tuple[bytes, ...], read_only: bool = False) -> Access:
        """Access for tokens known only by their SHA-256 digests (the Flask API's)."""
        if not digests:
            return cls(None, read_only)
        return cls(digests[0], read_only, tuple(digests[1:]))

    @classmethod
    def from_token(cls, token: str | None, read_only: bool = False) -> Access:
        if token is not None and (not token or token != token.strip() or not token.isprintable()):
            raise ValueError(
                "the dashboard token must be non-empty, printable and without surrounding whitespace"
            )
        digest = hashlib.sha256(token.encode()).digest() if token else None
        return cls(digest, bool(read_only))

    @property
    def token_required(self) -> bool:
        return self.token_digest is not None

    def token_accepted(self, presented: str) -> bool:
        if self.token_digest is None:
            return True
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        accepted = False
        for known in (self.token_digest, *self.more_digests):  # every one, in constant time
            accepted |= hmac.compare_digest(digest, known)
        return accepted

    # -- the login cookie ------------------------------------------------------------------
    def _sign(self, expiry: str) -> str:
        assert self.token_digest is not None
        return hmac.new(self.token_digest, b"session:" + expiry.encode(), hashlib.sha256).hexdigest()

    def session_value(self, now: float | None = None) -> str:
        expiry = str(int((now or time.time()) + SESSION_SECONDS))
        return f"{expiry}.{self._sign(expiry)}"

    def session_valid(self, value: str, now: float | None = None) -> bool:
        if self.token_digest is None:
            return True
        expiry, _, mac = value.partition(".")
        if not expiry.isdigit() or not hmac.compare_digest(mac.encode(), self._sign(expiry).encode()):
            return False
        return int(expiry) > (now or time.time())

    def bearer(self, request: Request) -> bool:
        """Whether the request carries an accepted bearer token."""
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        return (
            scheme.lower() == "bearer"
            and bool(credentials.strip())
            and self.token_accepted(credentials.strip())
        )

    def signed_in(self, request: Request) -> bool:
        """No token configured, an accepted bearer token, or a valid login cookie."""
        if self.token_digest is None:
            return True
        if self.bearer(request):
            return True
        return self.session_valid(request.cookies.get(SESSION_COOKIE, ""))


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def cross_site(request: Request) -> bool:
    """True when the browser says the request comes from another site (or another origin)."""
    fetch_site = request.headers.get("Sec-Fetch-Site", "")
    if fetch_site and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin", "")
    if origin and origin != "null":
        return urlsplit(origin).netloc != request.host
    return origin == "null"


def csrf_ok(request: Request) -> bool:
    """The double-submit check: the form's token equals the cookie's, and neither is empty."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.form.get(CSRF_FIELD, "") or request.headers.get("X-CSRF-Token", "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())


__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "SESSION_COOKIE", "Access", "cross_site", "csrf_ok", "new_csrf"]
