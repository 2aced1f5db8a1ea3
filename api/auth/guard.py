"""The request hooks that enforce the declarations, in order:

1. ``identify``: the request id (X-Request-ID if sane, else new) and the principal from the bearer token.
2. Flask-Limiter (ratelimit.py): per principal, or per address for a request without valid credentials.
3. ``authorize``: public paths pass; no valid credentials is a 401 (``WWW-Authenticate: Bearer``); then the
   operation's ``@requires`` declaration (none: refused to everyone, fail closed), the role (403), and, for a
   principal limited to consumer groups, every ``/consumers/{consumer_id}/...`` path on a consumer outside its
   scope is the same 404 as a consumer that does not exist, so ids cannot be probed.

Denials and failed authentications are audited (api/services/audit.py), never with the presented token.
KCM_AUTH=disabled makes every caller an unscoped admin, with a warning at start-up: for benchmarks only.
"""
from __future__ import annotations

import logging

from flask import Flask, g, request

from api.auth.authenticate import AuthenticationFailed, Authenticator
from api.auth.current import REQUEST_ID_HEADER, current_actor, request_id_from, set_actor, was_audited
from api.auth.declarations import (
    MUTATING_METHODS,
    PATH_ROLES,
    SECURITY_SCHEME,
    Access,
    access_of,
    is_public,
    normalised,
)
from api.auth.errors import Forbidden, Unauthorized
from api.auth.oidc import JwtVerifier
from api.auth.principal import AUTH_DISABLED_PRINCIPAL
from api.auth.ratelimit import install_rate_limits
from api.auth.roles import Role
from api.services.audit import Action
from api.services.errors import NotFound

log = logging.getLogger("kcm.api.auth")

UNDECLARED_ACTION = "undeclared"
# the path variable that names an operation's target, most specific first, and the target's type
TARGETS = (("dl_id", "dead_letter"), ("processor_id", "processor"), ("key_id", "api_key"),
           ("consumer_id", "consumer"))
AUTH_DISABLED_WARNING = ("AUTHENTICATION IS DISABLED (KCM_AUTH=disabled): every caller is an admin of every "
                         "consumer. Use this for benchmarks only, never on a reachable port.")


def _mutating() -> bool:
    return request.method.lower() in MUTATING_METHODS


def install_auth(app: Flask, api, settings, services, render_error) -> None:
    """Register the hooks (before any other request check) and the bearer scheme in the OpenAPI document."""
    api.spec.components.security_scheme(SECURITY_SCHEME, {
        "type": "http", "scheme": "bearer",
        "description": "An API key (kcm_...) or, with OIDC configured, a JWT from the issuer. See docs/security.md.",
    })
    disabled = settings.auth == "disabled"
    if disabled:
        log.warning(AUTH_DISABLED_WARNING)
    authenticator = Authenticator(services.api_keys, settings.bootstrap_admin_token,
                                  JwtVerifier.from_settings(settings))
    audit = services.audit

    def identify():
        g.kcm_auth_failure = None
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        g.kcm_request_id = request_id
        if disabled:
            set_actor(AUTH_DISABLED_PRINCIPAL, request_id)
            return
        principal = None
        if not is_public(request.path, settings.metrics_public):
            try:
                principal = authenticator.authenticate(request.headers.get("Authorization"))
            except AuthenticationFailed as exc:
                g.kcm_auth_failure = str(exc)
        set_actor(principal, request_id)

    def refuse(error, action: str, *, audited: bool = True, **target):
        if audited:
            audit.denied(current_actor(), action, error.status_code, error.message, **target)
        raise error

    def authorize():
        if disabled or is_public(request.path, settings.metrics_public):
            return
        access = _access()
        action = (access.action if access is not None and access.action else
                  f"{request.method} {request.url_rule.rule}" if request.url_rule is not None else UNDECLARED_ACTION)
        if g.kcm_auth_failure is not None:
            refuse(Unauthorized(f"Authentication failed: {g.kcm_auth_failure}."), Action.AUTHENTICATION)
        principal = current_actor().principal
        if principal.kind == "anonymous":
            refuse(Unauthorized("Authentication required: send 'Authorization: Bearer <token>'."), action,
                   audited=_mutating())
        if request.url_rule is None:
            return  # the router's own 404/405: nothing here to protect
        if access is None:
            log.error("refused %s %s: the operation declares no @requires rule", request.method, request.path)
            refuse(Forbidden("This operation declares no access rule, so it is refused to everyone."), action)
        if not principal.can(access.role):
            has = principal.role.label if principal.role is not None else "no kcm role"
            refuse(Forbidden(f"This operation needs the {access.role.label} role; the caller has {has}."), action)
        if access.unscoped and principal.scoped:
            refuse(Forbidden("This operation needs a principal that is not limited to consumer groups."), action)
        consumer_id = (request.view_args or {}).get("consumer_id")
        if consumer_id is not None and principal.scoped:
            group = services.consumers.group_of(consumer_id)
            # a missing consumer is refused here too, before the body is validated: else an invalid body would
            # tell a missing consumer (422) from a hidden one (404)
            if group is None or not principal.sees(group):
                refuse(NotFound(f"consumer {consumer_id} not found"), action, audited=_mutating(),
                       target_type="consumer", target_id=consumer_id)

    def _access() -> Access | None:
        if request.url_rule is None:
            return None
        declared = access_of(app.view_functions.get(request.endpoint), request.method)
        if declared is None and normalised(request.path) in PATH_ROLES:
            return Access(PATH_ROLES[normalised(request.path)], None, False)
        if declared is None and request.method == "OPTIONS":
            return Access(Role.VIEWER, None, False)  # Flask's automatic OPTIONS: any principal
        return declared

    def audit_unrecorded_success(response):
        """A successful mutating call whose service wrote no audit row (the dead-letter calls act on Redis)."""
        if (_mutating() and 200 <= response.status_code < 300 and not was_audited()
                and g.get("kcm_actor") is not None):
            access = _access()
            view_args = request.view_args or {}
            name, target_type = next(((n, t) for n, t in TARGETS if n in view_args), (None, None))
            after = {"consumer_id": str(view_args["consumer_id"])} if name not in (None, "consumer_id") \
                and "consumer_id" in view_args else None
            audit.record_alone(current_actor(), access.action if access and access.action else UNDECLARED_ACTION,
                               target_type=target_type, target_id=view_args.get(name) if name else None, after=after)
        return response

    def echo_request_id(response):
        request_id = g.get("kcm_request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        if response.status_code == 401:
            response.headers.setdefault("WWW-Authenticate", 'Bearer realm="kcm"')
        return response

    app.before_request(identify)
    install_rate_limits(app, settings, render_error)
    app.before_request(authorize)
    app.after_request(audit_unrecorded_success)
    app.after_request(echo_request_id)
