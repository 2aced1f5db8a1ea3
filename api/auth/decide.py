"""The authorization decision, once for the API (api/auth/guard.py) and the dashboard (api/ui/guard.py): may an
authenticated principal call the operation its ``@requires`` declaration (api/auth/declarations.py) guards, on
the consumer its path names?

In order: no declaration is refused to everyone (403, fail closed); a role below the declared one is a 403; an
``unscoped`` operation is a 403 to a principal limited to consumer groups; and such a principal gets, on a
``consumer_id`` outside its groups, the same 404 as on a consumer that does not exist (audited only when the
call would have changed something), so ids cannot be probed. Pure apart from the consumer's group lookup: it
returns the refusal, and the caller audits it (``action_of``) and raises it. Only the wording differs between
the two surfaces (``Wording``).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from api.auth.declarations import MUTATING_METHODS, Access
from api.auth.errors import Forbidden
from api.services.errors import NotFound, ServiceError

UNDECLARED_ACTION = "undeclared"


@dataclass(frozen=True, slots=True)
class Wording:
    """How one surface words its refusals; ``role`` is formatted with ``needed`` and ``has`` (role labels)."""

    logger: str
    what: str  # in the log line of an undeclared operation
    undeclared: str
    role: str
    unscoped: str


API_WORDING = Wording(
    logger="kcm.api.auth", what="operation",
    undeclared="This operation declares no access rule, so it is refused to everyone.",
    role="This operation needs the {needed} role; the caller has {has}.",
    unscoped="This operation needs a principal that is not limited to consumer groups.")
PAGE_WORDING = Wording(
    logger="kcm.api.ui", what="dashboard view",
    undeclared="This page declares no access rule, so it is refused to everyone.",
    role="This needs the {needed} role; you have {has}.",
    unscoped="This page is only for a principal that is not limited to consumer groups.")


@dataclass(frozen=True, slots=True)
class Refusal:
    error: ServiceError
    audited: bool = True
    target: Mapping[str, Any] = field(default_factory=dict)  # audit.denied's target_type/target_id


def decide(principal, access: Access | None, req, group_of: Callable[[Any], str | None], wording: Wording
           ) -> Refusal | None:
    """Why ``principal`` may not make request ``req`` (a Flask request with a matched rule), or None: it may."""
    if access is None:
        logging.getLogger(wording.logger).error("refused %s %s: the %s declares no @requires rule", req.method,
                                                req.path, wording.what)
        return Refusal(Forbidden(wording.undeclared))
    if not principal.can(access.role):
        has = principal.role.label if principal.role is not None else "no kcm role"
        return Refusal(Forbidden(wording.role.format(needed=access.role.label, has=has)))
    if access.unscoped and principal.scoped:
        return Refusal(Forbidden(wording.unscoped))
    consumer_id = (req.view_args or {}).get("consumer_id") if principal.scoped else None
    if consumer_id is not None:
        group = group_of(consumer_id)
        # a missing consumer is refused here too, before the body is validated: else an invalid body would
        # tell a missing consumer (422) from a hidden one (404)
        if group is None or not principal.sees(group):
            return Refusal(NotFound(f"consumer {consumer_id} not found"), audited=is_mutating(req),
                           target={"target_type": "consumer", "target_id": consumer_id})
    return None


def is_mutating(req) -> bool:
    return req.method.lower() in MUTATING_METHODS


def action_of(access: Access | None, req) -> str:
    """The audit action of a refused request: the declaration's, else the method and route."""
    if access is not None and access.action:
        return access.action
    return f"{req.method} {req.url_rule.rule}" if req.url_rule is not None else UNDECLARED_ACTION
