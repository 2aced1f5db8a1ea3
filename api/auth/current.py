"""The calling request's ``Actor`` (principal, request id, client address), set by guard.py before any view runs.

Services take an ``actor`` argument; given none, they use ``current_actor()``: the request's actor inside a
request, the system actor outside one (a script, a test calling a service)."""
from __future__ import annotations

import re
import secrets

from flask import Request, g, has_request_context, request

from api.auth.principal import ANONYMOUS_PRINCIPAL, SYSTEM_ACTOR, Actor, Principal

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"  # the header's WSGI key
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID when it is sane (1-128 of [A-Za-z0-9._:-]), else a new one."""
    if header and REQUEST_ID_RE.fullmatch(header):
        return header
    return secrets.token_hex(16)  # as uuid4().hex looks, for a quarter of its cost


def set_actor(principal: Principal | None, request_id: str, req: Request | None = None) -> Actor:
    req = req or request._get_current_object()
    actor = Actor(principal or ANONYMOUS_PRINCIPAL, request_id, req.remote_addr, req.method, req.path)
    g.kcm_actor = actor
    return actor


def current_actor() -> Actor:
    if not has_request_context():
        return SYSTEM_ACTOR
    actor = g.get("kcm_actor")
    return actor if actor is not None else Actor(ANONYMOUS_PRINCIPAL)


def current_principal() -> Principal:
    return current_actor().principal


def mark_audited() -> None:
    """The request's call wrote its audit row (guard.py writes one for a call that did not)."""
    if has_request_context():
        g.kcm_audited = True


def was_audited() -> bool:
    return bool(g.get("kcm_audited"))
