"""The two refusals: 401 (no valid credentials) and 403 (a principal without the right); api.errors renders
both as the one error body, the 401 with ``WWW-Authenticate: Bearer``."""
from __future__ import annotations

from api.services.errors import ServiceError


class Unauthorized(ServiceError):
    status_code = 401


class Forbidden(ServiceError):
    status_code = 403
