"""/consumers/{id}/start|stop|restart/: change the desired state; the supervisor does the rest."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth.declarations import requires
from api.auth.roles import Role
from api.context import services
from api.schemas.common import ErrorSchema
from api.schemas.consumers import ControlOut
from api.services.audit import Action

blp = Blueprint("control", __name__, url_prefix="/consumers", description="Consumer control")


def _result(outcome) -> dict:
    return {
        "id": outcome.consumer.id,
        "message": outcome.message,
        "action": outcome.action.value,
        "desired_state": outcome.consumer.desired_state,
        "generation": outcome.consumer.generation,
    }


@blp.route("/<uuid:consumer_id>/start/")
class StartConsumer(MethodView):
    @requires(Role.OPERATOR, Action.CONSUMER_START)
    @blp.response(200, ControlOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id")
    def post(self, consumer_id):
        """Desired state 'running' (new generation only if it was stopped)"""
        return _result(services().consumers.start(consumer_id))


@blp.route("/<uuid:consumer_id>/stop/")
class StopConsumer(MethodView):
    @requires(Role.OPERATOR, Action.CONSUMER_STOP)
    @blp.response(200, ControlOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id")
    def post(self, consumer_id):
        """Desired state 'stopped' (new generation only if it was running)"""
        return _result(services().consumers.stop(consumer_id))


@blp.route("/<uuid:consumer_id>/restart/")
class RestartConsumer(MethodView):
    @requires(Role.OPERATOR, Action.CONSUMER_RESTART)
    @blp.response(200, ControlOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id")
    def post(self, consumer_id):
        """New generation and desired state 'running'; also clears a FATAL crash loop"""
        return _result(services().consumers.restart(consumer_id))
