"""The dashboard's sign-in: a credential the API takes (an API key, the bootstrap admin token, or an OIDC JWT when
OIDC is configured) is checked once by the API's own ``Authenticator`` (api/auth/authenticate.py) and the
principal it yields is kept in the Flask session: signed, ``HttpOnly``, ``SameSite=Strict``, ``Secure`` on a
request that came over TLS. The cookie never holds the credential, only who signed in.

Every request re-reads that principal from its source, so the session is never more than the API would grant:
an API key by its id (revoked: signed out; its role or scopes changed: the new ones), an OIDC principal until
its token's ``exp``, the bootstrap admin while a bootstrap token is configured.
"""
from __future__ import annotations

import secrets
import time
import uuid

from flask import Flask, request, session
from flask.sessions import SecureCookieSessionInterface

from api.auth.authenticate import BOOTSTRAP_PRINCIPAL, AuthenticationFailed, Authenticator
from api.auth.oidc import JwtVerifier
from api.auth.principal import API_KEY, AUTH_DISABLED_PRINCIPAL, BOOTSTRAP, OIDC, Principal
from api.auth.roles import Role

SESSION_KEY = "principal"
COOKIE_NAME = "kcm_ui_session"
SESSION_SECONDS = 8 * 3600  # a signed-in session lasts a working day, then the credential is asked again
MAX_CREDENTIAL_LENGTH = 8192


class SignInFailed(Exception):
    """The credential did not authenticate; the message is safe to show (it never repeats the credential)."""


class DashboardSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, ``Secure`` whenever the request itself came over TLS (directly or from a trusted
    proxy, api/transport.py)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or bool(app.config.get("SESSION_COOKIE_SECURE"))


def configure(app: Flask, secret: str) -> None:
    app.secret_key = secret
    app.session_interface = DashboardSessionInterface()
    app.config.update(SESSION_COOKIE_NAME=COOKIE_NAME, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_PATH="/ui",
                      PERMANENT_SESSION_LIFETIME=SESSION_SECONDS)


def session_secret(settings) -> tuple[str, bool]:
    """The signing secret and whether it is configured (``KCM_UI_SECRET_KEY``); without one, a random secret per
    process: sessions then end when the process does and are not shared by several API processes."""
    configured = getattr(settings, "ui_secret_key", "") or ""
    return (configured, True) if configured else (secrets.token_urlsafe(32), False)


def _stored(principal: Principal, expires_at: float) -> dict:
    return {"kind": principal.kind, "id": principal.id, "name": principal.name,
            "role": principal.role.label if principal.role is not None else None,
            "scopes": list(principal.scopes) if principal.scopes is not None else None,
            "expires_at": expires_at}


class SessionPrincipals:
    """Signs a credential in (``sign_in``) and finds the session's principal again (``current``)."""

    def __init__(self, kcm, settings):
        self.kcm = kcm
        self.disabled = settings.auth == "disabled"
        self.bootstrap_configured = bool(settings.bootstrap_admin_token)
        self.authenticator = Authenticator(kcm.api_keys, settings.bootstrap_admin_token,
                                           JwtVerifier.from_settings(settings))

    def sign_in(self, credential: str) -> Principal:
        credential = (credential or "").strip()
        if not credential or len(credential) > MAX_CREDENTIAL_LENGTH:
            raise SignInFailed("Paste an API key (kcm_...) or a token from your identity provider.")
        try:
            principal = self.authenticator.authenticate(f"Bearer {credential}")
        except AuthenticationFailed as exc:
            raise SignInFailed(f"Sign-in failed: {exc}.") from None
        if principal is None or principal.role is None:
            raise SignInFailed("Sign-in failed: this identity has no kcm role.")
        expires_at = time.time() + SESSION_SECONDS
        if principal.kind == OIDC:
            expires_at = min(expires_at, _token_expiry(credential))
        session.clear()  # a new session: nothing from before the sign-in (a fixated CSRF token) survives
        session.permanent = True
        session[SESSION_KEY] = _stored(principal, expires_at)
        return principal

    def current(self) -> Principal | None:
        """The session's principal as its source grants it now, or None (signed out, expired, revoked)."""
        if self.disabled:
            return AUTH_DISABLED_PRINCIPAL
        stored = session.get(SESSION_KEY)
        if not isinstance(stored, dict) or not stored.get("expires_at") or stored["expires_at"] < time.time():
            return None
        kind = stored.get("kind")
        if kind == API_KEY:
            return self._api_key(stored.get("id"))
        if kind == BOOTSTRAP and self.bootstrap_configured:
            return BOOTSTRAP_PRINCIPAL
        if kind == OIDC:
            role = Role.parse(stored.get("role"))
            scopes = stored.get("scopes")
            return Principal(OIDC, stored.get("id"), stored.get("name"), role,
                             None if scopes is None else tuple(scopes)) if role is not None else None
        return None

    def _api_key(self, key_id) -> Principal | None:
        """The active key with this id, as api/services/api_keys.py lists it (role and scopes as they are now)."""
        try:
            wanted = uuid.UUID(str(key_id))
        except ValueError:
            return None
        for key in self.kcm.api_keys.list():
            if key.id == wanted and key.revoked_at is None:
                role = Role.parse(key.role)
                if role is None:
                    return None
                return Principal(API_KEY, str(key.id), key.name, role,
                                 None if key.scopes is None else tuple(key.scopes))
        return None

    @staticmethod
    def sign_out() -> None:
        session.clear()


def _token_expiry(token: str) -> float:
    """The ``exp`` of a JWT that JwtVerifier has just verified (it requires the claim)."""
    import jwt

    claims = jwt.decode(token, options={"verify_signature": False})
    return float(claims.get("exp", 0))
