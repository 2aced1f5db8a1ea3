"""The request hook that enforces the declarations (one ``before_request``, so a request's headers are read once),
in order:

1. identify: the request id (X-Request-ID if sane, else new) and the principal from the bearer token (an API
   key from the per-process cache that the request's one change-version read validates, api/services/api_keys.py).
2. the rate limit (ratelimit.py): per principal, or per address for a request without valid credentials.
3. authorize: public paths pass; no valid credentials is a 401 (``WWW-Authenticate: Bearer``); then the
   operation's ``@requires`` declaration (looked up once per endpoint and method) decides as api/auth/decide.py
   does for the dashboard too: none is refused to everyone (fail closed), the role (403), and, for a principal
   limited to consumer groups, every ``/consumers/{consumer_id}/...`` path on a consumer outside its scope is the
   same 404 as a consumer that does not exist, so ids cannot be probed.

Denials and failed authentications are audited (api/services/audit.py), never with the presented token.
KCM_AUTH=disabled makes every caller an unscoped admin, with a warning at start-up: for benchmarks only.
"""
from __future__ import annotations

import logging

from flask import Flask, g, request

from api.auth.authenticate import AuthenticationFailed, Authenticator
from api.auth.current import (
    REQUEST_ID_ENVIRON,
    REQUEST_ID_HEADER,
    current_actor,
    request_id_from,
    set_actor,
    was_audited,
)
from api.auth.decide import API_WORDING, UNDECLARED_ACTION, action_of, decide, is_mutating
from api.auth.declarations import (
    MUTATING_METHODS,
    SECURITY_SCHEME,
    UNLIMITED_PATHS,
    Access,
    access_of,
    is_public,
    normalised,
)
from api.auth.errors import Unauthorized
from api.auth.oidc import JwtVerifier
from api.auth.principal import AUTH_DISABLED_PRINCIPAL
from api.auth.ratelimit import install_rate_limits
from api.auth.roles import Role
from api.services.audit import Action

log = logging.getLogger("kcm.api.auth")

# the path variable that names an operation's target, most specific first, and the target's type
TARGETS = (("dl_id", "dead_letter"), ("processor_id", "processor"), ("key_id", "api_key"),
           ("consumer_id", "consumer"))
AUTHORIZATION_ENVIRON = "HTTP_AUTHORIZATION"  # the WSGI key: a plain dict read, not a header lookup
MUTATING_UPPER = frozenset(method.upper() for method in MUTATING_METHODS)
AUTH_DISABLED_WARNING = ("AUTHENTICATION IS DISABLED (KCM_AUTH=disabled): every caller is an admin of every "
                         "consumer. Use this for benchmarks only, never on a reachable port.")


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
    limits = install_rate_limits(app, settings, render_error)
    metrics_public = settings.metrics_public
    declared: dict[tuple[str, str], Access | None] = {}  # (endpoint, method) -> its declaration, looked up once

    def guard():
        """Identify, count against the rate limit, authorize: one hook, each request's headers read once."""
        req = request._get_current_object()  # one context lookup, not one per attribute
        environ = req.environ
        request_id = request_id_from(environ.get(REQUEST_ID_ENVIRON))
        g.kcm_request_id = request_id
        path = normalised(req.path)
        public = is_public(path, metrics_public)
        principal, failure = (AUTH_DISABLED_PRINCIPAL if disabled else None), None
        if not disabled and not public:
            try:
                principal = authenticator.authenticate(environ.get(AUTHORIZATION_ENVIRON))
            except AuthenticationFailed as exc:
                failure = str(exc)
        principal = set_actor(principal, request_id, req).principal
        if limits is not None and path not in UNLIMITED_PATHS:
            limits.check(req.method, principal, req.remote_addr)
        if not (disabled or public):
            authorize(req, principal, failure)

    def refuse(error, action: str, *, audited: bool = True, **target):
        if audited:
            audit.denied(current_actor(), action, error.status_code, error.message, **target)
        raise error

    def authorize(req, principal, failure: str | None):
        access = _access()
        if failure is not None:
            refuse(Unauthorized(f"Authentication failed: {failure}."), Action.AUTHENTICATION)
        if principal.kind == "anonymous":
            refuse(Unauthorized("Authentication required: send 'Authorization: Bearer <token>'."),
                   _action(access), audited=is_mutating(req))
        if req.url_rule is None:
            return  # the router's own 404/405: nothing here to protect
        refusal = decide(principal, access, req, services.consumers.group_of, API_WORDING)
        if refusal is not None:
            refuse(refusal.error, _action(access), audited=refusal.audited, **refusal.target)

    def _action(access: Access | None) -> str:
        return action_of(access, request._get_current_object())

    def _access() -> Access | None:
        req = request._get_current_object()
        if req.url_rule is None:
            return None
        lookup = (req.endpoint, req.method)
        if lookup in declared:
            return declared[lookup]
        access = access_of(app.view_functions.get(req.endpoint), req.method)
        if access is None and req.method == "OPTIONS":
            access = Access(Role.VIEWER, None, False)  # Flask's automatic OPTIONS: any principal
        declared[lookup] = access
        return access

    def after(response):
        """Audit a successful mutating call whose service wrote no audit row; echo the request id."""
        status = response.status_code
        if 200 <= status < 300 and request.method in MUTATING_UPPER and not was_audited() \
                and g.get("kcm_actor") is not None:
            audit_unrecorded_success()
        request_id = g.get("kcm_request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        if status == 401:
            response.headers.setdefault("WWW-Authenticate", 'Bearer realm="kcm"')
        return response

    def audit_unrecorded_success():
        """A successful mutating call whose service wrote no audit row (the dead-letter calls act on Redis)."""
        access = _access()
        view_args = request.view_args or {}
        name, target_type = next(((n, t) for n, t in TARGETS if n in view_args), (None, None))
        after = {"consumer_id": str(view_args["consumer_id"])} if name not in (None, "consumer_id") \
            and "consumer_id" in view_args else None
        audit.record_alone(current_actor(), access.action if access and access.action else UNDECLARED_ACTION,
                           target_type=target_type, target_id=view_args.get(name) if name else None, after=after)

    app.before_request(guard)
    app.after_request(after)
