"""/healthz (the process answers) and /readyz (database reachable and migrated to head, Redis reachable).

Both are public and never rate limited (api/auth/declarations.py's PUBLIC_PATHS and UNLIMITED_PATHS)."""
from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from api.context import services
from api.schemas.common import ErrorSchema
from api.schemas.monitoring import AliveOut, ReadyOut
from api.services.errors import Unavailable
from api.services.monitoring import Readiness

blp = Blueprint("health", __name__, description="Health checks (no credentials)")
READINESS = "kcm.readiness"


def _readiness() -> Readiness:
    if READINESS not in current_app.extensions:
        kcm = services()
        current_app.extensions[READINESS] = Readiness(kcm.engine, kcm.redis, kcm.settings.database_url)
    return current_app.extensions[READINESS]


@blp.route("/healthz")
class Alive(MethodView):
    @blp.response(200, AliveOut)
    def get(self):
        """The API process answers (liveness); checks nothing else"""
        return {"status": "alive"}


@blp.route("/readyz")
class Ready(MethodView):
    @blp.response(200, ReadyOut)
    @blp.alt_response(503, schema=ErrorSchema, description="A check failed: errors names each failed check")
    def get(self):
        """Ready to serve: the database answers and is migrated to head, Redis answers"""
        checks = _readiness().checks()
        failed = {name: [check["detail"]] for name, check in checks.items() if not check["ok"]}
        if failed:
            raise Unavailable(f"not ready: {', '.join(sorted(failed))}", errors=failed)
        return {"status": "ready", "checks": checks}
