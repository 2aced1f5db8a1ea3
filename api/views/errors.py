"""/consumers/{id}/errors/: the consumer's last errors, from the replicas' lists in Redis."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth.declarations import requires
from api.auth.roles import Role
from api.context import services
from api.schemas.common import ErrorSchema
from api.schemas.recent_errors import RecentErrorOut
from api.services.recent_errors import RecentErrorsService

blp = Blueprint("consumer_errors", __name__, url_prefix="/consumers", description="Consumer monitoring")


@blp.route("/<uuid:consumer_id>/errors/")
class ConsumerErrorsView(MethodView):
    @requires(Role.VIEWER)
    @blp.response(200, RecentErrorOut(many=True))
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id")
    @blp.alt_response(503, schema=ErrorSchema, description="Redis is unreachable")
    def get(self, consumer_id):
        """The last 20 errors of the consumer's replicas, newest first: time, replica, processor, kind, message"""
        kcm = services()
        consumer = kcm.consumers.get_state(consumer_id)
        return RecentErrorsService(kcm.redis).recent(consumer.id, consumer.replicas)
