"""CSRF tokens: an HMAC of the session id, so a token is good for one session only and a page
from another site (which cannot read our pages or cookies) cannot produce one."""

from __future__ import annotations

import hashlib
import hmac

from adapters.admin_console.auth import Session

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"


def token_for(key: bytes, session: Session) -> str:
    return hmac.new(key, b"csrf\x00" + session.sid.encode(), hashlib.sha256).hexdigest()


def valid(key: bytes, session: Session | None, candidate: str | None) -> bool:
    if session is None or not candidate:
        return False
    return hmac.compare_digest(token_for(key, session), candidate)
