"""The dashboard's request hook: the API's rules (api/auth/) applied to a session instead of a bearer token.

Before every dashboard request, in order: the request id; the principal from the session (session.py); the
API's rate limit (api/auth/ratelimit.py, same buckets); then each page's and form's own ``@requires``
declaration (api/auth/declarations.py, next to its view), decided by the API's own function (api/auth/decide.py):
none is refused to everyone (fail closed), a role below it is a 403, a principal limited to consumer groups gets
the same 404 on another group's consumer as on a missing one, and an ``unscoped`` page is a 403 to it. Only the
sign-in page and the static assets are public.
Denials are audited as the API audits them (api/services/audit.py). CSRF tokens are Flask-WTF's (app.py).
"""
from __future__ import annotations

import dataclasses

from flask import Flask, g, redirect, request, url_for

from api.auth.current import REQUEST_ID_ENVIRON, REQUEST_ID_HEADER, current_actor, request_id_from, set_actor
from api.auth.decide import PAGE_WORDING, action_of, decide
from api.auth.declarations import access_of
from api.auth.ratelimit import install_rate_limits
from api.ui.session import SessionPrincipals

PUBLIC_ENDPOINTS = frozenset({"static", "ui.sign_in", "ui.sign_out"})


class SignInRequired(Exception):
    """No signed-in session: a page redirects to the sign-in form, a form post or a partial gets a 401."""


def install_guard(app: Flask, kcm, settings, render_error) -> SessionPrincipals:
    principals = SessionPrincipals(kcm, settings)
    limits = install_rate_limits(app, settings, render_error)
    audit = kcm.audit

    def guard():
        req = request._get_current_object()
        g.kcm_request_id = request_id_from(req.environ.get(REQUEST_ID_ENVIRON))
        public = req.endpoint in PUBLIC_ENDPOINTS
        principal = None if req.endpoint == "static" else principals.current()
        actor = set_actor(principal, g.kcm_request_id, req)
        # the audit trail records the path as the client sent it, mount point included
        g.kcm_actor = dataclasses.replace(actor, path=req.script_root + req.path)
        g.kcm_principal = actor.principal
        if limits is not None and req.endpoint != "static":
            limits.check(req.method, g.kcm_principal, req.remote_addr)
        if public or req.url_rule is None:
            return None
        if principal is None:
            raise SignInRequired()
        access = access_of(app.view_functions.get(req.endpoint), req.method)
        refusal = decide(principal, access, req, kcm.consumers.group_of, PAGE_WORDING)
        if refusal is not None:
            if refusal.audited:
                audit.denied(current_actor(), action_of(access, req), refusal.error.status_code,
                             refusal.error.message, **refusal.target)
            raise refusal.error
        return None

    def sign_in_required(_error: SignInRequired):
        if request.method in ("GET", "HEAD") and "HX-Request" not in request.headers:
            return redirect(url_for("ui.sign_in", next=request.script_root + request.full_path.rstrip("?")))
        return render_error(401, "Your session has ended: sign in again."), 401, {"HX-Redirect": url_for("ui.sign_in")}

    def echo_request_id(response):
        request_id = g.get("kcm_request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response

    app.register_error_handler(SignInRequired, sign_in_required)
    app.before_request(guard)
    app.after_request(echo_request_id)
    return principals
