"""Sign-in for the advice console: the admin token (kept only as a salted hash), signed session
cookies, and a per-IP limit on sign-in attempts.

A session is a cookie `base64(json{"sid", "exp", "admin"}).hmac`; nothing about it is stored on
the server except the ids of sessions that signed out (so a copied cookie dies with the logout).
The signing key is ADVISOR_ADMIN_SECRET when set; otherwise a random key made when the process
starts, so sessions end with the process and one worker cannot read another's cookies: with
`--workers N` set ADVISOR_ADMIN_SECRET.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass

COOKIE = "advisor_console"


class TokenCheck:
    """Compares a candidate with the admin token in constant time, keeping only a salted scrypt hash."""

    def __init__(self, token: str) -> None:
        self._salt = secrets.token_bytes(16)
        self._hash = self._derive(token)

    def _derive(self, value: str) -> bytes:
        return hashlib.scrypt(value.encode(), salt=self._salt, n=2**14, r=8, p=1, dklen=32)

    def matches(self, candidate: str) -> bool:
        return hmac.compare_digest(self._derive(candidate), self._hash)


@dataclass(frozen=True)
class Session:
    sid: str
    expires: float
    admin: bool  # False: the anonymous session of the sign-in page (it carries the login form's CSRF token)


class Sessions:
    """Issues and reads signed session cookies."""

    def __init__(self, secret: str | None, lifetime_seconds: float) -> None:
        # a key derived from the secret (never the secret itself), or a random per-process key
        material = secret.encode() if secret else secrets.token_bytes(32)
        self._key = hashlib.sha256(b"advisor-console-session\x00" + material).digest()
        self.lifetime = lifetime_seconds
        self._ended: dict[str, float] = {}  # sid -> expiry, for sessions that signed out

    @property
    def key(self) -> bytes:
        return self._key

    def new(self, admin: bool) -> tuple[Session, str]:
        lifetime = self.lifetime if admin else min(self.lifetime, 3600.0)
        session = Session(secrets.token_urlsafe(18), time.time() + lifetime, admin)
        body = base64.urlsafe_b64encode(
            json.dumps({"sid": session.sid, "exp": session.expires, "admin": admin}).encode()
        ).decode().rstrip("=")
        return session, f"{body}.{self._sign(body)}"

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie carries, or None when it is missing, forged, expired or signed out."""
        if not cookie or "." not in cookie or len(cookie) > 512:
            return None
        body, signature = cookie.rsplit(".", 1)
        if not hmac.compare_digest(self._sign(body), signature):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            session = Session(str(data["sid"]), float(data["exp"]), bool(data["admin"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires < time.time() or session.sid in self._ended:
            return None
        return session

    def end(self, session: Session) -> None:
        now = time.time()
        self._ended = {sid: exp for sid, exp in self._ended.items() if exp > now}
        self._ended[session.sid] = session.expires


class AttemptLimiter:
    """At most `limit` sign-in attempts per client address in any `window` seconds."""

    def __init__(self, limit: int = 5, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._seen: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> int:
        """0 when an attempt is allowed now (and counts it), else the seconds to wait."""
        now = time.monotonic()
        times = self._seen.setdefault(client, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            return max(1, int(times[0] + self.window - now + 0.999))
        times.append(now)
        if len(self._seen) > self.max_clients:  # forget idle clients so the table stays small
            self._seen = {c: t for c, t in self._seen.items() if t and t[-1] > now - self.window}
        return 0
