"""Who is calling (``Principal``) and the request they call from (``Actor``, what the services audit with)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from api.auth import scopes as scope_rules
from api.auth.roles import Role

# Principal.kind values
API_KEY, BOOTSTRAP, OIDC, AUTH_DISABLED, SYSTEM, ANONYMOUS = (
    "api_key", "bootstrap", "oidc", "auth_disabled", "system", "anonymous")


@dataclass(frozen=True)
class Principal:
    kind: str
    id: str | None
    name: str | None
    role: Role | None  # None: authenticated, but no kcm role (an SSO user without one): every operation is 403
    scopes: tuple[str, ...] | None = None  # consumer-group patterns; None means every group

    def can(self, role: Role) -> bool:
        return self.role is not None and self.role >= role

    def sees(self, consumer_group: str) -> bool:
        return scope_rules.matches(self.scopes, consumer_group)

    @property
    def scoped(self) -> bool:
        return self.scopes is not None

    @cached_property  # a cached key's principal serves many requests
    def rate_key(self) -> str:
        return f"{self.kind}:{self.id}"


ANONYMOUS_PRINCIPAL = Principal(ANONYMOUS, None, None, None)
SYSTEM_PRINCIPAL = Principal(SYSTEM, None, "system", Role.ADMIN)
AUTH_DISABLED_PRINCIPAL = Principal(AUTH_DISABLED, None, "anonymous (KCM_AUTH=disabled)", Role.ADMIN)


@dataclass(frozen=True)
class Actor:
    """The principal with its request's id, client address, method and path."""

    principal: Principal
    request_id: str | None = None
    client_address: str | None = None
    method: str | None = None
    path: str | None = None


SYSTEM_ACTOR = Actor(SYSTEM_PRINCIPAL)
