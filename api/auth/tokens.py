"""API-key tokens: ``kcm_`` + 32 random bytes (URL-safe base64), shown once; only the SHA-256 digest is stored."""
from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "kcm_"
RANDOM_BYTES = 32


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(RANDOM_BYTES)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def same_digest(a: str, b: str) -> bool:
    """Constant-time comparison of two digests (hex, so ASCII: compare_digest takes them as they are)."""
    return hmac.compare_digest(a, b)


def looks_like_api_key(token: str) -> bool:
    return token.startswith(PREFIX)
