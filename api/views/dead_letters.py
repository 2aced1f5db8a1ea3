"""/consumers/{id}/dead-letters/: list (paginated, with error context), replay one or all, delete one.

A dead letter is an rq job on the ``kcm-dead-letters`` queue (see processors/dead_letters.py); replaying
puts it back on that queue, where the ``rq worker`` process delivers it to its processor again. The work is
``api/services/dead_letters.py``'s.
"""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth.declarations import requires
from api.auth.roles import Role
from api.context import services
from api.schemas.common import ErrorSchema
from api.schemas.dead_letters import DeadLetterOut, ReplayAllOut
from api.services.audit import Action

blp = Blueprint("dead_letters", __name__, url_prefix="/consumers", description="Dead letters (rq)")

NOT_FOUND = "No consumer, or no dead letter of this consumer, with this id"
GONE = "The dead letter's processor is no longer in the consumer's pipeline: it cannot be replayed"


@blp.route("/<uuid:consumer_id>/dead-letters/")
class DeadLetterCollection(MethodView):
    @requires(Role.VIEWER)
    @blp.response(200, DeadLetterOut(many=True))
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id")
    @blp.alt_response(503, schema=ErrorSchema, description="Redis unavailable")
    @blp.paginate()
    def get(self, consumer_id, pagination_parameters):
        """List the consumer's dead letters, newest first, with their error context (X-Pagination header)"""
        items, total = services().dead_letters.page(consumer_id, pagination_parameters.first_item,
                                                    pagination_parameters.page_size)
        pagination_parameters.item_count = total
        return items


@blp.route("/<uuid:consumer_id>/dead-letters/replay/")
class DeadLetterReplayAll(MethodView):
    @requires(Role.OPERATOR, Action.DEAD_LETTER_REPLAY_ALL)
    @blp.response(202, ReplayAllOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id")
    @blp.alt_response(503, schema=ErrorSchema, description="Redis unavailable")
    def post(self, consumer_id):
        """Replay every dead letter of the consumer whose processor still exists; report the others"""
        return services().dead_letters.replay_all(consumer_id)


@blp.route("/<uuid:consumer_id>/dead-letters/<string:dl_id>/")
class DeadLetterItem(MethodView):
    @requires(Role.VIEWER)
    @blp.response(200, DeadLetterOut)
    @blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
    @blp.alt_response(503, schema=ErrorSchema, description="Redis unavailable")
    def get(self, consumer_id, dl_id):
        """Read one dead letter"""
        return services().dead_letters.get(consumer_id, dl_id)

    @requires(Role.OPERATOR, Action.DEAD_LETTER_DELETE)
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
    @blp.alt_response(503, schema=ErrorSchema, description="Redis unavailable")
    def delete(self, consumer_id, dl_id):
        """Delete a dead letter (its message is given up: this is the one lossy action)"""
        services().dead_letters.delete(consumer_id, dl_id)


@blp.route("/<uuid:consumer_id>/dead-letters/<string:dl_id>/replay/")
class DeadLetterReplay(MethodView):
    @requires(Role.OPERATOR, Action.DEAD_LETTER_REPLAY)
    @blp.response(202, DeadLetterOut)
    @blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
    @blp.alt_response(409, schema=ErrorSchema, description=GONE)
    @blp.alt_response(503, schema=ErrorSchema, description="Redis unavailable")
    def post(self, consumer_id, dl_id):
        """Replay one dead letter now with its processor's current configuration (a failed one is requeued; a
        scheduled retry runs at once)"""
        return services().dead_letters.replay(consumer_id, dl_id)
