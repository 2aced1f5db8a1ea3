"""Each operation's access rule, declared once, next to its view: ``@requires(Role.OPERATOR, "consumer.start")``.

The decorator records the rule on the view method (read by guard.py on every request) and documents it in the
OpenAPI document: the bearer security requirement, the 401/403/429 responses, ``x-kcm-role`` and
``x-kcm-unscoped``. An operation
without a declaration is refused to everyone (guard.py), and tests/integration/api/test_access_matrix.py fails
on it. The paths served without credentials are declared here too, in one place (``is_public``).
"""
from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass

from api.auth.roles import Role

SECURITY_SCHEME = "bearerAuth"
ROLE_EXTENSION = "x-kcm-role"
UNSCOPED_EXTENSION = "x-kcm-unscoped"
ATTRIBUTE = "_kcm_access"
MUTATING_METHODS = frozenset({"post", "put", "patch", "delete"})

# served without credentials: the OpenAPI document and its UIs, the health checks
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/redoc"})
# the UIs' own scripts and styles (api/docs_assets.py, the files of api/static/): every path under it
DOCS_ASSETS_PATH = "/docs-assets"
PUBLIC_PREFIXES = (DOCS_ASSETS_PATH + "/",)
# never rate limited: probes poll these from one address
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz"})
# KCM_METRICS_PUBLIC=true serves /metrics without credentials (its view declares an unscoped viewer otherwise)
METRICS_PATH = "/metrics"


@dataclass(frozen=True)
class Access:
    role: Role
    action: str | None  # the audit action of a mutating operation (api/services/audit.py names them)
    unscoped: bool  # refused (403) to a principal limited to some consumer groups


def requires(role: Role, action: str | None = None, *, unscoped: bool = False) -> Callable:
    """Declare the least role an operation needs; a mutating one also names its audit action. ``unscoped``:
    only a principal without consumer-group scopes may call it (API keys, the audit trail)."""
    access = Access(Role(role), action, unscoped)

    def decorator(func: Callable) -> Callable:
        if func.__name__ in MUTATING_METHODS and not action:
            raise TypeError(f"{func.__qualname__}: a mutating operation names its audit action in @requires")
        apidoc = deepcopy(getattr(func, "_apidoc", {}))
        responses = apidoc.setdefault("response", {}).setdefault("responses", {})
        for code, reference in ((401, "UNAUTHORIZED"), (403, "FORBIDDEN"), (429, "TOO_MANY_REQUESTS")):
            responses.setdefault(code, []).append(reference)  # flask-smorest's registered error responses
        manual = apidoc.setdefault("manual_doc", {})
        manual["security"] = [{SECURITY_SCHEME: []}]
        manual[ROLE_EXTENSION] = access.role.label
        if unscoped:
            manual[UNSCOPED_EXTENSION] = True
        func._apidoc = apidoc
        setattr(func, ATTRIBUTE, access)
        return func

    return decorator


def access_of(view_function: Callable | None, method: str) -> Access | None:
    """The declaration of the operation serving ``method`` on a Flask view function, or None."""
    if view_function is None:
        return None
    view_class = getattr(view_function, "view_class", None)
    target = getattr(view_class, method.lower(), None) if view_class is not None else view_function
    if target is None and method.upper() == "HEAD" and view_class is not None:
        target = getattr(view_class, "get", None)
    return getattr(target, ATTRIBUTE, None)


def normalised(path: str) -> str:
    return path.rstrip("/") or "/"


def is_public(path: str, metrics_public: bool) -> bool:
    path = normalised(path)
    return (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
            or (metrics_public and path == METRICS_PATH))
