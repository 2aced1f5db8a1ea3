"""/supervisors/: the live supervisors, from their heartbeat hashes, with the replica slots each leases."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth.declarations import requires
from api.auth.roles import Role
from api.context import services
from api.schemas.common import ErrorSchema
from api.schemas.supervisors import SupervisorSlotsOut
from api.services.supervisors import SupervisorService

blp = Blueprint("supervisors", __name__, url_prefix="/supervisors", description="Supervisors")


@blp.route("/")
class Supervisors(MethodView):
    @requires(Role.VIEWER, unscoped=True)  # replicas of every consumer: not for a key limited to some groups
    @blp.response(200, SupervisorSlotsOut(many=True))
    @blp.alt_response(503, schema=ErrorSchema, description="Redis or the database is unreachable")
    def get(self):
        """Live supervisors: id, host, pid, start, last heartbeat, replicas held, labels and leased slots"""
        kcm = services()
        return SupervisorService(kcm.redis, kcm.engine).supervisors()
