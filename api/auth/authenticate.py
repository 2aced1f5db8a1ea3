"""``Authorization: Bearer <token>`` to a principal: an API key (``kcm_...``, found by its digest through the
per-process cache of api/services/api_keys.py), the bootstrap admin token (KCM_BOOTSTRAP_ADMIN_TOKEN), or an OIDC
JWT when OIDC is configured."""
from __future__ import annotations

import re

from api.auth import tokens
from api.auth.oidc import InvalidToken, JwtVerifier
from api.auth.principal import BOOTSTRAP, Principal
from api.auth.roles import Role

# RFC 6750 b64token, bounded: anything else is not a bearer token at all
BEARER_RE = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]{1,8192}=*) *", re.IGNORECASE)
BOOTSTRAP_PRINCIPAL = Principal(BOOTSTRAP, "bootstrap", "bootstrap admin (KCM_BOOTSTRAP_ADMIN_TOKEN)", Role.ADMIN)


class AuthenticationFailed(Exception):
    """Credentials were presented but do not authenticate (401); the message never repeats them."""


class Authenticator:
    def __init__(self, api_keys, bootstrap_token: str = "", jwt_verifier: JwtVerifier | None = None):
        self.api_keys = api_keys  # ApiKeyService: principal_for(digest)
        self.bootstrap_digest = tokens.digest(bootstrap_token) if bootstrap_token else None
        self.jwt = jwt_verifier

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal, or None when no credentials were sent; AuthenticationFailed for bad ones."""
        if not authorization:
            return None
        match = BEARER_RE.fullmatch(authorization)
        if match is None:
            raise AuthenticationFailed("send the credentials as 'Authorization: Bearer <token>'")
        token = match.group(1)
        if tokens.looks_like_api_key(token):
            token_digest = tokens.digest(token)
            if self.bootstrap_digest is not None and tokens.same_digest(token_digest, self.bootstrap_digest):
                return BOOTSTRAP_PRINCIPAL
            principal = self.api_keys.principal_for(token_digest)
            if principal is None:
                raise AuthenticationFailed("unknown or revoked API key")
            return principal
        if self.bootstrap_digest is not None and tokens.same_digest(tokens.digest(token), self.bootstrap_digest):
            return BOOTSTRAP_PRINCIPAL
        if self.jwt is not None and token.count(".") == 2:
            try:
                return self.jwt.verify(token)
            except InvalidToken as exc:
                raise AuthenticationFailed(f"invalid token: {exc}") from None
        raise AuthenticationFailed("unknown token")
