"""/consumers/{id}/start|stop|restart|pause|resume/: change the desired state; the supervisor and the workers do
the rest (a pause or resume reaches the live workers through Redis, without a new generation)."""
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
        """Desired state 'running' (new generation only if it was stopped; a paused consumer is resumed in place)"""
        return _result(services().consumers.start(consumer_id))


@blp.route("/<uuid:consumer_id>/stop/")
class StopConsumer(MethodView):
    @requires(Role.OPERATOR, Action.CONSUMER_STOP)
    @blp.response(200, ControlOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id")
    def post(self, consumer_id):
        """Desired state 'stopped' (new generation only if it was running or paused)"""
        return _result(services().consumers.stop(consumer_id))


@blp.route("/<uuid:consumer_id>/restart/")
class RestartConsumer(MethodView):
    @requires(Role.OPERATOR, Action.CONSUMER_RESTART)
    @blp.response(200, ControlOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id")
    def post(self, consumer_id):
        """New generation and desired state 'running'; also clears a FATAL crash loop"""
        return _result(services().consumers.restart(consumer_id))


@blp.route("/<uuid:consumer_id>/pause/")
class PauseConsumer(MethodView):
    @requires(Role.OPERATOR, Action.CONSUMER_PAUSE)
    @blp.response(200, ControlOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id")
    @blp.alt_response(409, schema=ErrorSchema, description="The consumer is stopped: no workers to pause")
    @blp.alt_response(503, schema=ErrorSchema, description="Redis is unreachable: the live workers cannot be told")
    def post(self, consumer_id):
        """Desired state 'paused', same generation: the workers keep their processes, partitions and group
        membership and fetch nothing. Idempotent on a paused consumer."""
        return _result(services().consumers.pause(consumer_id))


@blp.route("/<uuid:consumer_id>/resume/")
class ResumeConsumer(MethodView):
    @requires(Role.OPERATOR, Action.CONSUMER_RESUME)
    @blp.response(200, ControlOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id")
    @blp.alt_response(409, schema=ErrorSchema, description="The consumer is stopped, not paused (start it)")
    @blp.alt_response(503, schema=ErrorSchema, description="Redis is unreachable: the live workers cannot be told")
    def post(self, consumer_id):
        """Desired state 'running', same generation: the paused workers fetch again where they stopped, with no
        rebalance. Idempotent on a running consumer."""
        return _result(services().consumers.resume(consumer_id))
