"""OIDC / JWT bearer tokens for SSO: verified against the issuer's JWKS, RS256 or ES256 only.

KCM_OIDC_ISSUER and KCM_OIDC_AUDIENCE turn it on; the keys come from KCM_OIDC_JWKS_URL or, without it, from
the issuer's discovery document. The role is the highest kcm role named in KCM_OIDC_ROLES_CLAIM (default
``roles``; a dotted path such as ``realm_access.roles`` reaches a nested claim), the scopes come from
``kcm_scopes``. Every failure is an ``InvalidToken`` whose message names no part of the token.
"""
from __future__ import annotations

import json
import logging
import threading
import urllib.request

import jwt

from api.auth import scopes as scope_rules
from api.auth.principal import OIDC, Principal
from api.auth.roles import Role
from schema.settings import Settings, SettingsError

log = logging.getLogger("kcm.api.auth")

ALGORITHMS = ["RS256", "ES256"]  # asymmetric only: never "none", never HS* (a public key is no HMAC secret)
SCOPES_CLAIM = "kcm_scopes"
LEEWAY_SECONDS = 30
HTTP_TIMEOUT_SECONDS = 5


class InvalidToken(Exception):
    """The bearer token is not a valid JWT for this deployment (401); the message is safe to show."""


def _claim(claims: dict, path: str):
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class JwtVerifier:
    def __init__(self, issuer: str, audience: str, jwks_url: str = "", roles_claim: str = "roles"):
        self.issuer, self.audience, self.roles_claim = issuer, audience, roles_claim or "roles"
        self._jwks_url = jwks_url
        self._client: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier | None:
        if not settings.oidc_issuer and not settings.oidc_audience:
            return None
        if not (settings.oidc_issuer and settings.oidc_audience):
            raise SettingsError("KCM_OIDC_ISSUER and KCM_OIDC_AUDIENCE are set together, or neither")
        return cls(settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks_url, settings.oidc_roles_claim)

    def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310 (configured URL)
            document = json.load(response)
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise InvalidToken("the issuer's discovery document names no jwks_uri")
        return jwks_uri

    def _jwks(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._client is None:
                self._client = jwt.PyJWKClient(self._jwks_url or self._discover(), cache_keys=True,
                                               timeout=HTTP_TIMEOUT_SECONDS)
            return self._client

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in ALGORITHMS:  # decode() refuses them too; this keeps the JWKS out of it
                raise InvalidToken(f"the token's algorithm is not one of {', '.join(ALGORITHMS)}")
            key = self._jwks().get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token, key.key, algorithms=ALGORITHMS, audience=self.audience, issuer=self.issuer,
                leeway=LEEWAY_SECONDS, options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except InvalidToken:
            raise
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the token is from another issuer") from None
        except jwt.PyJWKClientError as exc:
            log.warning("JWT signing key unavailable: %s", type(exc).__name__)
            raise InvalidToken("no signing key of the issuer verifies the token") from None
        except (jwt.PyJWTError, OSError, ValueError) as exc:
            raise InvalidToken(f"the token is not a valid JWT ({type(exc).__name__})") from None
        return self._principal(claims)

    def _principal(self, claims: dict) -> Principal:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("the token has no subject")
        raw_scopes = claims.get(SCOPES_CLAIM)
        try:
            # absent: every group; an empty list: none
            scopes = None if raw_scopes is None else () if raw_scopes == [] else scope_rules.check_patterns(raw_scopes)
        except scope_rules.InvalidScope:
            raise InvalidToken(f"the token's {SCOPES_CLAIM} claim is not a list of group patterns") from None
        role = Role.highest(_claim(claims, self.roles_claim))
        return Principal(OIDC, subject[:255], subject[:255], role, scopes)
