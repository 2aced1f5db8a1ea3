"""/consumers/{id}/status/: desired state from the database, live replica state from Redis."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth.declarations import requires
from api.auth.roles import Role
from api.context import services
from api.schemas.common import ErrorSchema
from api.schemas.status import ConsumerStatusOut

blp = Blueprint("status", __name__, url_prefix="/consumers", description="Consumer monitoring")


@blp.route("/<uuid:consumer_id>/status/")
class ConsumerStatusView(MethodView):
    @requires(Role.VIEWER)
    @blp.response(200, ConsumerStatusOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id")
    @blp.alt_response(503, schema=ErrorSchema, description="Redis is unreachable")
    def get(self, consumer_id):
        """Status (ACTIVE|INACTIVE|ERROR), the supervisor's state, and per-replica process details"""
        kcm = services()
        return kcm.status.status(kcm.consumers.get_state(consumer_id))
